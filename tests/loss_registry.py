"""The registry of every public loss, for the contract test.

Each :class:`LossCase` says how to make inputs for one loss. The contract in
``test_contract.py`` runs the same battery over every case. A new loss joins by
appending a case here.

Conventions every case follows:

* ``make_inputs(rng, batch, dtype)`` returns the positional arguments; the
  first one is the differentiated input (predictions or logits) and has a
  leading batch axis of size ``batch``. The per-element loss shape, on which
  ``weights`` and ``where`` act, also starts with the batch axis.
* ``extreme_inputs(rng, batch)`` returns inputs at the edge of the domain
  (±1e4 logits, huge errors, zero probabilities ...).
* ``class_axis`` is the axis of the class dimension in input 0 for losses
  that take an ``axis=`` option, else ``None``.
"""

from __future__ import annotations

import dataclasses
import importlib
import pathlib
from collections.abc import Callable
from typing import Any

import numpy as np

import jaxloss

Inputs = tuple[np.ndarray, ...]


@dataclasses.dataclass(frozen=True)
class LossCase:
  name: str
  fn: Callable[..., Any]
  make_inputs: Callable[[np.random.Generator, int, Any], Inputs]
  extreme_inputs: Callable[[np.random.Generator, int], Inputs]
  kwargs: dict[str, Any] = dataclasses.field(default_factory=dict)
  class_axis: int | None = None
  # Whether the loss accepts ``axis_name`` (reduces across the batch).
  has_axis_name: bool = True
  # False for losses built on a ``jax.custom_vjp`` (reverse mode only).
  forward_mode: bool = True
  # Per-element factor the loss multiplies into ``weights`` for the reduction's
  # denominators (e.g. the class weight of the true label), given the inputs.
  label_weights: Callable[[Inputs], np.ndarray] | None = None
  # Compositions of differently shaped parts have no ``reduction="none"``.
  scalar_only: bool = False

  def __str__(self) -> str:
    return self.name


def _regression_inputs(rng: np.random.Generator, batch: int, dtype: Any) -> Inputs:
  p = rng.normal(size=(batch, 5)).astype(dtype)
  t = rng.normal(size=(batch, 5)).astype(dtype)
  return p, t


def _regression_extremes(rng: np.random.Generator, batch: int) -> Inputs:
  p = rng.choice([-1e4, 1e4, 0.0, 1e-30], size=(batch, 5)).astype(np.float32)
  t = rng.choice([1e4, -1e4, 0.0], size=(batch, 5)).astype(np.float32)
  return p, t


C = 4  # classes in the class-axis cases
CLASS_WEIGHTS = np.array([0.5, 2.0, 0.0, 1.25], np.float32)
POS_WEIGHT = np.array([1.0, 3.0, 0.5, 2.0], np.float32)


def _logits(rng: np.random.Generator, batch: int, dtype: Any) -> np.ndarray:
  return (2 * rng.normal(size=(batch, 3, C))).astype(dtype)


def _int_label_inputs(rng: np.random.Generator, batch: int, dtype: Any) -> Inputs:
  return _logits(rng, batch, dtype), rng.integers(0, C, size=(batch, 3)).astype(np.int32)


def _prob_label_inputs(rng: np.random.Generator, batch: int, dtype: Any) -> Inputs:
  y = rng.dirichlet(np.ones(C), size=(batch, 3)).astype(dtype)
  return _logits(rng, batch, dtype), y


def _multi_hot_inputs(rng: np.random.Generator, batch: int, dtype: Any) -> Inputs:
  return _logits(rng, batch, dtype), (rng.uniform(size=(batch, 3, C)) < 0.4).astype(dtype)


def _extreme_logits(rng: np.random.Generator, batch: int) -> np.ndarray:
  return rng.choice([-1e4, 1e4, 0.0], size=(batch, 3, C)).astype(np.float32)


def _int_label_extremes(rng: np.random.Generator, batch: int) -> Inputs:
  return _extreme_logits(rng, batch), rng.integers(0, C, size=(batch, 3)).astype(np.int32)


def _prob_label_extremes(rng: np.random.Generator, batch: int) -> Inputs:
  y = np.zeros((batch, 3, C), np.float32)
  y[..., 0] = 1.0  # one-hot rows: zero probabilities everywhere else
  return _extreme_logits(rng, batch), y


def _multi_hot_extremes(rng: np.random.Generator, batch: int) -> Inputs:
  return _extreme_logits(rng, batch), (rng.uniform(size=(batch, 3, C)) < 0.5).astype(np.float32)


CASES: list[LossCase] = [
    LossCase("mean_squared_error", jaxloss.mean_squared_error, _regression_inputs,
             _regression_extremes),
    LossCase("mean_absolute_error", jaxloss.mean_absolute_error, _regression_inputs,
             _regression_extremes),
    LossCase("huber_loss", jaxloss.huber_loss, _regression_inputs, _regression_extremes,
             kwargs={"delta": 0.7}),
 LossCase("softmax_cross_entropy[int]", jaxloss.softmax_cross_entropy, _int_label_inputs,
             _int_label_extremes, class_axis=-1, forward_mode=False,
             kwargs={"class_weights": CLASS_WEIGHTS, "label_smoothing": 0.1},
             label_weights=lambda a: CLASS_WEIGHTS[a[1]]),
    LossCase("softmax_cross_entropy[prob]", jaxloss.softmax_cross_entropy, _prob_label_inputs,
             _prob_label_extremes, class_axis=-1, forward_mode=False,
             kwargs={"class_weights": CLASS_WEIGHTS, "label_smoothing": 0.1},
             label_weights=lambda a: (a[1] * CLASS_WEIGHTS).sum(-1)),
    LossCase("sigmoid_binary_cross_entropy", jaxloss.sigmoid_binary_cross_entropy,
             _multi_hot_inputs, _multi_hot_extremes, class_axis=-1,
             kwargs={"pos_weight": POS_WEIGHT, "class_weights": CLASS_WEIGHTS,
                     "label_smoothing": 0.05},
             label_weights=lambda a: np.broadcast_to(CLASS_WEIGHTS, a[0].shape)),
    LossCase("softmax_focal_loss[int]", jaxloss.softmax_focal_loss, _int_label_inputs,
             _int_label_extremes, class_axis=-1, forward_mode=False,
             kwargs={"gamma": 2.0, "alpha": np.array([0.25, 0.75, 0.5, 1.0], np.float32)}),
    LossCase("softmax_focal_loss[prob]", jaxloss.softmax_focal_loss, _prob_label_inputs,
             _prob_label_extremes, class_axis=-1, kwargs={"gamma": 1.5}),
    LossCase("sigmoid_focal_loss", jaxloss.sigmoid_focal_loss, _multi_hot_inputs,
             _multi_hot_extremes, class_axis=-1, kwargs={"gamma": 2.0, "alpha": 0.25}),
]


def all_cases() -> list[LossCase]:
  """The cases above plus every ``tests/cases_<family>.py`` module's ``CASES``.

  Imported lazily, so that a cases module may import this one without a cycle.
  """
  cases = list(CASES)
  for path in sorted(pathlib.Path(__file__).parent.glob("cases_*.py")):
    cases += importlib.import_module(path.stem).CASES
  return cases


def by_name(name: str) -> LossCase:
  return next(c for c in all_cases() if c.name == name)
