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
  weights: jax.Array | None  # the loss-space weights, aligned to the loss shape


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


def check_channels(name: str, x: jax.Array, ax: int, *, activation: str | None = None,
                   include_background: bool = True) -> int:
  """The class count along ``ax``, refusing C = 0 and the options meaningless for C = 1."""
  c = _checks.check_axis_size(name, x, ax, "class axis")
  if c == 1 and activation == "softmax":
    raise ValueError(f"`activation`='softmax' with a single channel (`{name}` has shape "
                     f"{tuple(x.shape)}, class axis {ax}): softmax over one channel is "
                     "constant 1; use activation='sigmoid'.")
  if c == 1 and not include_background:
    raise ValueError(f"`include_background`=False with a single channel (`{name}` has shape "
                     f"{tuple(x.shape)}, class axis {ax}): a single channel has no background "
                     "to exclude; pass include_background=True.")
  return c


def check_smooth(smooth):
  """``smooth`` is a finite scalar >= 0 (a traced one passes unchecked)."""
  return _checks.scalar_option("smooth", smooth, low=0.0)


def option(value, dtype) -> jax.Array:
  """A checked scalar option in the compute dtype (no promotion against the inputs)."""
  return jnp.asarray(value).astype(dtype)


def to_input_space(v: jax.Array | None, src: list[int], ndim: int) -> jax.Array | None:
  """A loss-space array (axes ``src`` of the input, in order) laid out in input space.

  The result has rank ``ndim``: the loss axes move to positions ``src`` and every
  other axis has size 1, so it broadcasts against the predictions.
  """
  if v is None:
    return None
  v = jnp.expand_dims(v, tuple(range(v.ndim, ndim)))
  return jnp.moveaxis(v, list(range(len(src))), src)


def _and(*masks: jax.Array | None) -> jax.Array | None:
  present = [m for m in masks if m is not None]
  if not present:
    return None
  out = present[0]
  for m in present[1:]:
    out = jnp.logical_and(out, m)
  return out


def batch_level_mask(image_mask: jax.Array | None, batch: int, rank: int,
                     axis_name: str | None) -> jax.Array | None:
  """The mask of a batch-level loss: False when no image of the (global) batch is kept.

  An empty batch (``B = 0``, static) and an all-masked batch then reduce to 0 with
  zero gradient, whatever ``smooth``.
  """
  if batch == 0:
    return jnp.zeros((1,) * rank, bool)
  if image_mask is None:
    return None
  kept = jnp.sum(image_mask.astype(jnp.int32))
  if axis_name is not None:
    kept = lax.psum(kept, axis_name)
  return jnp.reshape(kept > 0, (1,) * rank)


