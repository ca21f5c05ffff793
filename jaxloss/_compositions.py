"""What the two compositions share: option checks, combining the parts, per-class terms.

``sigmoid_bce_dice_loss`` (``_bce_dice_loss.py``) and ``softmax_ce_dice_loss``
(``_ce_dice_loss.py``) check their part weights and per-image ``weights`` /
``where`` here, combine their two parts here, and form their per-class
components (``return_components=True``) here, from the public parts.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxloss import _checks
from jaxloss._binary import sigmoid_binary_cross_entropy
from jaxloss._breakdown import class_breakdown
from jaxloss._classification import softmax_cross_entropy
from jaxloss._overlap import option
from jaxloss._overlap_losses import dice_terms


def _check_part_weights(**options) -> None:
  """The parts' multipliers (``bce_weight``, ``dice_weight`` ...): finite scalars >= 0."""
  for name, value in options.items():
    _checks.scalar_option(name, value, low=0.0)


def _combine(weight_a, part_a, weight_b, part_b) -> jax.Array:
  dtype = part_a.dtype
  return option(weight_a, dtype) * part_a + option(weight_b, dtype) * part_b


def _check_per_image(name: str, value, batch: int) -> None:
  """``weights`` / ``where`` of a composition: a scalar or ``[B]``, one value per image."""
  if value is None:
    return
  shape = tuple(jnp.shape(value))
  if shape not in ((), (batch,)):
    raise ValueError(f"`{name}` has shape {shape}; a composition takes a scalar or one value "
                     f"per image, shape ({batch},).")



def _sigmoid_per_class(logits, labels, *, axis, pos_weight, class_weights, reduce_axes, smooth,
                       weights, where, axis_name) -> dict[str, jax.Array]:
  """``bce_per_class`` and ``dice_per_class`` of :func:`sigmoid_bce_dice_loss` (inputs checked)."""
  x = _checks.float_input("logits", logits)
  y = _checks.real_input("labels", labels)
  if _checks.is_class_ids(y) and y.dtype != jnp.bool_:
    # 0/1 integer memberships: the Dice part would read integers as class ids.
    y = y.astype(_checks.compute_dtype(x))
  ax = _checks.normalize_axis("axis", axis, x.ndim)
  bce = sigmoid_binary_cross_entropy(x, y, axis=ax, pos_weight=pos_weight,
                                     class_weights=class_weights, weights=weights, where=where,
                                     reduction="none")
  bce_per_class = class_breakdown(bce, y, x.shape[ax], axis=ax, members="all", where=where,
                                  axis_name=axis_name)
  dice_per_class = dice_terms(x, y, axis=ax, activation="sigmoid", reduce_axes=reduce_axes,
                              class_weights=class_weights, include_background=True,
                              smooth=smooth, squared=False, weights=weights, where=where,
                              ignore_index=None, reduction="none", axis_name=axis_name,
                              per_image=True)
  return {"bce_per_class": bce_per_class, "dice_per_class": dice_per_class}



def _softmax_per_class(x, y, c, ax, *, axis, class_weights, ignore_index, reduce_axes,
                       include_background, smooth, label_smoothing, weights, where,
                       axis_name) -> dict[str, jax.Array]:
  """``ce_per_class`` and ``dice_per_class`` of :func:`softmax_ce_dice_loss` (inputs checked).

  ``x`` is the checked logits, ``y`` the labels as an array, ``c`` the number of
  classes and ``ax`` the normalised class axis.
  """
  per_pixel = softmax_cross_entropy(
      x, y, axis=axis, class_weights=class_weights, weights=weights, where=where,
      ignore_index=ignore_index, label_smoothing=label_smoothing, reduction="none")
  if _checks.is_class_ids(y) and not (y.dtype == jnp.bool_ and y.shape == x.shape):
    ce_per_class = class_breakdown(per_pixel, y, c, where=where, ignore_index=ignore_index,
                                   axis_name=axis_name)
  else:  # one-hot / probability rows: each pixel counts for its classes by membership
    ce_per_class = class_breakdown(per_pixel, y, c, axis=ax, members="positives", where=where,
                                   axis_name=axis_name)
  dice_per_class = dice_terms(
      x, y, axis=axis, activation="softmax", reduce_axes=reduce_axes,
      class_weights=class_weights, include_background=include_background, smooth=smooth,
      squared=False, weights=weights, where=where, ignore_index=ignore_index, reduction="none",
      axis_name=axis_name, per_image=True)
  return {"ce_per_class": ce_per_class, "dice_per_class": dice_per_class}
