"""The registry of every public loss, for the contract test.

Each :class:`LossCase` says how to make inputs for one loss. The contract in
``test_contract.py`` runs the same battery over every case. A new loss joins by
appending a case here.

Conventions every case follows:

* ``make_inputs(rng, batch, dtype)`` returns the positional arguments; the
  first one is the differentiated input (predictions or logits) and has a
  leading batch axis of size ``batch``. The per-element loss shape, on which
  ``weights`` and ``where`` act, also starts with the batch axis.
* ``extreme_inputs(rng, batch)`` returns inputs at the edge of the float32
  domain (±3e38 logits, huge errors, zero probabilities ...) whose *true* loss
  is representable: each per-element loss stays below ``LIMIT_LOSS`` (1e36),
  so every weighted sum of the contract's ~100 elements stays finite too. A
  loss that is genuinely infinite there (an MSE of 6e38) is not an extreme
  input but an overflow, and is avoided by construction (e.g. the label's logit
  at, or 1e36 below, the row's maximum).
* ``class_axis`` is the axis of the class dimension in input 0 for losses
  that take an ``axis=`` option, else ``None``.

The hostile battery (``test_contract_hostile.py``) reads the optional fields
below (integer labels, ``ignore_index``, the loss layout, scalar options); their
defaults describe a loss without integer labels, masks or options, so a new loss
inherits every check that applies to it by setting the fields that do.
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
  # The positional input holding integer class ids, if any (every integer dtype,
  # bool, out-of-range labels ... are generated for it).
  label_arg: int | None = None
  # The number of valid class ids when input 0 has no class axis (binary: 2);
  # otherwise the size of input 0's ``class_axis``.
  num_classes: int | None = None
  # Whether the loss takes ``ignore_index`` (checked as slicing the pixels away).
  ignore_index: bool = False
  # What ``reduction="none"`` returns, and so what ``where``/``weights`` index:
  #   "element": one loss per element, aligned with the leading axes of every
  #     input (the label shape, or input 0's shape, or ``[B]``);
  #   "image": one loss per image ``[B]`` from sums over its pixels (Lovász; the
  #     compositions, whose documented masks and weights are per image);
  #   "image_class": one loss per (image, class) ``[B, C]`` (overlap losses); with
  #     ``kwargs["activation"] == "softmax"`` a pixel's logits feed every class.
  layout: str = "element"
  # Scalar options with a valid value each, e.g. {"delta": 0.7}: NaN, inf and
  # array values must raise an error naming the option.
  scalar_options: dict[str, Any] = dataclasses.field(default_factory=dict)
  # Scalar options for which +inf is a valid value (EMD's ``r``: the sup-norm).
  infinite_options: tuple[str, ...] = ()
  # Options overriding ``kwargs`` for ``extreme_inputs`` (e.g. no label
  # smoothing: with it, the true CE at a 6e38 logit gap is itself ~1e37 per
  # element, and a weighted sum of ~100 of them overflows).
  extreme_kwargs: dict[str, Any] = dataclasses.field(default_factory=dict)
  # The names the loss uses for its positional inputs in error messages;
  # ``None``: the parameter names of ``fn``.
  input_names: tuple[str, ...] | None = None
  # Whether one class (C = 1 along ``class_axis``) is meaningful; if not (a
  # softmax over one channel is constant), it must raise a ValueError naming input 0.
  single_class: bool = True
  # Inputs that the opt-in value checks accept, when ``make_inputs`` is
  # deliberately off their domain (EMD's unnormalised targets); None: make_inputs.
  checked_inputs: Callable[[np.random.Generator, int, Any], Inputs] | None = None
  # The number of leading non-batch axes of input 0 that index elements or
  # pixels (sliced to 1 for the single-pixel case); ``None``: every axis but
  # the batch and class axes. PROPEL's ``[B, I, 2D]`` has 0.
  pixel_axes: int | None = None

  def __str__(self) -> str:
    return self.name


def _regression_inputs(rng: np.random.Generator, batch: int, dtype: Any) -> Inputs:
  p = rng.normal(size=(batch, 5)).astype(dtype)
  t = rng.normal(size=(batch, 5)).astype(dtype)
  return p, t


LIMIT = 3e38  # the float32 range limit (finfo(float32).max = 3.4e38)
LIMIT_LOSS = 1e36  # the largest per-element loss an extreme input may have


def _regression_extremes(max_error: float):
  """Predictions at ±3e38, 0 and 1e-30, targets within ``max_error`` of them.

  An MSE or a Huber loss of two numbers 6e38 apart is genuinely infinite in
  float32; ``max_error`` keeps each true per-element loss below ``LIMIT_LOSS``.
  """
  def make(rng: np.random.Generator, batch: int) -> Inputs:
    p = rng.choice([-LIMIT, LIMIT, 0.0, 1e-30], size=(batch, 5))
    t = p + rng.choice([-max_error, 0.0, max_error], size=(batch, 5))
    return p.astype(np.float32), t.astype(np.float32)
  return make


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


def limit_logits(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
  """Logits drawn from {-3e38, 0, 3e38} (float64; cast by the caller)."""
  return rng.choice([-LIMIT, 0.0, LIMIT], size=shape)


def logits_favouring(rng: np.random.Generator, favoured: np.ndarray) -> np.ndarray:
  """±3e38 logits (class axis last) whose favoured classes sit at the row's max or 1e36 below.

  ``favoured`` is a boolean ``[..., C]`` (the true class, or a teacher's tied
  maxima). Any target supported on the favoured classes then has a
  cross-entropy of at most ``LIMIT_LOSS`` (+ log C), though the logits span the
  whole float32 range: representable, however the loss is computed.
  """
  x = limit_logits(rng, favoured.shape)
  top = x.max(-1, keepdims=True)
  below = rng.uniform(size=top.shape) < 0.3
  return np.where(favoured, top - np.where(below, LIMIT_LOSS, 0.0), x)


def one_hot(labels: np.ndarray, num_classes: int) -> np.ndarray:
  return labels[..., None] == np.arange(num_classes)


def limit_class_inputs(rng: np.random.Generator, labels: np.ndarray, num_classes: int
                       ) -> np.ndarray:
  """float32 ±3e38 logits for integer ``labels`` (true CE at most ``LIMIT_LOSS``)."""
  return logits_favouring(rng, one_hot(labels, num_classes)).astype(np.float32)


def limit_multi_hot(rng: np.random.Generator, shape: tuple[int, ...]) -> Inputs:
  """±3e38 logits with the matching 0/1 labels; mismatches only at |x| <= 1e35.

  The true BCE (pos_weight <= 3 included) of every element stays below
  ``LIMIT_LOSS``: a label disagreeing with a 3e38 logit would cost 3e38.
  """
  x = rng.choice([-LIMIT, 0.0, LIMIT, -1e35, 1e35], size=shape)
  y = np.where(np.abs(x) == LIMIT, x > 0, rng.uniform(size=shape) < 0.5)
  return x.astype(np.float32), y.astype(np.float32)


def _int_label_extremes(rng: np.random.Generator, batch: int) -> Inputs:
  y = rng.integers(0, C, size=(batch, 3)).astype(np.int32)
  return limit_class_inputs(rng, y, C), y


def _prob_label_extremes(rng: np.random.Generator, batch: int) -> Inputs:
  y = rng.integers(0, C, size=(batch, 3))
  # one-hot rows: zero probabilities at -3e38 logits, where log p = -inf
  return limit_class_inputs(rng, y, C), one_hot(y, C).astype(np.float32)


def _multi_hot_extremes(rng: np.random.Generator, batch: int) -> Inputs:
  return limit_multi_hot(rng, (batch, 3, C))


_NO_SMOOTHING = {"label_smoothing": 0.0}

CASES: list[LossCase] = [
    LossCase("mean_squared_error", jaxloss.mean_squared_error, _regression_inputs,
             _regression_extremes(1e17)),
    LossCase("mean_absolute_error", jaxloss.mean_absolute_error, _regression_inputs,
             _regression_extremes(LIMIT_LOSS)),
    LossCase("huber_loss", jaxloss.huber_loss, _regression_inputs,
             _regression_extremes(LIMIT_LOSS), kwargs={"delta": 0.7},
             scalar_options={"delta": 0.7}),
    LossCase("softmax_cross_entropy[int]", jaxloss.softmax_cross_entropy, _int_label_inputs,
             _int_label_extremes, class_axis=-1, forward_mode=False,
             kwargs={"class_weights": CLASS_WEIGHTS, "label_smoothing": 0.1},
             label_weights=lambda a: CLASS_WEIGHTS[a[1]], label_arg=1, ignore_index=True,
             scalar_options={"label_smoothing": 0.1}, extreme_kwargs=_NO_SMOOTHING),
    LossCase("softmax_cross_entropy[prob]", jaxloss.softmax_cross_entropy, _prob_label_inputs,
             _prob_label_extremes, class_axis=-1, forward_mode=False,
             kwargs={"class_weights": CLASS_WEIGHTS, "label_smoothing": 0.1},
             label_weights=lambda a: (a[1] * CLASS_WEIGHTS).sum(-1),
             scalar_options={"label_smoothing": 0.1}, extreme_kwargs=_NO_SMOOTHING),
    LossCase("sigmoid_binary_cross_entropy", jaxloss.sigmoid_binary_cross_entropy,
             _multi_hot_inputs, _multi_hot_extremes, class_axis=-1,
             kwargs={"pos_weight": POS_WEIGHT, "class_weights": CLASS_WEIGHTS,
                     "label_smoothing": 0.05},
             label_weights=lambda a: np.broadcast_to(CLASS_WEIGHTS, a[0].shape),
             scalar_options={"label_smoothing": 0.05}, extreme_kwargs=_NO_SMOOTHING),
    LossCase("softmax_focal_loss[int]", jaxloss.softmax_focal_loss, _int_label_inputs,
             _int_label_extremes, class_axis=-1, forward_mode=False,
             kwargs={"gamma": 2.0, "alpha": np.array([0.25, 0.75, 0.5, 1.0], np.float32)},
             label_arg=1, ignore_index=True, scalar_options={"gamma": 2.0}),
    LossCase("softmax_focal_loss[prob]", jaxloss.softmax_focal_loss, _prob_label_inputs,
             _prob_label_extremes, class_axis=-1, kwargs={"gamma": 1.5},
             scalar_options={"gamma": 1.5}),
    LossCase("sigmoid_focal_loss", jaxloss.sigmoid_focal_loss, _multi_hot_inputs,
             _multi_hot_extremes, class_axis=-1, kwargs={"gamma": 2.0, "alpha": 0.25},
             scalar_options={"gamma": 2.0, "alpha": 0.25}),
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
