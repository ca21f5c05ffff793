"""Sigmoid BCE + soft Dice, the multi-label segmentation composition.

The value and gradient come from the fused kernel in ``_bce_dice.py``; the
shared checks and per-class components are in ``_compositions.py``.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp

from jaxloss._bce_dice import bce_dice_totals
from jaxloss._compositions import (
    _check_part_weights,
    _check_per_image,
    _combine,
    _sigmoid_per_class,
)
from jaxloss._overlap import check_smooth


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
    (``reduction``; torch's ``binary_cross_entropy_with_logits`` mean). Per
    element it is :math:`q y\,\mathrm{softplus}(-x) + (1-y)\,\mathrm{softplus}(x)`,
    evaluated as two non-negative terms (no cancellation, exact at
    :math:`y \in \{0, 1\}`, finite at :math:`\pm 3\cdot 10^{38}`).
  * Dice is :func:`jaxloss.dice_loss` on :math:`\sigma(x)`, one value per
    (group, class) over ``reduce_axes`` (default: per image; include 0 for
    per batch), weighted by ``class_weights``, reduced by ``reduction``.

  ``weights`` and ``where`` are per image (a scalar or ``[B]``), whatever
  ``reduce_axes``. A masked image leaves both parts, exactly as if sliced
  away. With a per-image Dice they weight and mask its ``[B, C]`` losses; with
  a batch-level Dice (0 in ``reduce_axes``) they act inside its sums, where an
  image of weight :math:`w` counts :math:`w` times (so ``"weighted_mean"``
  with integer weights equals repeating the images).

  Value and gradient are one hand-written ``custom_vjp`` (``_bce_dice.py``):
  the forward pass forms both totals and the Dice sums, one pass over the
  logits forms the whole gradient; only the ``[groups, C]`` sums are kept in
  between. It equals the sum of the two public losses, value and gradient
  (tested).
  Reverse mode only (a hand-written ``custom_vjp``): ``jax.jvp`` and
  ``jax.jacfwd`` raise JAX's ``TypeError``; second derivatives work through
  reverse mode first: ``jax.hessian`` (forward-over-reverse) and
  ``jax.jacrev(jax.jacrev(f))``.

  **Components.** With ``return_components=True`` the result is ``(total,
  parts)``, to log how much each part contributes and which class fails:

  * ``parts["bce"]``, ``parts["dice"]``: the two reduced parts (the total is
    ``bce_weight * bce + dice_weight * dice``).
  * ``parts["bce_per_class"]``, ``[C]``: for each class :math:`c`, the mean
    over the unmasked pixels :math:`i` (every position but the class axis) of
    its weighted BCE column,
    :math:`\sum_i m_i w_i c_c\, l_{ic} / \sum_i m_i`, with :math:`l_{ic}` the
    element BCE above (``pos_weight`` included), :math:`w_i` the image's
    ``weights``, :math:`c_c` the ``class_weights`` and :math:`m_i` the image's
    ``where``: ``class_breakdown(sigmoid_binary_cross_entropy(..., reduction="none"),
    labels, C, axis=axis, members="all", where=where)``. It does not depend
    on ``reduction``. Its mean over the classes equals ``parts["bce"]`` under
    ``reduction="mean"`` (the mask here is per image, so never varies by
    class). A rare class's failure hides in this all-pixel mean; for the mean
    over its *positive* pixels pass the same ``reduction="none"`` BCE to
    :func:`jaxloss.class_breakdown` with ``members="positives"``.
  * ``parts["dice_per_class"]``: the Dice part's per-class losses, what
    ``reduction="none"`` gives for it: ``[B, C]`` per image (``[groups, C]``
    for finer ``reduce_axes``), ``[C]`` per batch, ``weights`` and
    ``class_weights`` multiplied in and masked images 0. It equals
    ``dice_loss(x, labels, activation="sigmoid", reduction="none", ...)`` with
    the same options and float or bool ``labels`` (per image; per batch when
    ``weights`` is None); under ``reduction="mean"`` ``parts["dice"]`` is its
    mean over the unmasked entries. With ``axis_name``, ``bce_per_class`` and
    a per-batch ``dice_per_class`` cover the whole sharded batch; a per-image
    ``dice_per_class`` holds the local shard's images.

  The per-class terms are formed only when ``return_components=True``. They
  are components, not a ``reduction="none"``: the parts have different shapes
  (``[B, ..., C]`` elements against ``[groups, C]`` Dice losses), and the
  total stays one differentiable scalar for :func:`jax.grad`, with the
  breakdown beside it. For the element-wise values call the parts directly.

  Equals MONAI ``DiceCELoss``-style sums of its parts; with ``bce_weight=0``
  it is MONAI ``DiceLoss(sigmoid=True)``. A single channel (``C = 1``, binary
  segmentation) is supported; ``C = 0`` raises ``ValueError``.

  Args:
    logits: ``[B, ..., C]`` logits.
    labels: multi-hot targets (float, integer 0/1 or bool), the shape of ``logits``.
    bce_weight: :math:`\lambda_{bce}`, a finite scalar ``>= 0``.
    dice_weight: :math:`\lambda_{dice}`, a finite scalar ``>= 0``.
    pos_weight: optional ``[C]`` BCE positive weights.
    class_weights: optional ``[C]`` weights for both parts.
    axis: the class axis.
    reduce_axes: Dice grouping (see :func:`jaxloss.dice_loss`).
    smooth: Dice smoothing, a finite scalar ``>= 0``.
    weights: optional per-image weights, a scalar or ``[B]`` (both parts).
    where: optional per-image mask, a scalar or ``[B]`` (both parts).
    reduction: ``"mean"``, ``"sum"``, ``"weighted_mean"`` or
      ``"sum_by_nonzero_weights"``, for both parts.
    return_components: also return the parts and their per-class terms.
    axis_name: optional mapped axis name (batch Dice sums and reductions, and
      the ``bce_per_class`` sums).

  Returns:
    The total, or ``(total, {"bce": ..., "dice": ..., "bce_per_class": [C],
    "dice_per_class": [groups, C] or [C]})``.

  Examples:
    >>> import jax.numpy as jnp
    >>> import jaxloss
    >>> x = jnp.array([[[2.0, -1.0], [-2.0, 1.0]]])
    >>> y = jnp.array([[[1.0, 0.0], [0.0, 1.0]]])
    >>> total, parts = jaxloss.sigmoid_bce_dice_loss(x, y, return_components=True)
    >>> round(float(total), 4), sorted(parts)
    (0.4142, ['bce', 'bce_per_class', 'dice', 'dice_per_class'])
    >>> [round(v, 4) for v in parts["bce_per_class"].tolist()]  # their mean: parts["bce"]
    [0.1269, 0.3133]
    >>> [[round(v, 4) for v in row] for row in parts["dice_per_class"].tolist()]  # [B, C]
    [[0.1192, 0.2689]]
  """
  if reduction == "none":
    raise ValueError("`reduction='none'` is not offered for a composition; call "
                     "sigmoid_binary_cross_entropy and dice_loss for per-element values.")
  _check_part_weights(bce_weight=bce_weight, dice_weight=dice_weight)
  check_smooth(smooth)
  shape = jnp.shape(logits)
  if len(shape) >= 1:
    _check_per_image("weights", weights, shape[0])
    _check_per_image("where", where, shape[0])
  bce, dice = bce_dice_totals(
      logits, labels, axis=axis, pos_weight=pos_weight, class_weights=class_weights,
      reduce_axes=reduce_axes, smooth=smooth, weights=weights, where=where,
      reduction=reduction, axis_name=axis_name)
  total = _combine(bce_weight, bce, dice_weight, dice)
  if not return_components:
    return total
  parts = {"bce": bce, "dice": dice}
  parts.update(_sigmoid_per_class(logits, labels, axis=axis, pos_weight=pos_weight,
                                  class_weights=class_weights, reduce_axes=reduce_axes,
                                  smooth=smooth, weights=weights, where=where,
                                  axis_name=axis_name))
  return total, parts

