"""Overlap losses: soft Dice, Jaccard (IoU), Tversky and generalized Dice.

All share one path: activation, targets as per-class maps, per-(group, class)
sums over ``reduce_axes``, then the library's reduction over the
``[groups, classes]`` losses, so ``reduction="none"`` is the per-class breakdown.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax import lax

from jaxloss import _checks
from jaxloss._reduction import reduce_weighted, safe_div

ACTIVATIONS = (None, "softmax", "sigmoid")


class OverlapSums(NamedTuple):
  """Per-(group, class) sums, class axis last: ``[B, C]``, or ``[C]`` per batch."""

  intersection: jax.Array  # Σ p·t
  pred: jax.Array  # Σ p^k
  target: jax.Array  # Σ t^k
  target_mass: jax.Array  # Σ t (generalized Dice weights)
  batch_reduced: bool
  where: jax.Array | None  # the loss-space mask, aligned to the loss shape


def class_and_reduce_axes(ndim: int, axis: int, reduce_axes) -> tuple[int, tuple[int, ...]]:
  """The class axis and the summed axes (default: all but the batch and class axes)."""
  ax = _checks.normalize_axis("axis", axis, ndim)
  if ax == 0:
    raise ValueError("`axis` (the class axis) cannot be the batch axis 0.")
  if reduce_axes is None:
    return ax, tuple(i for i in range(ndim) if i not in (0, ax))
  axes = tuple(sorted({_checks.normalize_axis("reduce_axes", a, ndim) for a in reduce_axes}))
  if ax in axes:
    raise ValueError(f"`reduce_axes` {tuple(reduce_axes)} contains the class axis {ax}.")
  return ax, axes


def overlap_sums(predictions, labels, *, axis, activation, reduce_axes, ignore_index, squared,
                 axis_name, where=None, per_class=True) -> OverlapSums:
  """Checks inputs, applies the activation once and forms the overlap sums.

  ``where`` masks losses (``[groups, C]``, or ``[groups]`` when not
  ``per_class``); the inputs of a masked loss are replaced by 0 before any
  arithmetic, so NaN there has zero value and zero gradient.
  """
  x = _checks.float_input("predictions", predictions)
  y = _checks.real_input("labels", labels)
  if activation not in ACTIVATIONS:
    raise ValueError(f"`activation` must be one of {ACTIVATIONS}; got {activation!r}.")
  if x.ndim < 2:
    raise ValueError(f"`predictions` must be [B, ..., C] with a batch and a class axis; got "
                     f"shape {tuple(x.shape)}.")
  ax, axes = class_and_reduce_axes(x.ndim, axis, reduce_axes)
  c = x.shape[ax]
  is_int = jnp.issubdtype(y.dtype, jnp.integer)
  elem_shape = x.shape[:ax] + x.shape[ax + 1:]
  if is_int and y.shape != elem_shape:
    raise ValueError(f"integer `labels` has shape {tuple(y.shape)}; expected {elem_shape}, the "
                     f"shape of `predictions` {tuple(x.shape)} without its class axis {ax}.")
  if not is_int and y.shape != x.shape:
    raise ValueError(f"`labels` has shape {tuple(y.shape)}; expected the shape of "
                     f"`predictions` {tuple(x.shape)} (one-hot / multi-hot), or integer ids.")
  if ignore_index is not None and not is_int:
    raise ValueError("`ignore_index` only applies to integer labels.")
  dtype = _checks.compute_dtype(x, None if is_int else y)
  x = x.astype(dtype)
  kept = [i for i in range(x.ndim) if i not in axes]
  group_axes = [i for i in kept if i != ax]
  loss_shape = tuple(x.shape[i] for i in group_axes) + ((c,) if per_class else ())
  m = m_in = None
  if where is not None:
    what = "per-(group, class) loss" if per_class else "per-group loss"
    m = _checks.align_to_loss("where", _checks.bool_input("where", where), loss_shape, what)
    # The same mask in input space: group axes in place, 1 on the summed axes.
    src = group_axes + ([ax] if per_class else [])
    m_in = jnp.expand_dims(m, tuple(range(m.ndim, x.ndim)))
    m_in = jnp.moveaxis(m_in, list(range(len(src))), src)
    x = jnp.where(m_in, x, 0)
    if not is_int:
      y = jnp.where(m_in, y, 0)
  _checks.check_finite("predictions", x)
  if activation == "softmax":
    p = jax.nn.softmax(x, axis=ax)
  elif activation == "sigmoid":
    p = jax.nn.sigmoid(x)
  else:
    p = x
  if is_int:
    _checks.check_labels_in_range("labels", y, c, ignore_index)
    t = (lax.broadcasted_iota(y.dtype, x.shape, ax) == jnp.expand_dims(y, ax)).astype(dtype)
    # A label outside [0, C) (not ignore_index) is never dropped: it poisons the sums.
    bad = (y < 0) | (y >= c)
    if ignore_index is not None:
      keep = jnp.expand_dims(y != ignore_index, ax)
      bad = bad & (y != ignore_index)
      p = jnp.where(keep, p, 0)
    t = jnp.where(jnp.expand_dims(bad, ax), jnp.nan, t)
  else:
    t = y.astype(dtype)
  pk, tk = (p * p, t * t) if squared else (p, t)
  sums = [jnp.sum(v, axis=axes) for v in (p * t, pk, tk, t)]
  batch_reduced = 0 in axes
  if batch_reduced and axis_name is not None:
    sums = list(lax.psum(tuple(sums), axis_name))
  # Class axis last: [B, C] per image, [C] per batch.
  sums = [jnp.moveaxis(s, kept.index(ax), -1) for s in sums]
  return OverlapSums(*sums, batch_reduced=batch_reduced, where=m)


def reduce_overlap(loss, sums: OverlapSums, *, class_weights, include_background, weights,
                   reduction, axis_name) -> jax.Array:
  """Reduces ``[groups, C]`` (or ``[C]``) losses with class weights and the usual options."""
  _checks.check_reduction(reduction)
  shape, dtype = loss.shape, loss.dtype
  c = shape[-1]
  w, _ = _checks.weights_and_mask(weights, None, shape, dtype, what="per-(group, class) loss")
  m = sums.where
  if class_weights is not None:
    cw = _checks.real_input("class_weights", class_weights)
    if cw.shape != (c,):
      raise ValueError(f"`class_weights` has shape {tuple(cw.shape)}; expected ({c},), one "
                       "weight per class.")
    _checks.check_nonnegative("class_weights", cw)
    cw = cw.astype(dtype).reshape((1,) * (len(shape) - 1) + (c,))
    w = cw if w is None else w * cw
  if not include_background:
    keep = (lax.broadcasted_iota(jnp.int32, (1,) * (len(shape) - 1) + (c,), len(shape) - 1)
            != 0)
    m = keep if m is None else jnp.logical_and(m, keep)
  if m is not None:
    loss = jnp.where(m, loss, 0)
  wl = loss if w is None else w * loss
  # A batch-level Dice is already psum-ed: the same [C] losses live on every device.
  return reduce_weighted(wl, w, m, reduction, None if sums.batch_reduced else axis_name)


_SQUARED_ARG = "``True`` sums squares in the denominator (V-Net, MONAI ``squared_pred``)."


def _with_common_args(**own_args: str):
  """Fills the shared ``Args``/``Returns`` into a docstring's ``{common_args}``.

  ``own_args`` (name -> description) are the loss's own options, listed after
  ``labels``.
  """
  own = "".join(f"    {name}: {text}\n" for name, text in own_args.items())
  text = _COMMON_ARGS.strip("\n").lstrip()
  text = text.replace("\n    axis: ", f"\n{own}    axis: ", 1)

  def decorate(fn):
    fn.__doc__ = fn.__doc__.replace("{common_args}", text)
    return fn

  return decorate


def _check_smooth(smooth) -> None:
  """Raises for a concrete negative ``smooth``; a traced one passes unchecked."""
  if isinstance(smooth, (int, float)) and smooth < 0:
    raise ValueError(f"`smooth` must be >= 0; got {smooth!r}.")


_COMMON_ARGS = """
  Args:
    predictions: probabilities, or logits with ``activation``; ``[B, ..., C]``.
    labels: integer class ids (shape without ``axis``) or one-hot / multi-hot
      maps (shape of ``predictions``).
    axis: the class axis.
    activation: ``None`` (probabilities), ``"softmax"`` or ``"sigmoid"``.
    reduce_axes: axes summed into one overlap; default every axis but the batch
      axis 0 and ``axis`` (one value per image and class, MONAI's default).
      Include 0 for one value per class over the batch (smp's default, MONAI
      ``batch=True``).
    class_weights: optional ``[C]`` weights of the per-class losses.
    include_background: False leaves class 0 out, as MONAI does.
    smooth: added to numerator and denominator.
    weights: optional weights of the ``[B, C]`` losses (``[B]`` per image).
    where: optional mask of the ``[B, C]`` losses.
    ignore_index: integer label whose pixels leave every sum.
    reduction: see :func:`jaxloss.reduce_loss`; ``"none"`` returns the
      ``[B, C]`` (or ``[C]``) per-class losses.
    axis_name: mapped axis to ``psum`` over: the sums of a batch-level overlap,
      else the reduction.

  Returns:
    The reduced loss, or the per-(group, class) losses for ``"none"``.
"""


@_with_common_args(squared=_SQUARED_ARG)
def dice_loss(
    predictions: jax.typing.ArrayLike,
    labels: jax.typing.ArrayLike,
    *,
    axis: int = -1,
    activation: str | None = None,
    reduce_axes: Sequence[int] | None = None,
    class_weights: jax.typing.ArrayLike | None = None,
    include_background: bool = True,
    smooth: float = 1e-5,
    squared: bool = False,
    weights: jax.typing.ArrayLike | None = None,
    where: jax.typing.ArrayLike | None = None,
    ignore_index: int | None = None,
    reduction: str = "mean",
    axis_name: str | None = None,
) -> jax.Array:
  r"""Soft Dice loss, one value per (group, class).

  .. math::
    D = \frac{2 \sum p\,t + s}{\sum p^k + \sum t^k + s}, \qquad l = 1 - D

  with :math:`k = 2` when ``squared`` (V-Net) and 1 otherwise, summed over
  ``reduce_axes``. An empty class predicted empty scores :math:`D = s/s = 1`.

  Equals MONAI ``DiceLoss(softmax=..., sigmoid=..., squared_pred=squared,
  include_background=..., smooth_nr=s, smooth_dr=s, batch=...)`` with
  ``reduction="mean"``, and with ``reduction="none"`` its per-class values.
  Unlike optax's ``dice_loss``, it is jit-safe for every option.

  {common_args}
  Examples:
    >>> import jax.numpy as jnp
    >>> import jaxloss
    >>> p = jnp.array([[[0.9, 0.1], [0.2, 0.8], [0.6, 0.4]]])  # [B=1, pixels=3, C=2]
    >>> l = jaxloss.dice_loss(p, jnp.array([[0, 1, 1]]), smooth=0.0, reduction="none")
    >>> [[round(v, 4) for v in row] for row in l.tolist()]
    [[0.3333, 0.2727]]
  """
  _check_smooth(smooth)
  s = overlap_sums(predictions, labels, axis=axis, activation=activation,
                   reduce_axes=reduce_axes, ignore_index=ignore_index, squared=squared,
                   axis_name=axis_name, where=where)
  loss = 1 - safe_div(2 * s.intersection + smooth, s.pred + s.target + smooth)
  return reduce_overlap(loss, s, class_weights=class_weights,
                        include_background=include_background, weights=weights,
                        reduction=reduction, axis_name=axis_name)


@_with_common_args(squared=_SQUARED_ARG)
def jaccard_loss(
    predictions: jax.typing.ArrayLike,
    labels: jax.typing.ArrayLike,
    *,
    axis: int = -1,
    activation: str | None = None,
    reduce_axes: Sequence[int] | None = None,
    class_weights: jax.typing.ArrayLike | None = None,
    include_background: bool = True,
    smooth: float = 1e-5,
    squared: bool = False,
    weights: jax.typing.ArrayLike | None = None,
    where: jax.typing.ArrayLike | None = None,
    ignore_index: int | None = None,
    reduction: str = "mean",
    axis_name: str | None = None,
) -> jax.Array:
  r"""Soft Jaccard (IoU) loss, one value per (group, class).

  .. math::
    J = \frac{I + s}{U + s}, \quad I = \sum p\,t, \quad
    U = \sum p^k + \sum t^k - I, \qquad l = 1 - J

  MONAI ``DiceLoss(jaccard=True, smooth_nr=s', smooth_dr=s')`` computes
  :math:`1 - (2I + s')/(2U + s')`, which equals this loss with
  :math:`s' = 2s`.

  {common_args}
  Examples:
    >>> import jax.numpy as jnp
    >>> import jaxloss
    >>> p = jnp.array([[[1.0, 0.0], [0.5, 0.5]]])
    >>> l = jaxloss.jaccard_loss(p, jnp.array([[0, 0]]), smooth=0.0, reduction="none")
    >>> [[round(v, 4) for v in row] for row in l.tolist()]
    [[0.25, 1.0]]
  """
  _check_smooth(smooth)
  s = overlap_sums(predictions, labels, axis=axis, activation=activation,
                   reduce_axes=reduce_axes, ignore_index=ignore_index, squared=squared,
                   axis_name=axis_name, where=where)
  union = s.pred + s.target - s.intersection
  loss = 1 - safe_div(s.intersection + smooth, union + smooth)
  return reduce_overlap(loss, s, class_weights=class_weights,
                        include_background=include_background, weights=weights,
                        reduction=reduction, axis_name=axis_name)


@_with_common_args(
    alpha="weight of the false positives (MONAI and optax convention).",
    beta="weight of the false negatives; ``alpha = beta = 0.5`` is Dice.",
    gamma="focal exponent of ``1 - T`` (1: plain Tversky; must be > 0).")
def tversky_loss(
    predictions: jax.typing.ArrayLike,
    labels: jax.typing.ArrayLike,
    *,
    alpha: float = 0.5,
    beta: float = 0.5,
    gamma: float = 1.0,
    axis: int = -1,
    activation: str | None = None,
    reduce_axes: Sequence[int] | None = None,
    class_weights: jax.typing.ArrayLike | None = None,
    include_background: bool = True,
    smooth: float = 1e-5,
    weights: jax.typing.ArrayLike | None = None,
    where: jax.typing.ArrayLike | None = None,
    ignore_index: int | None = None,
    reduction: str = "mean",
    axis_name: str | None = None,
) -> jax.Array:
  r"""Tversky loss, and focal Tversky with ``gamma``.

  .. math::
    T = \frac{TP + s}{TP + \alpha\,FP + \beta\,FN + s}, \qquad l = (1 - T)^{\gamma}

  with :math:`TP = \sum p t`, :math:`FP = \sum p (1-t)`, :math:`FN = \sum
  (1-p) t`. ``alpha`` weights false positives and ``beta`` false negatives,
  as in MONAI ``TverskyLoss(alpha, beta)`` and optax; ``alpha = beta = 0.5``
  is Dice. **Keras ≤ 3.15 swaps them**: its ``Tversky(alpha=a, beta=b)``
  weights false *negatives* by ``a``. Focal Tversky (Abraham & Khan 2019)
  writes :math:`(1-T)^{1/\gamma'}`; pass ``gamma = 1/γ'``.

  {common_args}
  Examples:
    >>> import jax.numpy as jnp
    >>> import jaxloss
    >>> p = jnp.array([[[0.8, 0.2], [0.4, 0.6]]])
    >>> l = jaxloss.tversky_loss(p, jnp.array([[0, 1]]), alpha=0.7, beta=0.3, smooth=0.0,
    ...                          reduction="none")
    >>> [[round(v, 4) for v in row] for row in l.tolist()]
    [[0.2982, 0.3023]]
  """
  _check_smooth(smooth)
  if isinstance(gamma, (int, float)) and gamma <= 0:
    raise ValueError(f"`gamma` must be > 0; got {gamma!r}.")
  s = overlap_sums(predictions, labels, axis=axis, activation=activation,
                   reduce_axes=reduce_axes, ignore_index=ignore_index, squared=False,
                   axis_name=axis_name, where=where)
  tp = s.intersection
  fp, fn = s.pred - tp, s.target - tp
  score = safe_div(tp + smooth, tp + alpha * fp + beta * fn + smooth)
  base = 1 - score
  if gamma != 1:
    positive = base > 0  # (1 − T)^γ with a zero gradient at T == 1 (double where)
    base = jnp.where(positive, jnp.where(positive, base, 1) ** gamma, 0)
  return reduce_overlap(base, s, class_weights=class_weights,
                        include_background=include_background, weights=weights,
                        reduction=reduction, axis_name=axis_name)


def generalized_dice_loss(
    predictions: jax.typing.ArrayLike,
    labels: jax.typing.ArrayLike,
    *,
    weight_type: str = "square",
    axis: int = -1,
    activation: str | None = None,
    reduce_axes: Sequence[int] | None = None,
    include_background: bool = True,
    smooth: float = 1e-5,
    weights: jax.typing.ArrayLike | None = None,
    where: jax.typing.ArrayLike | None = None,
    ignore_index: int | None = None,
    reduction: str = "mean",
    axis_name: str | None = None,
) -> jax.Array:
  r"""Generalized Dice loss (Sudre et al. 2017), one value per group.

  .. math::
    l = 1 - \frac{2 \sum_c w_c I_c + s}{\sum_c w_c (P_c + T_c) + s}, \qquad
    w_c = 1 / (\sum t_c)^2 \ (\text{"square"}),\ 1/\sum t_c\ (\text{"simple"}),\ 1

  An empty class would get an infinite weight; as in MONAI, it gets the
  largest finite weight of its group instead, so nothing is inf or NaN.
  Equals MONAI ``GeneralizedDiceLoss(w_type=weight_type, smooth_nr=s,
  smooth_dr=s, batch=...)``. ``reduction="none"`` returns one loss per group
  (``[B]``, or a scalar per batch); ``weights``/``where`` act on groups.

  Args:
    predictions: probabilities, or logits with ``activation``; ``[B, ..., C]``.
    labels: integer class ids (shape without ``axis``) or one-hot / multi-hot
      maps (shape of ``predictions``).
    weight_type: ``"square"``, ``"simple"`` or ``"uniform"`` class weights :math:`w_c`.
    axis: the class axis.
    activation: ``None`` (probabilities), ``"softmax"`` or ``"sigmoid"``.
    reduce_axes: axes summed into one group; default every axis but the batch
      axis 0 and ``axis`` (one loss per image). Include 0 for one loss over the
      batch (MONAI ``batch=True``).
    include_background: False leaves class 0 out, as MONAI does.
    smooth: added to numerator and denominator.
    weights: optional weights of the per-group losses (``[B]`` per image).
    where: optional mask of the per-group losses.
    ignore_index: integer label whose pixels leave every sum.
    reduction: see :func:`jaxloss.reduce_loss`, over the groups.
    axis_name: mapped axis to ``psum`` over: the sums of a batch-level loss,
      else the reduction.

  Returns:
    The reduced loss, or the per-group losses for ``"none"``.

  Examples:
    >>> import jax.numpy as jnp
    >>> import jaxloss
    >>> p = jnp.array([[[0.9, 0.1], [0.2, 0.8], [0.6, 0.4]]])
    >>> round(float(jaxloss.generalized_dice_loss(p, jnp.array([[0, 1, 1]]))), 4)
    0.3191
  """
  _check_smooth(smooth)
  if weight_type not in ("square", "simple", "uniform"):
    raise ValueError(f"`weight_type` must be 'square', 'simple' or 'uniform'; got "
                     f"{weight_type!r}.")
  s = overlap_sums(predictions, labels, axis=axis, activation=activation,
                   reduce_axes=reduce_axes, ignore_index=ignore_index, squared=False,
                   axis_name=axis_name, where=where, per_class=False)
  inter, denom, mass = s.intersection, s.pred + s.target, s.target_mass
  if not include_background:
    inter, denom, mass = inter[..., 1:], denom[..., 1:], mass[..., 1:]
  if weight_type == "uniform":
    w = jnp.ones_like(mass)
  else:
    w = safe_div(jnp.ones_like(mass), mass * mass if weight_type == "square" else mass)
    empty = mass == 0
    w = jnp.where(empty, jnp.max(w, axis=-1, keepdims=True), w)
  loss = 1 - safe_div(2 * jnp.sum(w * inter, -1) + smooth, jnp.sum(w * denom, -1) + smooth)
  _checks.check_reduction(reduction)
  wt, _ = _checks.weights_and_mask(weights, None, loss.shape, loss.dtype, what="per-group loss")
  m = s.where
  if m is not None:
    loss = jnp.where(m, loss, 0)
  return reduce_weighted(loss if wt is None else wt * loss, wt, m, reduction,
                         None if s.batch_reduced else axis_name)
