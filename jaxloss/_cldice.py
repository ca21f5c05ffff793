"""Connectivity: the soft skeleton, clDice and Dice + clDice (Shit et al., CVPR 2021).

Soft erosion and dilation are min and max pooling with ``lax.reduce_window``
(stride 1, size-3 windows, padded with the neutral ±inf as torch's max pooling
pads with -inf, so the image border never erodes or dilates anything). The
data path (checks, activation, per-class targets, masks) is the overlap
losses' ``_overlap.overlap_maps``.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from jaxloss import _checks
from jaxloss._compositions import _check_per_image
from jaxloss._overlap import OverlapSums, option, overlap_maps, reduce_overlap
from jaxloss._overlap_losses import dice_terms
from jaxloss._reduction import reduce_elements, safe_div
from jaxloss._shape_losses import background_weights, check_spatial, class_sums


def _pool(x: jax.Array, axis: int, op, identity: float) -> jax.Array:
  """A size-3, stride-1 window of ``op`` along ``axis``, padded with ``op``'s identity."""
  window = tuple(3 if a == axis else 1 for a in range(x.ndim))
  padding = tuple((1, 1) if a == axis else (0, 0) for a in range(x.ndim))
  init = np.asarray(identity, x.dtype)  # concrete: lax picks the differentiable min/max pool
  return lax.reduce_window(x, init, op, window, (1,) * x.ndim, padding)


def soft_erode(x: jax.Array, spatial: Sequence[int]) -> jax.Array:
  """The minimum over the cross-shaped neighbourhood (3×1 and 1×3 in 2-D), as MONAI."""
  return functools.reduce(jnp.minimum, [_pool(x, a, lax.min, np.inf) for a in spatial])


def soft_dilate(x: jax.Array, spatial: Sequence[int]) -> jax.Array:
  """The maximum over the full 3×…×3 box (separable: one size-3 window per axis)."""
  for a in spatial:
    x = _pool(x, a, lax.max, -np.inf)
  return x


def skeleton(img: jax.Array, spatial: Sequence[int], iterations: int) -> jax.Array:
  """MONAI's ``soft_skel``, reusing each erosion for the next opening."""
  return _skeleton(img, tuple(spatial), iterations)


# Jitted so that an eager call compiles the pooling chain once, not primitive by primitive.
@functools.partial(jax.jit, static_argnums=(1, 2))
def _skeleton(img: jax.Array, spatial: tuple[int, ...], iterations: int) -> jax.Array:
  eroded = soft_erode(img, spatial)
  skel = jax.nn.relu(img - soft_dilate(eroded, spatial))
  for _ in range(iterations):
    img = eroded
    eroded = soft_erode(img, spatial)
    delta = jax.nn.relu(img - soft_dilate(eroded, spatial))
    skel = skel + jax.nn.relu(delta - skel * delta)
  return skel


def _check_iterations(iterations) -> int:
  if (isinstance(iterations, bool) or not isinstance(iterations, (int, np.integer))
      or iterations < 0):
    raise ValueError(f"`iterations` must be a non-negative Python int; got {iterations!r}.")
  return int(iterations)


