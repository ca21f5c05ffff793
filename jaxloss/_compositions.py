"""Compositions: sigmoid BCE + Dice and softmax CE + Dice, with their components."""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp

from jaxloss import _checks
from jaxloss._bce_dice import bce_dice_totals
from jaxloss._classification import softmax_cross_entropy
from jaxloss._overlap import dice_loss


def _result(total, parts, return_components):
  return (total, parts) if return_components else total


def sigmoid_bce_dice_loss(
    logits: jax.typing.ArrayLike,
    labels: jax.typing.ArrayLike,
    *,
    bce_weight: float = 1.0,
    dice_weight: float = 1.0,
    pos_weight: jax.typing.ArrayLike | None = None,
    class_weights: jax.typing.ArrayLike | None = None,
    axis: int = -1,
    reduce_axes: Sequence[int] | None = None,
    smooth: float = 1e-5,
    weights: jax.typing.ArrayLike | None = None,
    where: jax.typing.ArrayLike | None = None,
    reduction: str = "mean",
    return_components: bool = False,
    axis_name: str | None = None,
) -> jax.Array | tuple[jax.Array, dict[str, jax.Array]]:
  r"""Multi-label BCE + soft Dice on sigmoid outputs, the U-Net segmentation standard.

  .. math::
    L = \lambda_{bce}\,\mathrm{BCE}(x, y) + \lambda_{dice}\,\mathrm{Dice}(\sigma(x), y)

  * BCE is :func:`jaxloss.sigmoid_binary_cross_entropy` with ``pos_weight``
    and ``class_weights``, averaged over every pixel and class
    (``reduction``; torch's ``binary_cross_entropy_with_logits`` mean).
  * Dice is :func:`jaxloss.dice_loss` on :math:`\sigma(x)`, one value per
    (group, class) over ``reduce_axes`` (default: per image; include 0 for
    per batch), weighted by ``class_weights``, reduced by ``reduction``.

  Value and gradient are one hand-written ``custom_vjp`` (``_bce_dice.py``):
  one pass over the logits forms both totals and the Dice sums, one pass forms
  the whole gradient; only the ``[groups, C]`` sums are kept in between. It
  equals the sum of the two public losses, value and gradient (tested).
  ``weights`` are per image (``[B]``) and apply to both parts.
  With ``return_components=True`` the result is ``(total, {"bce": ..., "dice":
  ...})``, to log how much each part contributes; ``reduction="none"`` is not
  offered since the two parts have different shapes (call the parts directly).

  Equals MONAI ``DiceCELoss``-style sums of its parts; with ``bce_weight=0``
  it is MONAI ``DiceLoss(sigmoid=True)``.

  Args:
    logits: ``[B, ..., C]`` logits.
    labels: multi-hot targets, the shape of ``logits``.
    bce_weight: :math:`\lambda_{bce}`.
    dice_weight: :math:`\lambda_{dice}`.
    pos_weight: optional ``[C]`` BCE positive weights.
    class_weights: optional ``[C]`` weights for both parts.
    axis: the class axis.
    reduce_axes: Dice grouping (see :func:`jaxloss.dice_loss`).
    smooth: Dice smoothing.
    weights: optional per-image weights ``[B]``.
    where: optional per-image mask ``[B]`` (both parts).
    reduction: ``"mean"``, ``"sum"``, ``"weighted_mean"`` or
      ``"sum_by_nonzero_weights"``, for both parts.
    return_components: also return the two parts.
    axis_name: optional mapped axis name (batch Dice sums and reductions).

  Returns:
    The total, or ``(total, {"bce": ..., "dice": ...})``.

  Examples:
    >>> import jax.numpy as jnp
    >>> import jaxloss
    >>> x = jnp.array([[[2.0, -1.0], [-2.0, 1.0]]])
    >>> y = jnp.array([[[1.0, 0.0], [0.0, 1.0]]])
    >>> total, parts = jaxloss.sigmoid_bce_dice_loss(x, y, return_components=True)
    >>> round(float(total), 4), sorted(parts)
    (0.4142, ['bce', 'dice'])
  """
  if reduction == "none":
    raise ValueError("`reduction='none'` is not offered for a composition; call "
                     "sigmoid_binary_cross_entropy and dice_loss for per-element values.")
  bce, dice = bce_dice_totals(
      logits, labels, axis=axis, pos_weight=pos_weight, class_weights=class_weights,
      reduce_axes=reduce_axes, smooth=smooth, weights=weights, where=where,
      reduction=reduction, axis_name=axis_name)
  total = bce_weight * bce + dice_weight * dice
  return _result(total, {"bce": bce, "dice": dice}, return_components)