def overlap_sums(predictions, labels, *, axis, activation, reduce_axes, ignore_index, squared,
                 axis_name, weights=None, where=None, per_class=True, include_background=True,
                 per_image=False) -> OverlapSums:
  """Checks inputs, applies the activation once and forms the overlap sums.

  ``weights`` and ``where`` act on the losses (``[groups, C]``, or ``[groups]``
  when not ``per_class``). A masked loss takes no part in any sum, and its
  inputs are replaced by 0 before any arithmetic, so NaN there has zero value
  and zero gradient. With softmax and a per-class mask, the logits of a group
  are zeroed only when *every* class of the group is masked (the kept classes'
  probabilities depend on all logits); the per-class terms are masked after
  the activation.

  ``per_image=True`` (the compositions) reads ``weights``/``where`` as ``[B]``
  per-image options. When the batch axis is summed (a batch-level overlap) they
  act inside the sums: a masked image leaves every sum (≡ slicing it away) and
  an image of weight ``w`` counts ``w`` times.
  """
  x = _checks.float_input("predictions", predictions)
  y = _checks.real_input("labels", labels)
  ignore_index = _checks.check_ignore_index(ignore_index)
  if activation not in ACTIVATIONS:
    raise ValueError(f"`activation` must be one of {ACTIVATIONS}; got {activation!r}.")
  if x.ndim < 2:
    raise ValueError(f"`predictions` must be [B, ..., C] with a batch and a class axis; got "
                     f"shape {tuple(x.shape)}.")
  ax, axes = class_and_reduce_axes(x.ndim, axis, reduce_axes)
  c = check_channels("predictions", x, ax, activation=activation,
                     include_background=include_background)
  # bool labels without the class axis are class ids 0/1; with it, multi-hot maps.
  is_int = _checks.is_class_ids(y) and not (y.dtype == jnp.bool_ and y.shape == x.shape)
  elem_shape = x.shape[:ax] + x.shape[ax + 1:]
  if is_int and y.shape != elem_shape:
    raise ValueError(f"integer `labels` has shape {tuple(y.shape)}; expected {elem_shape}, the "
                     f"shape of `predictions` {tuple(x.shape)} without its class axis {ax}.")
  if not is_int and y.shape != x.shape:
    raise ValueError(f"`labels` has shape {tuple(y.shape)}; expected the shape of "
                     f"`predictions` {tuple(x.shape)} (one-hot / multi-hot), or integer ids.")
  if ignore_index is not None and not is_int:
    raise ValueError("`ignore_index` only applies to integer labels.")
  if is_int:
    y = _checks.widen_labels(y)  # before any comparison: uint8/int8/bool give the same ids
  dtype = _checks.compute_dtype(x, None if is_int else y)
  x = x.astype(dtype)
  kept = [i for i in range(x.ndim) if i not in axes]
  group_axes = [i for i in kept if i != ax]
  loss_shape = tuple(x.shape[i] for i in group_axes) + ((c,) if per_class else ())
  batch_reduced = 0 in axes
  what = "per-(group, class) loss" if per_class else "per-group loss"
  img_w = img_m = None
  if per_image and batch_reduced:
    img_w, img_m = _checks.weights_and_mask(weights, where, x.shape[:1], dtype,
                                            what="per-image")
    w = None
    # The batch-level loss exists while some image is kept with a non-zero weight.
    present = img_m if img_w is None else img_w != 0
    m = batch_level_mask(present, x.shape[0], len(loss_shape), axis_name)
  else:
    w, m = _checks.weights_and_mask(weights, where, loss_shape, dtype, what=what)
    if batch_reduced:
      m = _and(m, batch_level_mask(None, x.shape[0], len(loss_shape), axis_name))
  # Input-space masks: the loss mask per class (`m_in`), per group (`g_in`, any class
  # kept), per image and per pixel (ignore_index). Each has size 1 where it broadcasts.
  src = group_axes + ([ax] if per_class else [])
  m_in = to_input_space(m, src, x.ndim)
  g_in = m_in
  if m is not None and per_class:
    g_in = to_input_space(jnp.any(m, axis=-1, keepdims=True), src, x.ndim)
  img_in = None if img_m is None else img_m.reshape(img_m.shape + (1,) * (x.ndim - 1))
  keep_pix = None
  if ignore_index is not None:
    keep_pix = jnp.expand_dims(y != ignore_index, ax)
  # Logits that reach the activation: softmax couples the classes of a pixel.
  x_used = _and(g_in if activation == "softmax" else m_in, img_in, keep_pix)
  terms_used = _and(m_in, img_in, keep_pix)
  _checks.check_finite("predictions", x, where=x_used)
  if x_used is not None:
    x = jnp.where(x_used, x, jnp.zeros((), dtype))
  if activation == "softmax":
    p = jax.nn.softmax(x, axis=ax)
  elif activation == "sigmoid":
    p = jax.nn.sigmoid(x)
  else:
    p = x
  if is_int:
    label_used = _and(g_in, img_in)
    _checks.check_labels_in_range("labels", y, c, ignore_index,
                                  None if label_used is None else jnp.squeeze(label_used, ax))
    t = (lax.broadcasted_iota(y.dtype, x.shape, ax) == jnp.expand_dims(y, ax)).astype(dtype)
    # A label outside [0, C) (not ignore_index, not masked) is never dropped: it
    # poisons every sum of its group.
    bad = _checks.invalid_labels(y, c, ignore_index)
    t = jnp.where(jnp.expand_dims(bad, ax), jnp.nan, t)
  else:
    t = y.astype(dtype)
    _checks.check_finite("labels", t, where=terms_used)
  if terms_used is not None:
    # Ignored pixels and masked (group, class) entries leave every sum (≡ slicing).
    zero = jnp.zeros((), dtype)
    p, t = jnp.where(terms_used, p, zero), jnp.where(terms_used, t, zero)
  pk, tk = (p * p, t * t) if squared else (p, t)
  terms = [p * t, pk, tk, t]
  if img_w is not None:  # per-image weights of a batch-level overlap: w copies of the image
    wi = img_w.reshape(img_w.shape + (1,) * (x.ndim - 1))
    terms = [wi * v for v in terms]
  sums = [jnp.sum(v, axis=axes) for v in terms]
  if batch_reduced and axis_name is not None:
    sums = list(lax.psum(tuple(sums), axis_name))
  # Class axis last: [B, C] per image, [C] per batch.
  sums = [jnp.moveaxis(s, kept.index(ax), -1) for s in sums]
  return OverlapSums(*sums, batch_reduced=batch_reduced, where=m, weights=w)