def soft_skeleton(x: jax.typing.ArrayLike, *, axis: int = -1, iterations: int = 3) -> jax.Array:
  r"""The soft skeleton of Shit et al. (clDice), by min/max pooling.

  .. math::
    S_0 = \mathrm{relu}(I - \mathrm{open}(I)), \qquad
    S_{k+1} = S_k + \mathrm{relu}\big(\delta_k - S_k \delta_k\big), \quad
    \delta_k = \mathrm{relu}\big(E^{k+1}(I) - \mathrm{open}(E^{k+1}(I))\big)

  with :math:`E` the soft erosion (minimum over the cross-shaped 3-neighbourhood:
  3×1 and 1×3 in 2-D, the three axis-aligned size-3 lines in 3-D),
  :math:`\mathrm{open} = D \circ E` and :math:`D` the soft dilation (maximum
  over the 3×3 or 3×3×3 box), after ``iterations`` steps. The borders are
  padded with the neutral element (+inf for the minimum, -inf for the
  maximum), exactly as MONAI's ``soft_skel`` via torch's max pooling; values
  equal MONAI's ``soft_skel(x, iter_=iterations)`` with channels moved to
  ``axis``. Every axis but the batch axis 0 and ``axis`` is spatial (any
  number of them: 2-D and 3-D are MONAI's cases). Differentiable (min/max
  pooling routes the gradient to the selected element). Each erosion removes
  one pixel from each side: a structure that is not thinned to a line after
  ``iterations + 1`` erosions gets no skeleton, so ``iterations`` should reach
  the half-width of the thickest structure.

  Args:
    x: ``[B, *spatial, C]`` soft masks (probabilities) with the class axis ``axis``.
    axis: the class (channel) axis; not 0.
    iterations: the number of erosion steps, a non-negative int (MONAI ``iter_``).

  Returns:
    The soft skeleton, ``x``'s shape, float32 (float64 for float64 under x64).

  Examples:
    >>> import jax.numpy as jnp, jaxloss
    >>> bar = jnp.zeros((1, 5, 7, 1)).at[0, 1:4, 1:6, 0].set(1.0)   # a 3×5 bar
    >>> skel = jaxloss.soft_skeleton(bar)[0, :, :, 0]
    >>> skel[2].tolist(), float(skel.sum())                      # the bar's middle row
    ([0.0, 0.0, 1.0, 1.0, 1.0, 0.0, 0.0], 3.0)
  """
  x = _checks.float_input("x", x)
  iterations = _check_iterations(iterations)
  if x.ndim < 3:
    raise ValueError(f"`x` has shape {tuple(x.shape)}; expected [B, *spatial, C] with at least "
                     "one spatial axis.")
  ax = _checks.normalize_axis("axis", axis, x.ndim)
  if ax == 0:
    raise ValueError("`axis` (the class axis) cannot be the batch axis 0.")
  x = x.astype(_checks.compute_dtype(x))
  return skeleton(x, [a for a in range(1, x.ndim) if a != ax], iterations)


def cl_dice_terms(predictions, labels, *, iterations, smooth, harmonic_smooth, per_class, axis,
                  activation, reduce_axes, class_weights, include_background, weights, where,
                  ignore_index, reduction, axis_name, per_image=False) -> jax.Array:
  """The clDice loss behind :func:`cl_dice_loss` and the composition's clDice part."""
  iterations = _check_iterations(iterations)
  _checks.scalar_option("smooth", smooth, low=0.0)
  _checks.scalar_option("harmonic_smooth", harmonic_smooth, low=0.0)
  _checks.check_reduction(reduction)
  o = overlap_maps(predictions, labels, axis=axis, activation=activation,
                   reduce_axes=reduce_axes, ignore_index=ignore_index, axis_name=axis_name,
                   weights=weights, where=where, per_class=per_class,
                   include_background=include_background, per_image=per_image)
  p, t, ax, dtype = o.p, o.t, o.axis, o.p.dtype
  check_spatial(p)
  spatial = [a for a in range(1, p.ndim) if a != ax]
  skel_p = skeleton(p, spatial, iterations)
  # An invalid label's NaN stays in t (it poisons Σ skel_p·t), not in t's skeleton.
  skel_t = skeleton(jnp.where(jnp.isnan(t), jnp.zeros((), dtype), t), spatial, iterations)
  terms = [skel_p * t, skel_p, skel_t * p, skel_t]
  if o.image_weights is not None:  # per-image weights of a batch-level composition
    terms = [o.image_weights * v for v in terms]
  sums = [class_sums(v, o, axis_name) for v in terms]  # [groups, C]
  if not per_class:  # classes pooled into one ratio per group (MONAI), weighted inside
    cw = background_weights(class_weights, include_background, p.shape[ax], dtype)
    if cw is not None:
      cw = cw.reshape((1,) * (sums[0].ndim - 1) + (-1,))
    sums = [jnp.sum(s if cw is None else s * cw, axis=-1) for s in sums]
  s, e = option(smooth, dtype), option(harmonic_smooth, dtype)
  precision = safe_div(sums[0] + s, sums[1] + s)  # topology precision: skel(p) inside t
  sensitivity = safe_div(sums[2] + s, sums[3] + s)  # topology sensitivity: skel(t) inside p
  loss = 1 - safe_div(2 * precision * sensitivity, precision + sensitivity + e)
  if per_class:
    holder = OverlapSums(*sums, batch_reduced=o.batch_reduced, where=o.where, weights=o.weights)
    return reduce_overlap(loss, holder, class_weights=class_weights,
                          include_background=include_background, reduction=reduction,
                          axis_name=axis_name)
  return reduce_elements(loss, o.weights, o.where, reduction,
                         None if o.batch_reduced else axis_name)


