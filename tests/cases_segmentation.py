"""Contract cases for the overlap losses (Dice family) and their compositions."""

from __future__ import annotations

import functools
from typing import Any

import numpy as np
from loss_registry import Inputs, LossCase, limit_class_inputs, limit_multi_hot

import jaxloss

C = 3
CW = np.array([0.5, 2.0, 1.0], np.float32)


def _int_inputs(rng: np.random.Generator, batch: int, dtype: Any) -> Inputs:
  x = (2 * rng.normal(size=(batch, 4, 4, C))).astype(dtype)
  return x, rng.integers(0, C, size=(batch, 4, 4)).astype(np.int32)


def _multi_hot_inputs(rng: np.random.Generator, batch: int, dtype: Any) -> Inputs:
  x = (2 * rng.normal(size=(batch, 4, 4, C))).astype(dtype)
  return x, (rng.uniform(size=(batch, 4, 4, C)) < 0.4).astype(dtype)


def _int_extremes(rng: np.random.Generator, batch: int) -> Inputs:
  y = rng.integers(0, C, size=(batch, 4, 4)).astype(np.int32)
  y[0] = 0  # classes 1 and 2 empty in image 0
  # ±3e38 logits, each label's logit at (or 1e36 below) its pixel's max: the
  # overlaps are bounded anyway, and the CE of CE + Dice stays representable.
  return limit_class_inputs(rng, y, C), y


def _multi_hot_extremes(rng: np.random.Generator, batch: int) -> Inputs:
  x, y = limit_multi_hot(rng, (batch, 4, 4, C))
  x[0] = -np.abs(x[0])  # an image with no positive pixel, and logits that agree
  y[0] = 0.0
  return x, y


def _per_class_weights(args: Inputs) -> np.ndarray:
  return np.broadcast_to(CW, (args[0].shape[0], C))


_dice_kwargs = {"activation": "softmax", "class_weights": CW, "smooth": 1e-3}
_int_labels = {"label_arg": 1, "ignore_index": True}
_softmax = {"single_class": False}  # a softmax over one channel is constant: refused

CASES = [
    LossCase("dice_loss[softmax]", jaxloss.dice_loss, _int_inputs, _int_extremes,
             class_axis=-1, forward_mode=False, kwargs=_dice_kwargs,
             label_weights=_per_class_weights, layout="image_class",
             scalar_options={"smooth": 1e-3}, **_int_labels, **_softmax),
    LossCase("dice_loss[sigmoid,squared]", jaxloss.dice_loss, _multi_hot_inputs,
             _multi_hot_extremes, class_axis=-1,
             kwargs={"activation": "sigmoid", "squared": True}, layout="image_class",
             scalar_options={"smooth": 1e-5}),
    LossCase("jaccard_loss", jaxloss.jaccard_loss, _int_inputs, _int_extremes, class_axis=-1,
             forward_mode=False,
             kwargs={"activation": "softmax", "smooth": 1e-3}, layout="image_class",
             scalar_options={"smooth": 1e-3}, **_int_labels, **_softmax),
    LossCase("tversky_loss[focal]", jaxloss.tversky_loss, _int_inputs, _int_extremes,
             class_axis=-1, forward_mode=False,
             kwargs={"activation": "softmax", "alpha": 0.7, "beta": 0.3, "gamma": 1.5,
                     "smooth": 1e-3}, layout="image_class",
             scalar_options={"alpha": 0.7, "beta": 0.3, "gamma": 1.5, "smooth": 1e-3},
             **_int_labels, **_softmax),
    LossCase("generalized_dice_loss", jaxloss.generalized_dice_loss, _int_inputs, _int_extremes,
             class_axis=-1, forward_mode=False, kwargs={"activation": "softmax"},
             layout="image_class", scalar_options={"smooth": 1e-5}, **_int_labels, **_softmax),
    LossCase("sigmoid_bce_dice_loss",
             functools.partial(jaxloss.sigmoid_bce_dice_loss, class_weights=CW),
             _multi_hot_inputs, _multi_hot_extremes, class_axis=-1, forward_mode=False,
             scalar_only=True, layout="image", input_names=("logits", "labels"),
             scalar_options={"bce_weight": 1.0, "dice_weight": 1.0, "smooth": 1e-5}),
    LossCase("softmax_ce_dice_loss",
             functools.partial(jaxloss.softmax_ce_dice_loss, class_weights=CW),
             _int_inputs, _int_extremes, class_axis=-1, forward_mode=False, scalar_only=True,
             layout="image", input_names=("logits", "labels"),
             scalar_options={"ce_weight": 1.0, "dice_weight": 1.0, "smooth": 1e-5,
                             "label_smoothing": 0.0}, **_int_labels, **_softmax),
]


def _binary_inputs(rng: np.random.Generator, batch: int, dtype: Any) -> Inputs:
  x = (2 * rng.normal(size=(batch, 4, 4))).astype(dtype)
  return x, (rng.uniform(size=(batch, 4, 4)) < 0.4).astype(np.int32)


def _binary_extremes(rng: np.random.Generator, batch: int) -> Inputs:
  # Hinge errors 1 - x·s: a label agreeing with a ±3e38 logit has error < 0;
  # disagreements only at |x| <= 1e35, so every sorted sum stays finite.
  x, y = limit_multi_hot(rng, (batch, 4, 4))
  x[0] = -np.abs(x[0])  # an image with no foreground
  y[0] = 0.0
  return x, y.astype(np.int32)


CASES += [
    LossCase("lovasz_softmax_loss[per_image]", jaxloss.lovasz_softmax_loss, _int_inputs,
             _int_extremes, class_axis=-1,
             kwargs={"activation": "softmax", "per_image": True}, layout="image",
             **_int_labels),
    LossCase("lovasz_hinge_loss", jaxloss.lovasz_hinge_loss, _binary_inputs, _binary_extremes,
             num_classes=2, layout="image", **_int_labels),
]