def reduce_overlap(loss, sums: OverlapSums, *, class_weights, include_background,
                   reduction, axis_name) -> jax.Array:
  """Reduces ``[groups, C]`` (or ``[C]``) losses with class weights and the usual options."""
  _checks.check_reduction(reduction)
  shape, dtype = loss.shape, loss.dtype
  c = shape[-1]
  w, m = sums.weights, sums.where
  if class_weights is not None:
    cw = _checks.real_input("class_weights", class_weights)
    if cw.shape != (c,):
      raise ValueError(f"`class_weights` has shape {tuple(cw.shape)}; expected ({c},), one "
                       "weight per class.")
    cw = cw.astype(dtype)
    _checks.check_finite("class_weights", cw)
    _checks.check_nonnegative("class_weights", cw)
    cw = cw.reshape((1,) * (len(shape) - 1) + (c,))
    w = cw if w is None else w * cw
  if not include_background:
    keep = (lax.broadcasted_iota(jnp.int32, (1,) * (len(shape) - 1) + (c,), len(shape) - 1)
            != 0)
    m = keep if m is None else jnp.logical_and(m, keep)
  if m is not None:
    loss = jnp.where(m, loss, jnp.zeros((), dtype))
    if w is not None:
      w = jnp.where(m, w, jnp.zeros((), dtype))
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


_COMMON_ARGS = """
  Args:
    predictions: probabilities, or logits with ``activation``; ``[B, ..., C]``.
    labels: class ids of any integer dtype, or bool (shape without ``axis``;
      widened before use, so uint8 and int64 ids give identical results), or
      one-hot / multi-hot maps (float or bool, shape of ``predictions``).
    axis: the class axis; ``C = 0`` raises ``ValueError``.
    activation: ``None`` (probabilities), ``"softmax"`` or ``"sigmoid"``.
      ``"softmax"`` with a single channel (``C = 1``) raises ``ValueError``:
      it is constant 1; use ``"sigmoid"``.
    reduce_axes: axes summed into one overlap; default every axis but the batch
      axis 0 and ``axis`` (one value per image and class, MONAI's default).
      Include 0 for one value per class over the batch (smp's default, MONAI
      ``batch=True``); an empty batch (``B = 0``) then gives 0.
    class_weights: optional ``[C]`` weights of the per-class losses.
    include_background: False leaves class 0 out, as MONAI does. With a single
      channel (``C = 1``) False raises ``ValueError``: there is no background
      to exclude (MONAI warns and ignores it).
    smooth: a finite scalar ``>= 0`` added to numerator and denominator.
    weights: optional weights of the ``[B, C]`` losses (``[B]`` per image).
    where: optional mask of the ``[B, C]`` losses (``[B]`` per image). A masked
      (group, class) leaves every sum after the activation: the other classes'
      losses are those of the unmasked call, also with softmax.
    ignore_index: integer label whose pixels leave every sum (prediction,
      target and intersection), exactly as if they were sliced away, also for
      ``ignore_index`` inside ``[0, C)``. Other labels outside ``[0, C)`` make
      their group's losses NaN.
    reduction: see :func:`jaxloss.reduce_loss`; ``"none"`` returns the
      ``[B, C]`` (or ``[C]``) per-class losses.
    axis_name: mapped axis to ``psum`` over: the sums of a batch-level overlap,
      else the reduction.

  Returns:
    The reduced loss, or the per-(group, class) losses for ``"none"``.
"""