_COMMON = """
    iterations: soft-skeleton steps, a non-negative int (MONAI ``iter_``).
    smooth: added to the numerator and denominator of both topology ratios, a
      finite scalar ``>= 0`` (MONAI ``smooth_nr = smooth_dr``).
    harmonic_smooth: added to the harmonic mean's denominator, a finite scalar
      ``>= 0`` (MONAI's ``smooth``).
    per_class: True: one loss per (group, class), like :func:`jaxloss.dice_loss`.
      False: the sums pool the kept classes (weighted by ``class_weights``)
      into one loss per group, as MONAI does.
    axis: the class axis; ``C = 0`` raises ``ValueError``.
    activation: ``None`` (probabilities), ``"softmax"`` or ``"sigmoid"``.
    reduce_axes: axes summed into one loss; default every axis but 0 and
      ``axis`` (per image). Include 0 for one loss over the batch (the
      original clDice code). The skeletons are always per image and class.
    class_weights: optional ``[C]`` weights of the per-class losses (inside the
      sums with ``per_class=False``).
    include_background: False leaves class 0 out (the original code's ``[:, 1:]``)."""

_MASKS = """
    ignore_index: integer label of pixels that belong to no class (prediction
      and target 0 there: background in both skeletons) and leave every sum.
      Other labels outside ``[0, C)`` make their group's losses NaN.
    axis_name: mapped axis to ``psum`` over: the sums of a batch-level loss,
      else the reduction."""


def _docs(fn):
  fn.__doc__ = fn.__doc__.replace("{common}", _COMMON.strip("\n").lstrip()).replace(
      "{masks}", _MASKS.strip("\n").lstrip())
  return fn


@_docs
def cl_dice_loss(
    predictions: jax.typing.ArrayLike,
    labels: jax.typing.ArrayLike,
    *,
    iterations: int = 3,
    smooth: float = 1.0,
    harmonic_smooth: float = 1e-4,
    per_class: bool = True,
    axis: int = -1,
    activation: str | None = None,
    reduce_axes: Sequence[int] | None = None,
    class_weights: jax.typing.ArrayLike | None = None,
    include_background: bool = True,
    weights: jax.typing.ArrayLike | None = None,
    where: jax.typing.ArrayLike | None = None,
    ignore_index: int | None = None,
    reduction: str = "mean",
    axis_name: str | None = None,
) -> jax.Array:
  r"""Soft clDice (Shit et al.): the harmonic mean of topology precision and sensitivity.

  .. math::
    T_{prec} = \frac{\sum S(p)\,t + s}{\sum S(p) + s}, \quad
    T_{sens} = \frac{\sum S(t)\,p + s}{\sum S(t) + s}, \qquad
    l = 1 - \frac{2\,T_{prec} T_{sens}}{T_{prec} + T_{sens} + \epsilon}

  with :math:`S` the :func:`jaxloss.soft_skeleton`, sums over ``reduce_axes``.
  A skeleton that leaves its class (a broken or bridged thin structure) costs
  precision; a true centreline the prediction misses costs sensitivity. An
  empty class predicted empty scores :math:`l = 1 - 2/(2 + \epsilon) \approx 0`
  (:math:`T = s/s = 1`); with ``smooth = 0`` a 0/0 ratio is 0.

  Equals MONAI ``SoftclDiceLoss(iter_=iterations, smooth_nr=s, smooth_dr=s,
  smooth=harmonic_smooth, include_background=..., sigmoid=..., softmax=...,
  reduction=...)`` with ``per_class=False`` (MONAI pools the channels into
  one loss per image), channels moved to ``axis``. The original code
  (github.com/jocpae/clDice) is ``per_class=False, include_background=False,
  reduce_axes`` over the batch and space, ``harmonic_smooth=0``.

  Args:
    predictions: probabilities, or logits with ``activation``; ``[B, *spatial, C]``.
    labels: integer class ids ``[B, *spatial]``, or one-hot / multi-hot / soft
      maps (the shape of ``predictions``).
    {common}
    weights: optional weights of the ``[B, C]`` losses (``[B]`` per image; per group
      without ``per_class``).
    where: optional mask of the ``[B, C]`` losses (``[B]`` per image); masked
      entries are never read (≡ slicing them away).
    {masks}
    reduction: see :func:`jaxloss.reduce_loss`; ``"none"`` returns the
      ``[B, C]`` (``[B]`` without ``per_class``; ``[C]`` or a scalar per batch) losses.

  Returns:
    The reduced loss, or the per-(group, class) losses for ``"none"``.

  References: S. Shit et al., "clDice - a novel topology-preserving loss
  function for tubular structure segmentation", CVPR 2021.

  Examples:
    >>> import jax, jax.numpy as jnp, jaxloss
    >>> y = jnp.zeros((1, 5, 7), jnp.int32).at[0, 2, 1:6].set(1)   # a thin bar
    >>> p = jax.nn.one_hot(y, 2).at[0, 2, 3].set(jnp.array([0.8, 0.2]))  # broken in the middle
    >>> [round(v, 4) for v in jaxloss.cl_dice_loss(p, y, reduction="none")[0].tolist()]
    [0.0, 0.0715]
  """
  return cl_dice_terms(predictions, labels, iterations=iterations, smooth=smooth,
                       harmonic_smooth=harmonic_smooth, per_class=per_class, axis=axis,
                       activation=activation, reduce_axes=reduce_axes,
                       class_weights=class_weights, include_background=include_background,
                       weights=weights, where=where, ignore_index=ignore_index,
                       reduction=reduction, axis_name=axis_name)


