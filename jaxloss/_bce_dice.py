"""Fused sigmoid BCE + soft Dice: value and gradient with only the Dice sums in between.

Both parts are linear reductions of per-element (BCE) and per-(group, class)
(Dice) losses, so with the reduction coefficients ``b`` and ``a`` (which do not
depend on the logits) the totals are ``Σ b·l_bce`` and ``Σ a·(1 − D)``. A
hand-written ``custom_vjp`` computes both in its forward pass and the whole
gradient in one backward pass, saving only the ``[groups, C]`` Dice sums.
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
from jax import lax

from jaxloss import _checks
from jaxloss._binary import _per_class
from jaxloss._class_inputs import match_vma
from jaxloss._overlap import batch_level_mask, check_channels, check_smooth, class_and_reduce_axes
from jaxloss._reduction import reduction_coefficients, safe_div


def _sum_to(v: jax.Array, shape: tuple[int, ...]) -> jax.Array:
  """Sums ``v`` over the axes where ``shape`` (same rank) has size 1."""
  axes = tuple(i for i, (n, s) in enumerate(zip(v.shape, shape, strict=True)) if s == 1 and n != 1)
  return jnp.sum(v, axis=axes, keepdims=True) if axes else v


def _lane_sum(v: jax.Array, axes: tuple[int, ...]) -> jax.Array:
  """``jnp.sum(v, axes, keepdims=True)``, laid out for XLA:CPU's reductions.

  XLA:CPU reduces ``[N, C]`` over ``N`` (a small minor class axis kept) about
  5x slower than the same bytes viewed as ``[N/16, 16 C]``: with 16 C lanes kept
  the reduction vectorises. So where ``axes`` are the contiguous block just
  before a kept minor axis, sum that view, then the 16 partial rows. Elsewhere
  (GPU, TPU: their reductions need no help; or other axis layouts) it is the
  plain sum.
  """
  if not axes:
    return v
  nd, first = v.ndim, axes[0]
  extent = math.prod(v.shape[i] for i in axes)
  if axes != tuple(range(first, nd - 1)) or v.shape[-1] == 1 or extent % 2:
    return jnp.sum(v, axis=axes, keepdims=True)
  lanes = math.gcd(extent, 16)
  lead, c = v.shape[:first], v.shape[-1]

  def cpu(u):
    u = jnp.sum(u.reshape(lead + (extent // lanes, lanes * c)), axis=first)
    return jnp.sum(u.reshape(lead + (lanes, c)), axis=first).reshape(lead + (1,) * len(axes) + (c,))

  def default(u):
    return jnp.sum(u, axis=axes, keepdims=True)

  return lax.platform_dependent(v, cpu=cpu, default=default)


def _sum_weighted(v: jax.Array, axes: tuple[int, ...], c: jax.Array | None) -> jax.Array:
  """``Σ_axes c·v`` (keepdims) for compact ``c`` (size 1 on most axes), or ``Σ_axes v``.

  Sums ``v`` over the axes where ``c`` broadcasts first and multiplies ``c`` in
  after, so the full-size pass is a plain sum (a broadcast ``c`` inside the
  reduction would be materialised at full size by XLA:CPU).
  """
  if c is None:
    return _lane_sum(v, axes)
  inner = tuple(i for i in axes if c.shape[i] == 1)
  return jnp.sum(c * _lane_sum(v, inner), axis=tuple(i for i in axes if i not in inner),
                 keepdims=True)


def _log1p_small(t: jax.Array) -> jax.Array:
  """``log1p(t)`` for ``t = exp(−|x|) ∈ [0, 1]``, to a few 1e-7 relative in float32.

  XLA:CPU's ``log1p`` costs about four ``exp``; in float32 this is the series
  ``log1p(t) = 2 atanh(z)``, ``z = t / (2 + t) ∈ [0, 1/3]``, to ``z¹³``: max
  relative error 2.4e-7 against float64 over all t (XLA's ``log1p``: 2.1e-7),
  also where ``t`` is tiny, since no ``1 + t`` is formed, so nothing cancels.
  Float64 uses ``log1p``.
  """
  if t.dtype != jnp.float32:
    return jnp.log1p(t)
  r = 1 / (2 + t)
  z2 = jnp.square(t * r)
  acc = 1 / 3 + z2 * (1 / 5 + z2 * (1 / 7 + z2 * (1 / 9 + z2 * (1 / 11 + z2 * (1 / 13)))))
  return (t * (2 * r)) * (1 + z2 * acc)  # 2 t r, not 2 z: z alone may be subnormal


def _softplus_pair(x: jax.Array) -> tuple[jax.Array, jax.Array]:
  """``(softplus(x), softplus(−x))`` as ``max(±x, 0) + log1p(e^{−|x|})``: two non-negative
  terms, no cancellation, finite for any x."""
  log_term = _log1p_small(jnp.exp(-jnp.abs(x)))
  return jnp.maximum(x, 0) + log_term, jnp.maximum(-x, 0) + log_term


def _bce_elements(x: jax.Array, y: jax.Array, q: jax.Array, b: jax.Array) -> jax.Array:
  """Per element ``b·(q·y·softplus(−x) + (1 − y)·softplus(x))``, two non-negative terms.

  Exact at ``y ∈ {0, 1}``, no cancellation for confident logits, finite at
  ±3e38 (``b`` is multiplied in before any sum: the mean of values near 3e38
  is finite where their sum is not). The sign select is the last operation on
  purpose: XLA:CPU then keeps this one vectorised loop and the sum after it a
  plain one.
  """
  log_term = _log1p_small(jnp.exp(-jnp.abs(x)))
  qy, y_bar = q * y, 1 - y
  return jnp.where(x >= 0, b * (qy * log_term + y_bar * (x + log_term)),
                   b * (qy * (log_term - x) + y_bar * log_term))


def _sigmoids(x: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
  """``(σ(x), σ(−x), σ(x)·σ(−x))`` without cancellation: ``σ(|x|) = 1/(1 + e)``,
  ``σ(−|x|) = e/(1 + e)``, ``e = exp(−|x|)``; each to a few 1e-7 relative."""
  e = jnp.exp(-jnp.abs(x))
  big = 1 / (1 + e)
  small = e * big
  nonneg = x >= 0
  return jnp.where(nonneg, big, small), jnp.where(nonneg, small, big), small * big


@functools.partial(jax.custom_vjp, nondiff_argnums=(7, 8))
def _fused(x, y, q, b, a, k, s, axes, psum_axis):
  return _fused_fwd(x, y, q, b, a, k, s, axes, psum_axis)[0]


def _fused_fwd(x, y, q, b, a, k, s, axes, psum_axis):
  # On XLA:CPU every pass over [B, ..., C] costs about the same, and a reduction
  # with the element math fused in runs scalar, so the forward pass is two
  # vectorised loops (the BCE terms; σ(x)) and three plain sums, one per quantity
  # the value and gradient need: Σ b·l_bce, Σ k·σ·y and Σ k·(σ + y) (the Dice
  # denominator is one sum). The σ loop reads the logits through a barrier: it
  # recomputes exp(−|x|) rather than sharing, and so writing, it with the BCE loop.
  bce = jnp.sum(_bce_elements(x, y, q, b))
  p, _, _ = _sigmoids(lax.optimization_barrier(x))
  inter = _sum_weighted(p * y, axes, k)
  mass = _sum_weighted(p + y, axes, k)
  if psum_axis is not None:  # batch-level Dice over a sharded batch
    inter, mass = lax.psum((inter, mass), psum_axis)
  num, den = 2 * inter + s, mass + s
  dice = jnp.sum(a * (1 - safe_div(num, den)))
  # Only the [groups, C] sums are kept: the backward pass recomputes σ from x.
  return (bce, dice), (x, y, q, b, a, k, s, num, den)


def _fused_bwd(axes, psum_axis, res, g):
  del axes, psum_axis
  x, y, q, b, a, k, s, num, den = res
  g_bce, g_dice = g
  # The barrier keeps XLA from sharing exp(−|x|) with the forward loops (which
  # would write it out at full size): recomputing it is cheaper than the bytes.
  x, y = lax.optimization_barrier((x, y))
  p, p_neg, dp = _sigmoids(x)
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
  sp_pos, sp_neg = _softplus_pair(x)
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