def dice_terms(predictions, labels, *, axis, activation, reduce_axes, class_weights,
               include_background, smooth, squared, weights, where, ignore_index, reduction,
               axis_name, per_image=False) -> jax.Array:
  """The Dice loss behind :func:`dice_loss` and the compositions' Dice part."""
  check_smooth(smooth)
  s = overlap_sums(predictions, labels, axis=axis, activation=activation,
                   reduce_axes=reduce_axes, ignore_index=ignore_index, squared=squared,
                   axis_name=axis_name, weights=weights, where=where,
                   include_background=include_background, per_image=per_image)
  sm = option(smooth, s.pred.dtype)
  loss = 1 - safe_div(2 * s.intersection + sm, s.pred + s.target + sm)
  return reduce_overlap(loss, s, class_weights=class_weights,
                        include_background=include_background, reduction=reduction,
                        axis_name=axis_name)


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
  MONAI's ``soft_label=True`` (an L1 form for soft targets) is not offered;
  with soft targets this loss equals MONAI's ``soft_label=False``, and
  ``smooth_nr != smooth_dr`` has no equivalent (one ``smooth`` here).

  optax's ``dice_loss(p, t, smooth=s_o)`` (α = β = 0.5) puts its smoothing
  next to the intersection, :math:`(I + s_o)/((P + T)/2 + s_o)`, so it equals
  this loss with ``smooth = 2 * s_o``; its default reduction keeps one value
  per image, the mean over classes:
  ``dice_loss(x, t, activation="softmax", smooth=2 * s_o, reduction="none").mean(-1)``
  (optax applies softmax for ``C > 1`` and sigmoid for one channel).
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
  return dice_terms(predictions, labels, axis=axis, activation=activation,
                    reduce_axes=reduce_axes, class_weights=class_weights,
                    include_background=include_background, smooth=smooth, squared=squared,
                    weights=weights, where=where, ignore_index=ignore_index,
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
  check_smooth(smooth)
  s = overlap_sums(predictions, labels, axis=axis, activation=activation,
                   reduce_axes=reduce_axes, ignore_index=ignore_index, squared=squared,
                   axis_name=axis_name, weights=weights, where=where,
                   include_background=include_background)
  sm = option(smooth, s.pred.dtype)
  union = s.pred + s.target - s.intersection
  loss = 1 - safe_div(s.intersection + sm, union + sm)
  return reduce_overlap(loss, s, class_weights=class_weights,
                        include_background=include_background, reduction=reduction,
                        axis_name=axis_name)


def _is_one(value) -> bool:
  """Whether a scalar option is concretely 1 (a traced one is not known to be)."""
  try:
    return float(value) == 1.0
  except (jax.errors.ConcretizationTypeError, jax.errors.TracerArrayConversionError):
    return False


@_with_common_args(
    alpha="weight of the false positives (MONAI and optax convention); a finite "
    "scalar ``>= 0``.",
    beta="weight of the false negatives, a finite scalar ``>= 0``; ``alpha = beta = 0.5`` "
    "is Dice.",
    gamma="focal exponent of ``1 - T`` (1: plain Tversky); a finite scalar ``> 0``.")
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
  is Dice. optax's ``dice_loss(x, t, smooth=s, alpha=a, beta=b)`` (softmax
  for ``C > 1``, its default per-image mean over classes) equals
  ``tversky_loss(x, t, activation="softmax", alpha=a, beta=b, smooth=s,
  reduction="none").mean(-1)`` exactly, the same ``smooth``. **Keras ≤ 3.15
  swaps them**: its ``Tversky(alpha=a, beta=b)`` weights false *negatives*
  by ``a``. Focal Tversky (Abraham & Khan 2019) writes
  :math:`(1-T)^{1/\gamma'}`; pass ``gamma = 1/γ'``.

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
  check_smooth(smooth)
  _checks.scalar_option("alpha", alpha, low=0.0)
  _checks.scalar_option("beta", beta, low=0.0)
  _checks.scalar_option("gamma", gamma, low=0.0, low_inclusive=False)
  s = overlap_sums(predictions, labels, axis=axis, activation=activation,
                   reduce_axes=reduce_axes, ignore_index=ignore_index, squared=False,
                   axis_name=axis_name, weights=weights, where=where,
                   include_background=include_background)
  dtype = s.pred.dtype
  sm, a, b = option(smooth, dtype), option(alpha, dtype), option(beta, dtype)
  tp = s.intersection
  fp, fn = s.pred - tp, s.target - tp
  score = safe_div(tp + sm, tp + a * fp + b * fn + sm)
  base = 1 - score
  if not _is_one(gamma):
    positive = base > 0  # (1 − T)^γ with a zero gradient at T == 1 (double where)
    base = jnp.where(positive, jnp.where(positive, base, 1) ** option(gamma, dtype), 0)
  return reduce_overlap(base, s, class_weights=class_weights,
                        include_background=include_background, reduction=reduction,
                        axis_name=axis_name)


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
  A single channel (``C = 1``) works with ``include_background=True`` (the
  one class's soft Dice); ``include_background=False`` or
  ``activation="softmax"`` with one channel raise ``ValueError``.

  Args:
    predictions: probabilities, or logits with ``activation``; ``[B, ..., C]``.
    labels: class ids of any integer dtype, or bool (shape without ``axis``),
      or one-hot / multi-hot maps (float or bool, shape of ``predictions``).
    weight_type: ``"square"``, ``"simple"`` or ``"uniform"`` class weights :math:`w_c`.
    axis: the class axis; ``C = 0`` raises ``ValueError``.
    activation: ``None`` (probabilities), ``"softmax"`` (``C >= 2``) or ``"sigmoid"``.
    reduce_axes: axes summed into one group; default every axis but the batch
      axis 0 and ``axis`` (one loss per image). Include 0 for one loss over the
      batch (MONAI ``batch=True``).
    include_background: False leaves class 0 out, as MONAI does (``C >= 2``).
    smooth: a finite scalar ``>= 0`` added to numerator and denominator.
    weights: optional weights of the per-group losses (``[B]`` per image).
    where: optional mask of the per-group losses.
    ignore_index: integer label whose pixels leave every sum, the class
      weights' target mass included, exactly as if sliced away.
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
  check_smooth(smooth)
  if weight_type not in ("square", "simple", "uniform"):
    raise ValueError(f"`weight_type` must be 'square', 'simple' or 'uniform'; got "
                     f"{weight_type!r}.")
  _checks.check_reduction(reduction)
  s = overlap_sums(predictions, labels, axis=axis, activation=activation,
                   reduce_axes=reduce_axes, ignore_index=ignore_index, squared=False,
                   axis_name=axis_name, weights=weights, where=where, per_class=False,
                   include_background=include_background)
  inter, denom, mass = s.intersection, s.pred + s.target, s.target_mass
  if not include_background:
    inter, denom, mass = inter[..., 1:], denom[..., 1:], mass[..., 1:]
  if weight_type == "uniform":
    w = jnp.ones_like(mass)
  else:
    w = safe_div(jnp.ones_like(mass), mass * mass if weight_type == "square" else mass)
    empty = mass == 0
    w = jnp.where(empty, jnp.max(w, axis=-1, keepdims=True), w)
  sm = option(smooth, inter.dtype)
  loss = 1 - safe_div(2 * jnp.sum(w * inter, -1) + sm, jnp.sum(w * denom, -1) + sm)
  wt, m = s.weights, s.where
  if m is not None:
    loss = jnp.where(m, loss, jnp.zeros((), loss.dtype))
  return reduce_weighted(loss if wt is None else wt * loss, wt, m, reduction,
                         None if s.batch_reduced else axis_name)
