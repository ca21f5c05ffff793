"""Contract cases for the semi-supervised losses (see ``loss_registry.py``).

``pseudo_label_cross_entropy`` returns ``(loss, confident_fraction)``; its
cases wrap it to return the loss only. Its confidence indicator acts as a 0/1
weight in the ``"weighted_mean"`` denominators, hence ``label_weights``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from loss_registry import LossCase, limit_logits, logits_favouring

import jaxloss

C = 4  # classes


def _logits(rng: np.random.Generator, batch: int, dtype: Any) -> np.ndarray:
  return (2 * rng.normal(size=(batch, 3, C))).astype(dtype)


def _two_logits(rng: np.random.Generator, batch: int, dtype: Any) -> tuple[np.ndarray, ...]:
  return _logits(rng, batch, dtype), _logits(rng, batch, dtype)


def _one_logits(rng: np.random.Generator, batch: int, dtype: Any) -> tuple[np.ndarray, ...]:
  return (_logits(rng, batch, dtype),)


def _one_extreme(rng: np.random.Generator, batch: int) -> tuple[np.ndarray, ...]:
  # The entropy is bounded by log C for any logits, ±3e38 included.
  return (limit_logits(rng, (batch, 3, C)).astype(np.float32),)


def _two_extremes(rng: np.random.Generator, batch: int) -> tuple[np.ndarray, ...]:
  """Student and teacher logits from {-3e38, 0, 3e38}.

  The target (argmax, softmax(t / T) or softmax(b / T)) lives on the teacher's
  tied maxima; the student has those classes at its own maximum (or 1e36
  below), so the true CE or KL is at most ~1e36: representable, while
  ``t / T`` itself overflows for T < 1.
  """
  t = limit_logits(rng, (batch, 3, C))
  x = logits_favouring(rng, t == t.max(-1, keepdims=True))
  return x.astype(np.float32), t.astype(np.float32)


def _pseudo(**options: Any):
  def loss(logits, teacher_logits, **kwargs):
    # Call-time options override the case's (the contract's option checks pass them).
    return jaxloss.pseudo_label_cross_entropy(logits, teacher_logits,
                                              **{**options, **kwargs})[0]
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
             _two_extremes, class_axis=-1, forward_mode=False, label_weights=_confident(0.6),
             scalar_options={"threshold": 0.6}),
    LossCase("pseudo_label_cross_entropy[soft]", _pseudo(threshold=0.5, hard=False,
                                                         temperature=0.5),
             _two_logits, _two_extremes, class_axis=-1, forward_mode=False,
             label_weights=_confident(0.5),
             scalar_options={"threshold": 0.5, "temperature": 0.5}),
    LossCase("entropy_minimization_loss", jaxloss.entropy_minimization_loss, _one_logits,
             _one_extreme, class_axis=-1),
    LossCase("consistency_loss[kl]", jaxloss.consistency_loss, _two_logits, _two_extremes,
             class_axis=-1, kwargs={"kind": "kl", "temperature": 0.7},
             scalar_options={"temperature": 0.7}),
    LossCase("consistency_loss[mse]", jaxloss.consistency_loss, _two_logits, _two_extremes,
             class_axis=-1, kwargs={"kind": "mse"}, scalar_options={"temperature": 1.0}),
]
