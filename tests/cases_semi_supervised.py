"""Contract cases for the semi-supervised losses (see ``loss_registry.py``).

``pseudo_label_cross_entropy`` returns ``(loss, confident_fraction)``; its
cases wrap it to return the loss only. Its confidence indicator acts as a 0/1
weight in the ``"weighted_mean"`` denominators, hence ``label_weights``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from loss_registry import LossCase

import jaxloss

C = 4  # classes


def _logits(rng: np.random.Generator, batch: int, dtype: Any) -> np.ndarray:
  return (2 * rng.normal(size=(batch, 3, C))).astype(dtype)


def _two_logits(rng: np.random.Generator, batch: int, dtype: Any) -> tuple[np.ndarray, ...]:
  return _logits(rng, batch, dtype), _logits(rng, batch, dtype)


def _one_logits(rng: np.random.Generator, batch: int, dtype: Any) -> tuple[np.ndarray, ...]:
  return (_logits(rng, batch, dtype),)


def _extreme(rng: np.random.Generator, batch: int) -> np.ndarray:
  return rng.choice([-1e4, 1e4, 0.0], size=(batch, 3, C)).astype(np.float32)


def _two_extremes(rng: np.random.Generator, batch: int) -> tuple[np.ndarray, ...]:
  return _extreme(rng, batch), _extreme(rng, batch)


def _one_extreme(rng: np.random.Generator, batch: int) -> tuple[np.ndarray, ...]:
  return (_extreme(rng, batch),)


def _pseudo(**options: Any):
  def loss(logits, teacher_logits, **kwargs):
    return jaxloss.pseudo_label_cross_entropy(logits, teacher_logits, **options, **kwargs)[0]
  return loss


def _confident(threshold: float):
  """The teacher-confidence indicator ``max softmax(t) >= threshold``, in float64."""
  def indicator(args: tuple[np.ndarray, ...]) -> np.ndarray:
    t = np.asarray(args[1], np.float64)
    e = np.exp(t - t.max(-1, keepdims=True))
    return (1 / e.sum(-1) >= threshold).astype(np.float64)
  return indicator


CASES: list[LossCase] = [
    LossCase("pseudo_label_cross_entropy[hard]", _pseudo(threshold=0.6), _two_logits,
             _two_extremes, class_axis=-1, forward_mode=False, label_weights=_confident(0.6)),
    LossCase("pseudo_label_cross_entropy[soft]", _pseudo(threshold=0.5, hard=False,
                                                         temperature=0.5),
             _two_logits, _two_extremes, class_axis=-1, forward_mode=False,
             label_weights=_confident(0.5)),
    LossCase("entropy_minimization_loss", jaxloss.entropy_minimization_loss, _one_logits,
             _one_extreme, class_axis=-1),
    LossCase("consistency_loss[kl]", jaxloss.consistency_loss, _two_logits, _two_extremes,
             class_axis=-1, kwargs={"kind": "kl", "temperature": 0.7}),
    LossCase("consistency_loss[mse]", jaxloss.consistency_loss, _two_logits, _two_extremes,
             class_axis=-1, kwargs={"kind": "mse"}),
]