@_docs
def dice_cl_dice_loss(
    predictions: jax.typing.ArrayLike,
    labels: jax.typing.ArrayLike,
    *,
    alpha: float = 0.5,
    iterations: int = 3,
    smooth: float = 1.0,
    harmonic_smooth: float = 1e-4,
    per_class: bool = True,
    axis: int = -1,
    activation: str | None = None,
    reduce_axes: Sequence[int] | None = None,
    class_weights: jax.typing.ArrayLike | None = None,
    include_background: bool = True,
    weights: jax.typing.ArrayLike | None = None,
    where: jax.typing.ArrayLike | None = None,
    ignore_index: int | None = None,
    reduction: str = "mean",
    axis_name: str | None = None,
) -> jax.Array:
  r"""Soft Dice + clDice: :math:`(1 - \alpha)\,\mathrm{Dice} + \alpha\,\mathrm{clDice}`.

  The Dice part is :func:`jaxloss.dice_loss` (one value per (group, class),
  ``smooth`` in numerator and denominator), the clDice part
  :func:`jaxloss.cl_dice_loss`, both with the same options and ``reduction``.
  ``weights`` and ``where`` are per image (a scalar or ``[B]``), as in the
  other compositions: a masked image leaves both parts (≡ slicing it away);
  with a batch-level ``reduce_axes`` they act inside the sums (an image of
  weight :math:`w` counts :math:`w` times).

  Equals MONAI ``SoftDiceclDiceLoss(iter_=iterations, alpha=alpha,
  smooth_nr=s, smooth_dr=s, smooth=harmonic_smooth, include_background=...,
  sigmoid=..., softmax=..., reduction=...)`` with ``per_class=False``
  (MONAI's Dice part is per (image, class), its clDice part per image).

  Args:
    predictions: probabilities, or logits with ``activation``; ``[B, *spatial, C]``.
    labels: integer class ids ``[B, *spatial]``, or one-hot / multi-hot maps.
    alpha: the clDice share :math:`\alpha`, a scalar in ``[0, 1]``.
    {common}
    weights: optional per-image weights, a scalar or ``[B]``.
    where: optional per-image mask, a scalar or ``[B]``.
    {masks}
    reduction: ``"mean"``, ``"sum"``, ``"weighted_mean"`` or
      ``"sum_by_nonzero_weights"``, for both parts (no ``"none"``: the parts
      have different shapes).

  Returns:
    The scalar total.

  Examples:
    >>> import jax, jax.numpy as jnp, jaxloss
    >>> y = jnp.zeros((1, 5, 7), jnp.int32).at[0, 2, 1:6].set(1)
    >>> p = jax.nn.one_hot(y, 2)
    >>> round(float(jaxloss.dice_cl_dice_loss(p, y)), 4)
    0.0
  """
  if reduction == "none":
    raise ValueError("`reduction='none'` is not offered for a composition; call dice_loss and "
                     "cl_dice_loss for per-class values.")
  _checks.scalar_option("alpha", alpha, low=0.0, high=1.0)
  shape = jnp.shape(predictions)
  if len(shape) >= 1:
    _check_per_image("weights", weights, shape[0])
    _check_per_image("where", where, shape[0])
  options = dict(axis=axis, activation=activation, reduce_axes=reduce_axes,
                 class_weights=class_weights, include_background=include_background,
                 weights=weights, where=where, ignore_index=ignore_index, reduction=reduction,
                 axis_name=axis_name, per_image=True)
  dice = dice_terms(predictions, labels, smooth=smooth, squared=False, **options)
  cl = cl_dice_terms(predictions, labels, iterations=iterations, smooth=smooth,
                     harmonic_smooth=harmonic_smooth, per_class=per_class, **options)
  a = option(alpha, dice.dtype)
  return (1 - a) * dice + a * cl
