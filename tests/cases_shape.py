"""Contract cases for the shape-aware losses: boundary, Hausdorff DT, clDice, Dice + clDice.

Their losses read whole images (distance maps, skeletons), so:

* ``ignore_index=False``: the contract checks ``ignore_index`` by slicing the
  ignored pixels away into a 1-D row, which destroys the geometry a distance
  map or a skeleton depends on. ``tests/test_shape_losses.py`` checks the
  documented rule instead (an ignored pixel belongs to no class and leaves
  every sum).
* ``boundary_loss`` has ``layout="image"``: one loss per image, since every
  label of an image moves the signed distance of every pixel.
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np
from loss_registry import Inputs, LossCase, limit_class_inputs, limit_multi_hot

import jaxloss

C = 3
CW = np.array([0.5, 2.0, 1.0], np.float32)
H, W = 5, 4


def _int_inputs(rng: np.random.Generator, batch: int, dtype: Any) -> Inputs:
  x = (2 * rng.normal(size=(batch, H, W, C))).astype(dtype)
  return x, rng.integers(0, C, size=(batch, H, W)).astype(np.int32)


def _multi_hot_inputs(rng: np.random.Generator, batch: int, dtype: Any) -> Inputs:
  x = (2 * rng.normal(size=(batch, H, W, C))).astype(dtype)
  return x, (rng.uniform(size=(batch, H, W, C)) < 0.4).astype(dtype)


def _int_extremes(rng: np.random.Generator, batch: int) -> Inputs:
  y = rng.integers(0, C, size=(batch, H, W)).astype(np.int32)
  y[0] = 0  # class 0 fills image 0; classes 1 and 2 are empty there
  return limit_class_inputs(rng, y, C), y


def _multi_hot_extremes(rng: np.random.Generator, batch: int) -> Inputs:
  x, y = limit_multi_hot(rng, (batch, H, W, C))
  x[0] = -np.abs(x[0])  # an image with no positive pixel, and logits that agree
  y[0] = 0.0
  y[1, ..., 0] = 1.0  # a class filling an image
  return x, y


def _per_class_weights(args: Inputs) -> np.ndarray:
  return np.broadcast_to(CW, (args[0].shape[0], C))


_int_labels = {"label_arg": 1}
_softmax = {"single_class": False}  # a softmax over one channel is constant: refused

CASES = [
    LossCase("boundary_loss[softmax]", jaxloss.boundary_loss, _int_inputs, _int_extremes,
             class_axis=-1, kwargs={"activation": "softmax", "class_weights": CW},
             layout="image", **_int_labels, **_softmax),
    LossCase("boundary_loss[sigmoid]", jaxloss.boundary_loss, _multi_hot_inputs,
             _multi_hot_extremes, class_axis=-1,
             kwargs={"activation": "sigmoid", "sampling": (1.0, 0.5)}, layout="image"),
    LossCase("hausdorff_dt_loss[softmax]", jaxloss.hausdorff_dt_loss, _int_inputs,
             _int_extremes, class_axis=-1,
             kwargs={"activation": "softmax", "class_weights": CW},
             label_weights=_per_class_weights, layout="image_class",
             scalar_options={"alpha": 2.0}, **_int_labels, **_softmax),
    LossCase("hausdorff_dt_loss[sigmoid]", jaxloss.hausdorff_dt_loss, _multi_hot_inputs,
             _multi_hot_extremes, class_axis=-1, kwargs={"activation": "sigmoid", "alpha": 1.5},
             layout="image_class", scalar_options={"alpha": 1.5}),
    LossCase("cl_dice_loss[softmax]", jaxloss.cl_dice_loss, _int_inputs, _int_extremes,
             class_axis=-1, kwargs={"activation": "softmax", "class_weights": CW},
             label_weights=_per_class_weights, layout="image_class",
             scalar_options={"smooth": 1.0, "harmonic_smooth": 1e-4}, **_int_labels,
             **_softmax),
    LossCase("cl_dice_loss[sigmoid,pooled]", jaxloss.cl_dice_loss, _multi_hot_inputs,
             _multi_hot_extremes, class_axis=-1,
             kwargs={"activation": "sigmoid", "per_class": False, "iterations": 2,
                     "class_weights": CW}, layout="image",
             scalar_options={"smooth": 1.0, "harmonic_smooth": 1e-4}),
    LossCase("dice_cl_dice_loss",
             functools.partial(jaxloss.dice_cl_dice_loss, class_weights=CW),
             _int_inputs, _int_extremes, class_axis=-1, forward_mode=False, scalar_only=True,
             layout="image", kwargs={"activation": "softmax"},
             scalar_options={"alpha": 0.5, "smooth": 1.0, "harmonic_smooth": 1e-4},
             **_int_labels, **_softmax),
]