def softmax_ce_dice_loss(
    logits: jax.typing.ArrayLike,
    labels: jax.typing.ArrayLike,
    *,
    ce_weight: float = 1.0,
    dice_weight: float = 1.0,
    class_weights: jax.typing.ArrayLike | None = None,
    ignore_index: int | None = None,
    axis: int = -1,
    reduce_axes: Sequence[int] | None = None,
    include_background: bool = True,
    smooth: float = 1e-5,
    label_smoothing: float = 0.0,
    weights: jax.typing.ArrayLike | None = None,
    where: jax.typing.ArrayLike | None = None,
    reduction: str = "mean",
    return_components: bool = False,
    axis_name: str | None = None,
) -> jax.Array | tuple[jax.Array, dict[str, jax.Array]]:
  r"""Softmax cross-entropy + soft Dice, the decomposition of MONAI's ``DiceCELoss``.

  .. math::
    L = \lambda_{ce}\,\mathrm{CE}(x, y) + \lambda_{dice}\,\mathrm{Dice}(\mathrm{softmax}(x), y)

  * CE is :func:`jaxloss.softmax_cross_entropy` with ``class_weights``,
    ``ignore_index`` and ``label_smoothing``, reduced by ``reduction``. Note
    that ``"mean"`` divides the class-weighted sum by the pixel count, which is
    what MONAI's ``DiceCELoss`` gets from torch (it hands one-hot targets to
    ``cross_entropy``, whose probability-target branch ignores the weights in
    the denominator); pass ``reduction="weighted_mean"`` for the normalisation
    of torch's integer-target ``cross_entropy(weight=...)``.
  * Dice is :func:`jaxloss.dice_loss` with ``activation="softmax"``, the same
    ``class_weights`` (MONAI multiplies them into the per-class Dice) and
    ``reduction``.

  Equals MONAI ``DiceCELoss(softmax=True, weight=class_weights,
  lambda_ce=ce_weight, lambda_dice=dice_weight, smooth_nr=s, smooth_dr=s)`` on
  one-hot targets, with ``reduction="mean"``. ``return_components=True``
  returns ``(total, {"ce": ..., "dice": ...})``.

  Args:
    logits: ``[B, ..., C]`` logits.
    labels: integer ids (shape without ``axis``) or one-hot labels.
    ce_weight: :math:`\lambda_{ce}`.
    dice_weight: :math:`\lambda_{dice}`.
    class_weights: optional ``[C]`` class weights for both parts.
    ignore_index: integer label left out of both parts.
    axis: the class axis.
    reduce_axes: Dice grouping (see :func:`jaxloss.dice_loss`).
    include_background: False leaves class 0 out of the Dice part.
    smooth: Dice smoothing.
    label_smoothing: CE label smoothing.
    weights: optional per-image weights ``[B]`` for both parts.
    where: optional per-image mask ``[B]`` for both parts.
    reduction: ``"mean"``, ``"sum"``, ``"weighted_mean"`` or
      ``"sum_by_nonzero_weights"``, for both parts.
    return_components: also return the two parts.
    axis_name: optional mapped axis name.

  Returns:
    The total, or ``(total, {"ce": ..., "dice": ...})``.

  Examples:
    >>> import jax.numpy as jnp
    >>> import jaxloss
    >>> x = jnp.array([[[2.0, 0.0], [0.0, 1.0]]])
    >>> total = jaxloss.softmax_ce_dice_loss(x, jnp.array([[0, 1]]))
    >>> round(float(total), 4)
    0.4153
  """
  if reduction == "none":
    raise ValueError("`reduction='none'` is not offered for a composition; call "
                     "softmax_cross_entropy and dice_loss for per-element values.")
  x = _checks.float_input("logits", logits)
  y = jnp.asarray(labels)
  ce = softmax_cross_entropy(
      x, y, axis=axis, class_weights=class_weights, weights=weights, where=where,
      ignore_index=ignore_index, label_smoothing=label_smoothing,
      reduction=reduction, axis_name=axis_name)
  dice = dice_loss(x, y, axis=axis, activation="softmax", reduce_axes=reduce_axes,
                   class_weights=class_weights, include_background=include_background,
                   smooth=smooth, weights=weights, where=where, ignore_index=ignore_index,
                   reduction=reduction, axis_name=axis_name)
  total = ce_weight * ce + dice_weight * dice
  return _result(total, {"ce": ce, "dice": dice}, return_components)
