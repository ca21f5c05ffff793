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


CASES: list[LossCase] = [
    LossCase("mean_squared_error", jaxloss.mean_squared_error, _regression_inputs,
             _regression_extremes),
    LossCase("mean_absolute_error", jaxloss.mean_absolute_error, _regression_inputs,
             _regression_extremes),
    LossCase("huber_loss", jaxloss.huber_loss, _regression_inputs, _regression_extremes,
             kwargs={"delta": 0.7}),
]


def by_name(name: str) -> LossCase:
  return next(c for c in CASES if c.name == name)
