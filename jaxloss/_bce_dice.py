"""Fused sigmoid BCE + soft Dice: value and gradient in two passes over the logits.

Both parts are linear reductions of per-element (BCE) and per-(group, class)
(Dice) losses, so with the reduction coefficients ``b`` and ``a`` (which do not
depend on the logits) the totals are ``Σ b·l_bce`` and ``Σ a·(1 − D)``. A
hand-written ``custom_vjp`` computes both in one forward pass and the whole
gradient in one backward pass, saving only the ``[groups, C]`` Dice sums.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jax import lax

from jaxloss import _checks
from jaxloss._binary import _per_class
from jaxloss._classification import match_vma
from jaxloss._overlap import batch_level_mask, check_channels, check_smooth, class_and_reduce_axes
from jaxloss._reduction import reduction_coefficients, safe_div


def _sum_to(v: jax.Array, shape: tuple[int, ...]) -> jax.Array:
  """Sums ``v`` over the axes where ``shape`` (same rank) has size 1."""
  axes = tuple(i for i, (n, s) in enumerate(zip(v.shape, shape, strict=True)) if s == 1 and n != 1)
  return jnp.sum(v, axis=axes, keepdims=True) if axes else v


@functools.partial(jax.custom_jvp, nondiff_argnums=(1,))
def _multi_sum(xs: tuple[jax.Array, ...], axes: tuple[int, ...]) -> tuple[jax.Array, ...]:
  """Sums of several arrays over ``axes`` in one variadic reduction (one pass)."""
  zero = jnp.zeros((), xs[0].dtype)
  return lax.reduce(xs, (zero,) * len(xs),
                    lambda u, v: tuple(ui + vi for ui, vi in zip(u, v, strict=True)), axes)


@_multi_sum.defjvp
def _multi_sum_jvp(axes, primals, tangents):
  # A sum is linear: the tangents are summed too. Plain sums here, since JAX cannot
  # differentiate or transpose a variadic reduce (needed for second derivatives).
  return _multi_sum(primals[0], axes), tuple(jnp.sum(t, axis=axes) for t in tangents[0])


def _softplus_pair(x: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
  """``(softplus(x), softplus(−x), σ(−|x|))``, without cancellation, finite for any x.

  The quantities of ``_binary.sigmoid_parts``, arranged for this kernel's speed
  (three transcendentals, as the former ``exp(x − softplus(x))``; no division,
  which XLA:CPU does far slower): with ``L = log1p(exp(−|x|))``,
  ``softplus(±x) = max(±x, 0) + L`` (two non-negative terms) and
  ``σ(−|x|) = exp(−max(softplus(x), softplus(−x)))`` (``= exp(−(|x| + L))``,
  which XLA:CPU fuses far worse), within a few 1e-7 relative.
  """
  log_term = jnp.log1p(jnp.exp(-jnp.abs(x)))
  sp_pos, sp_neg = jnp.maximum(x, 0) + log_term, jnp.maximum(-x, 0) + log_term
  return sp_pos, sp_neg, jnp.exp(-jnp.maximum(sp_pos, sp_neg))


def _sigmoids(x: jax.Array, small: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
  """``(σ(x), σ(−x), σ(x)·σ(−x))`` from ``small = σ(−|x|)``, without cancellation.

  ``σ(|x|) = 1 − σ(−|x|) >= 1/2`` loses nothing, and the small one is ``small``
  itself, so each is accurate to a few 1e-7 relative (also ``σ(−20)`` ≈ 2e-9).
  """
  nonneg, big = x >= 0, 1 - small
  return jnp.where(nonneg, big, small), jnp.where(nonneg, small, big), small * big


@functools.partial(jax.custom_vjp, nondiff_argnums=(7, 8))
def _fused(x, y, q, b, a, k, s, axes, psum_axis):
  return _fused_fwd(x, y, q, b, a, k, s, axes, psum_axis)[0]


def _fused_fwd(x, y, q, b, a, k, s, axes, psum_axis):
  sp_pos, sp_neg, small = _softplus_pair(x)
  p, _, _ = _sigmoids(x, small)
  # BCE per element: q·y·softplus(−x) + (1 − y)·softplus(x), two non-negative terms:
  # exact at y ∈ {0, 1}, no cancellation for confident logits, finite at ±3e38.
  bce_terms = jnp.broadcast_to(b * ((q * y) * sp_neg + (1 - y) * sp_pos), x.shape)
  # `k` (a batch-level Dice with per-image weights or mask) weights each image's terms.
  pk, yk = (p, y) if k is None else (p * k, y * k)
  # One variadic reduction: XLA reads the logits once for all four sums, where
  # separate reductions would each re-read (or materialise) the shared terms.
  bce_part, inter, pred, target = _multi_sum((bce_terms, pk * y, pk, yk), axes)
  sums = tuple(jnp.expand_dims(v, axes) for v in (inter, pred, target))
  if psum_axis is not None:  # batch-level Dice over a sharded batch
    sums = lax.psum(sums, psum_axis)
  inter, pred, target = sums
  num, den = 2 * inter + s, pred + target + s
  dice = jnp.sum(a * (1 - safe_div(num, den)))
  # σ(−|x|) is kept: the backward pass then needs no transcendental for the logits.
  return (jnp.sum(bce_part), dice), (x, y, small, q, b, a, k, s, num, den)


def _fused_bwd(axes, psum_axis, res, g):
  del axes, psum_axis
  x, y, small, q, b, a, k, s, num, den = res
  g_bce, g_dice = g
  p, p_neg, dp = _sigmoids(x, small)
  qy = q * y
  gb = g_bce * b
  # ∂l_bce/∂x = −q y σ(−x) + (1 − y) σ(x).
  dx = gb * ((1 - y) * p - qy * p_neg)
  # D = num/den with num = 2 Σ k p y + s, den = Σ k p + Σ k y + s:
  #   ∂(1 − D)/∂p_i = −k_i (2 y_i den − num) / den²,  and  dp/dx = σ(x) σ(−x).
  inv_den2 = safe_div(jnp.ones_like(den), den * den)
  ga = (g_dice * a) * inv_den2
  dice_dp = ga * (num - 2 * y * den)
  dice_dy = ga * (num - 2 * p * den)  # ∂(1 − D)/∂y_i = −k_i (2 p_i den − num) / den²
  if k is not None:
    dice_dp, dice_dy = dice_dp * k, dice_dy * k
  dx = dx + dice_dp * dp
  # The label and weight gradients (dropped by XLA when unused) need the softplus pair.
  sp_pos, sp_neg, _ = _softplus_pair(x)
  # ∂l_bce/∂y = q·softplus(−x) − softplus(x).
  dy = gb * (q * sp_neg - sp_pos) + dice_dy
  dq = _sum_to(gb * y * sp_neg, q.shape)
  db = _sum_to(g_bce * (qy * sp_neg + (1 - y) * sp_pos), b.shape)
  da = _sum_to(g_dice * (1 - safe_div(num, den)), a.shape)
  # ∂(1 − D)/∂s = (num − den) / den².
  ds = jnp.sum(ga * (num - den))
  dk = None
  if k is not None:  # ∂(1 − D)/∂k_i = (num (p_i + y_i) − 2 p_i y_i den) / den²
    dk = _sum_to(ga * (num * (p + y) - 2 * (p * y) * den), k.shape)
  return (dx.astype(x.dtype), dy.astype(y.dtype), match_vma(dq, q), match_vma(db, b),
          match_vma(da, a), match_vma(dk, k), match_vma(ds, s))


_fused.defvjp(_fused_fwd, _fused_bwd)


def bce_dice_totals(logits, labels, *, axis, pos_weight, class_weights, reduce_axes, smooth,
                    weights, where, reduction, axis_name) -> tuple[jax.Array, jax.Array]:
  """Checks the inputs and returns the reduced ``(bce, dice)`` of the composition.

  ``weights`` and ``where`` are per image (a scalar or ``[B]``). For a per-image
  (or finer) Dice they act on its ``[groups, C]`` losses; for a batch-level Dice
  (``0`` in ``reduce_axes``) they act inside its sums (see ``overlap_sums``).
  """
  x = _checks.float_input("logits", logits)
  y = _checks.real_input("labels", labels)
  _checks.check_reduction(reduction)
  check_smooth(smooth)
  if y.shape != x.shape or x.ndim < 2:
    raise ValueError(f"`labels` has shape {tuple(y.shape)}; expected the shape of `logits` "
                     f"{tuple(x.shape)}, [B, ..., C] multi-hot targets.")
  ax, axes = class_and_reduce_axes(x.ndim, axis, reduce_axes)
  c = check_channels("logits", x, ax)
  dtype = _checks.compute_dtype(x, y)
  per_class = {}
  for name, v in (("pos_weight", pos_weight), ("class_weights", class_weights)):
    if v is not None:
      v = _per_class(_checks.per_class_vector(
          name, v, c, dtype, f" of `logits` {tuple(x.shape)} along axis {ax}"), x.ndim, ax)
    per_class[name] = v
  q = per_class["pos_weight"]
  q = jnp.ones((1,) * x.ndim, dtype) if q is None else q
  cw = per_class["class_weights"]
  # Per-image weights and mask, laid out to broadcast against the logits: [B, 1, ..., 1].
  w_img, m_img = _checks.weights_and_mask(weights, where, x.shape[:1], dtype, what="per-image")

  def per_image(v):
    return None if v is None else v.reshape(v.shape + (1,) * (x.ndim - 1))

  w_in, m_in = per_image(w_img), per_image(m_img)

  def times_cw(v):
    return cw if v is None else (v if cw is None else v * cw)

  b = reduction_coefficients(times_cw(w_in), m_in, x.shape, dtype, reduction, axis_name)
  # Dice: the [groups..., C] losses laid out like the sums (size 1 on the summed axes).
  sums_shape = tuple(1 if i in axes else n for i, n in enumerate(x.shape))
  batch_reduced = 0 in axes
  k = None
  if batch_reduced:
    # One loss per class over the batch: the images' weights and mask act in the sums.
    present = m_img
    if w_in is not None:
      k = w_in  # zero under the mask (weights_and_mask)
      present = w_img != 0
    elif m_in is not None:
      k = m_in.astype(dtype)
    m_d = batch_level_mask(present, x.shape[0], x.ndim, axis_name)
    a = reduction_coefficients(cw, m_d, sums_shape, dtype, reduction, None)
  else:
    a = reduction_coefficients(times_cw(w_in), m_in, sums_shape, dtype, reduction, axis_name)
  x, y = x.astype(dtype), y.astype(dtype)
  _checks.check_finite("logits", x, where=m_in)
  _checks.check_finite("labels", y, where=m_in)
  if m_in is not None:  # double-where: masked inputs never reach the arithmetic
    zero = jnp.zeros((), dtype)
    x, y = jnp.where(m_in, x, zero), jnp.where(m_in, y, zero)
  bce, dice = _fused(x, y, q, b, a, k, jnp.asarray(smooth).astype(dtype), axes,
                     axis_name if batch_reduced else None)
  if axis_name is not None:
    bce = lax.psum(bce, axis_name)
    if not batch_reduced:
      dice = lax.psum(dice, axis_name)
  return bce, dice
