"""Overlap losses: soft Dice, Jaccard (IoU), Tversky and generalized Dice.

Their shared data path (checks, masks, sums, reduction) is ``_overlap.py``.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp

from jaxloss import _checks
from jaxloss._overlap import check_smooth, option, overlap_sums, reduce_overlap
from jaxloss._reduction import reduce_weighted, safe_div

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
      With ``"softmax"`` and class-id labels the sums and their gradient are
      one hand-written ``custom_vjp``: reverse mode only (``jax.jvp`` and
      ``jax.jacfwd`` raise JAX's ``TypeError``; ``jax.hessian`` and
      ``jax.jacrev(jax.jacrev(f))`` work).
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
    # (1 − T)^γ with a zero gradient at T == 1 (double where); base <= 0 selects 0 but
    # NaN (an invalid label's poison) is not <= 0, so it stays NaN instead of becoming 0.
    zero = base <= 0
    base = jnp.where(zero, 0, jnp.where(zero, 1, base) ** option(gamma, dtype))
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
