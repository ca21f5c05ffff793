"""Softmax CE + soft Dice, the decomposition of MONAI's ``DiceCELoss``.

Class-id labels with the class axis last, without label smoothing or a mapped
axis, take the fused kernel in ``_ce_dice.py``; the others the sum of
``softmax_cross_entropy`` and ``dice_terms``. The shared checks and per-class
components are in ``_compositions.py``.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp

from jaxloss import _checks
from jaxloss._ce_dice import ce_dice_totals
from jaxloss._classification import softmax_cross_entropy
from jaxloss._compositions import (
    _check_part_weights,
    _check_per_image,
    _combine,
    _softmax_per_class,
)
from jaxloss._overlap import check_smooth, class_and_reduce_axes
from jaxloss._overlap_losses import dice_terms


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
    ``ignore_index`` and ``label_smoothing``, reduced by ``reduction``.
  * Dice is :func:`jaxloss.dice_loss` with ``activation="softmax"``, the same
    ``class_weights`` (MONAI multiplies them into the per-class Dice),
    ``ignore_index`` (its pixels leave every Dice sum, as if sliced away) and
    ``reduction``.

  ``weights`` and ``where`` are per image (a scalar or ``[B]``), whatever
  ``reduce_axes``: a masked image leaves both parts, exactly as if sliced
  away. With a batch-level Dice (0 in ``reduce_axes``) they act inside its
  sums, where an image of weight :math:`w` counts :math:`w` times.

  MONAI mapping (only with MONAI's ``softmax=True``: its default
  ``softmax=False`` feeds raw inputs to the Dice part, while the Dice part here
  is always ``activation="softmax"``), ``DiceCELoss(softmax=True, weight=class_weights,
  lambda_ce=ce_weight, lambda_dice=dice_weight, smooth_nr=s, smooth_dr=s)``
  with its ``reduction="mean"``:

  * ``to_onehot_y=False`` (one-hot targets): MONAI hands the one-hot targets
    to torch's ``cross_entropy``, whose probability-target branch divides the
    class-weighted sum by the pixel count. That is ``reduction="mean"`` here,
    with one-hot or integer ``labels`` alike.
  * ``to_onehot_y=True`` (one-channel integer targets): MONAI passes the
    integer labels to ``cross_entropy(weight=...)``, which divides by the sum
    of the pixels' class weights. MONAI's total is then
    ``ce_weight * softmax_cross_entropy(x, y, class_weights=cw,
    reduction="weighted_mean") + dice_weight * dice_loss(x, y,
    activation="softmax", class_weights=cw, smooth=s)``; this composition's
    single ``reduction="mean"`` equals it when ``class_weights`` is None (or
    uniform 1).

  A single channel (``C = 1``) raises ``ValueError``: softmax over one channel
  is constant 1; use :func:`jaxloss.sigmoid_bce_dice_loss`. ``C = 0`` raises
  too.

  **Components.** ``return_components=True`` returns ``(total, parts)``:

  * ``parts["ce"]``, ``parts["dice"]``: the two reduced parts (the total is
    ``ce_weight * ce + dice_weight * dice``).
  * ``parts["ce_per_class"]``, ``[C]``: the mean CE over the pixels of each
    *true* class, :math:`\sum_i m_i [y_i = c]\, w_i l_i / \sum_i m_i [y_i = c]`,
    with :math:`w_i l_i` the per-pixel ``reduction="none"`` CE (``weights``
    and the class weight of the pixel's label multiplied in) and :math:`m_i`
    the image's ``where`` with ``ignore_index`` pixels left out:
    ``class_breakdown(softmax_cross_entropy(..., reduction="none"), labels,
    C, where=where, ignore_index=ignore_index)``; for one-hot (probability)
    labels, the membership-weighted mean (``axis=axis``,
    ``members="positives"``). 0 for a class with no pixel; NaN everywhere
    for an unmasked out-of-range label. It does not depend on ``reduction``;
    under ``reduction="mean"`` with integer labels, ``parts["ce"]`` is its
    mean weighted by the classes' pixel counts.
  * ``parts["dice_per_class"]``: the Dice part's per-class losses, what
    ``reduction="none"`` gives for it (``[B, C]`` per image, ``[C]`` per
    batch, ``weights`` and ``class_weights`` multiplied in, masked images
    and, with ``include_background=False``, class 0 set to 0). It equals
    ``dice_loss(x, labels, activation="softmax", reduction="none", ...)`` with
    the same options (per image; per batch when ``weights`` is None). With
    ``axis_name``, ``ce_per_class`` and a per-batch ``dice_per_class`` cover
    the whole sharded batch; a per-image ``dice_per_class`` holds the local
    shard's images.

  The per-class terms are formed only when ``return_components=True``. They
  are components, not a ``reduction="none"``: the parts have different shapes
  (per-pixel CE against ``[groups, C]`` Dice losses), and the total stays one
  differentiable scalar for :func:`jax.grad`, with the breakdown beside it.

  With class-id labels, the class axis last, no ``label_smoothing`` and no
  ``axis_name``, both parts come from one hand-written ``custom_vjp``
  (``_ce_dice.py``: one softmax, reused by the backward pass); otherwise from
  ``softmax_cross_entropy`` and the Dice path. Both give the same value and
  gradient (tested).

  Reverse mode only (its CE part is a hand-written ``custom_vjp``): ``jax.jvp``
  and ``jax.jacfwd`` raise JAX's ``TypeError``; second derivatives work through
  reverse mode first: ``jax.hessian`` (forward-over-reverse) and
  ``jax.jacrev(jax.jacrev(f))``.

  Args:
    logits: ``[B, ..., C]`` logits.
    labels: class ids of any integer dtype or bool (shape without ``axis``),
      or one-hot labels.
    ce_weight: :math:`\lambda_{ce}`, a finite scalar ``>= 0``.
    dice_weight: :math:`\lambda_{dice}`, a finite scalar ``>= 0``.
    class_weights: optional ``[C]`` class weights for both parts.
    ignore_index: integer label left out of both parts.
    axis: the class axis.
    reduce_axes: Dice grouping (see :func:`jaxloss.dice_loss`).
    include_background: False leaves class 0 out of the Dice part.
    smooth: Dice smoothing, a finite scalar ``>= 0``.
    label_smoothing: CE label smoothing.
    weights: optional per-image weights, a scalar or ``[B]`` (both parts).
    where: optional per-image mask, a scalar or ``[B]`` (both parts).
    reduction: ``"mean"``, ``"sum"``, ``"weighted_mean"`` or
      ``"sum_by_nonzero_weights"``, for both parts.
    return_components: also return the parts and their per-class terms.
    axis_name: optional mapped axis name.

  Returns:
    The total, or ``(total, {"ce": ..., "dice": ..., "ce_per_class": [C],
    "dice_per_class": [groups, C] or [C]})``.

  Examples:
    >>> import jax.numpy as jnp
    >>> import jaxloss
    >>> x = jnp.array([[[2.0, 0.0], [0.0, 1.0]]])
    >>> total = jaxloss.softmax_ce_dice_loss(x, jnp.array([[0, 1]]))
    >>> round(float(total), 4)
    0.4153
    >>> total, parts = jaxloss.softmax_ce_dice_loss(x, jnp.array([[0, 1]]),
    ...                                             return_components=True)
    >>> [round(v, 4) for v in parts["ce_per_class"].tolist()]  # CE of each true class
    [0.1269, 0.3133]
  """
  if reduction == "none":
    raise ValueError("`reduction='none'` is not offered for a composition; call "
                     "softmax_cross_entropy and dice_loss for per-element values.")
  _check_part_weights(ce_weight=ce_weight, dice_weight=dice_weight)
  check_smooth(smooth)
  x = _checks.float_input("logits", logits)
  y = jnp.asarray(labels)
  if x.ndim < 2:
    raise ValueError(f"`logits` must be [B, ..., C] with a batch and a class axis; got shape "
                     f"{tuple(x.shape)}.")
  ax, _ = class_and_reduce_axes(x.ndim, axis, reduce_axes)
  c = _checks.check_axis_size("logits", x, ax, "class axis")
  if c == 1:
    raise ValueError(f"`logits` has shape {tuple(x.shape)}: a single channel along the class "
                     f"axis {ax}, where softmax is constant 1 (CE and Dice would be 0); use "
                     "sigmoid_bce_dice_loss for one channel.")
  _check_per_image("weights", weights, x.shape[0])
  _check_per_image("where", where, x.shape[0])
  _checks.scalar_option("label_smoothing", label_smoothing, low=0.0, high=1.0)
  fused = None
  if isinstance(label_smoothing, (int, float)) and label_smoothing == 0 and axis_name is None:
    # Class-id labels, class axis last: one softmax for both parts (_ce_dice.py).
    fused = ce_dice_totals(x, y, axis=axis, class_weights=class_weights,
                           ignore_index=ignore_index, reduce_axes=reduce_axes,
                           include_background=include_background, smooth=smooth,
                           weights=weights, where=where, reduction=reduction)
  if fused is not None:
    ce, dice = fused
  else:
    ce = softmax_cross_entropy(
        x, y, axis=axis, class_weights=class_weights, weights=weights, where=where,
        ignore_index=ignore_index, label_smoothing=label_smoothing,
        reduction=reduction, axis_name=axis_name)
    dice = dice_terms(x, y, axis=axis, activation="softmax", reduce_axes=reduce_axes,
                      class_weights=class_weights, include_background=include_background,
                      smooth=smooth, squared=False, weights=weights, where=where,
                      ignore_index=ignore_index, reduction=reduction, axis_name=axis_name,
                      per_image=True)
  total = _combine(ce_weight, ce, dice_weight, dice)
  if not return_components:
    return total
  parts = {"ce": ce, "dice": dice}
  parts.update(_softmax_per_class(x, y, c, ax, axis=axis, class_weights=class_weights,
                                  ignore_index=ignore_index, reduce_axes=reduce_axes,
                                  include_background=include_background, smooth=smooth,
                                  label_smoothing=label_smoothing, weights=weights, where=where,
                                  axis_name=axis_name))
  return total, parts
