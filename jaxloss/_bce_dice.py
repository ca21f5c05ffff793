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
from jaxloss._binary import _per_class, softplus
from jaxloss._classification import match_vma
from jaxloss._overlap import class_and_reduce_axes
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


@functools.partial(jax.custom_vjp, nondiff_argnums=(5, 6, 7))
def _fused(x, y, q, b, a, axes, smooth, psum_axis):
  return _fused_fwd(x, y, q, b, a, axes, smooth, psum_axis)[0]


def _fused_fwd(x, y, q, b, a, axes, smooth, psum_axis):
  sp = softplus(x)
  qy = q * y
  # BCE: q·y·softplus(−x) + (1 − y)·softplus(x) = (q y + 1 − y)·softplus(x) − q y x.
  bce_terms = jnp.broadcast_to(b, x.shape) * ((qy + 1 - y) * sp - qy * x)
  p = jnp.exp(x - sp)  # σ(x) = exp(x − softplus(x))
  # One variadic reduction: XLA reads the logits once for all four sums, where
  # separate reductions would each re-read (or materialise) the shared terms.
  bce_part, inter, pred, target = _multi_sum((bce_terms, p * y, p, y), axes)
  sums = tuple(jnp.expand_dims(v, axes) for v in (inter, pred, target))
  if psum_axis is not None:  # batch-level Dice over a sharded batch
    sums = lax.psum(sums, psum_axis)
  inter, pred, target = sums
  num, den = 2 * inter + smooth, pred + target + smooth
  dice = jnp.sum(a * (1 - safe_div(num, den)))
  return (jnp.sum(bce_part), dice), (x, y, q, b, a, num, den)


def _fused_bwd(axes, smooth, psum_axis, res, g):
  x, y, q, b, a, num, den = res
  g_bce, g_dice = g
  sp = softplus(x)
  p = jnp.exp(x - sp)
  qy = q * y
  # ∂l_bce/∂x = (q y + 1 − y)·σ(x) − q y.
  dx = (g_bce * b) * ((qy + 1 - y) * p - qy)
  # D = num/den with num = 2 Σ p y + s, den = Σ p + Σ y + s:
  #   ∂(1 − D)/∂p_i = −(2 y_i den − num) / den²,  and  dp/dx = p (1 − p).
  inv_den2 = safe_div(jnp.ones_like(den), den * den)
  dice_dp = (g_dice * a) * (num - 2 * y * den) * inv_den2
  dx = dx + dice_dp * p * (1 - p)
  # ∂(1 − D)/∂y_i = −(2 p_i den − num) / den²; ∂l_bce/∂y = q(sp − x) − sp.
  dy = (g_bce * b) * (q * (sp - x) - sp) + (g_dice * a) * (num - 2 * p * den) * inv_den2
  dq = _sum_to((g_bce * b) * y * (sp - x), q.shape)
  db = _sum_to(g_bce * ((qy + 1 - y) * sp - qy * x), b.shape)
  da = _sum_to(g_dice * (1 - safe_div(num, den)), a.shape)
  return (dx.astype(x.dtype), dy.astype(y.dtype), match_vma(dq, q), match_vma(db, b),
          match_vma(da, a))


_fused.defvjp(_fused_fwd, _fused_bwd)


def bce_dice_totals(logits, labels, *, axis, pos_weight, class_weights, reduce_axes, smooth,
                    weights, where, reduction, axis_name) -> tuple[jax.Array, jax.Array]:
  """Checks the inputs and returns the reduced ``(bce, dice)`` of the composition."""
  x = _checks.float_input("logits", logits)
  y = _checks.real_input("labels", labels)
  _checks.check_reduction(reduction)
  if y.shape != x.shape or x.ndim < 2:
    raise ValueError(f"`labels` has shape {tuple(y.shape)}; expected the shape of `logits` "
                     f"{tuple(x.shape)}, [B, ..., C] multi-hot targets.")
  ax, axes = class_and_reduce_axes(x.ndim, axis, reduce_axes)
  c = x.shape[ax]
  dtype = _checks.compute_dtype(x, y)
  per_class = {}
  for name, v in (("pos_weight", pos_weight), ("class_weights", class_weights)):
    if v is not None:
      v = _checks.real_input(name, v)
      if v.shape != (c,):
        raise ValueError(f"`{name}` has shape {tuple(v.shape)}; expected ({c},), one value per "
                         f"class of `logits` {tuple(x.shape)} along axis {ax}.")
      _checks.check_nonnegative(name, v)
      v = _per_class(v.astype(dtype), x.ndim, ax)
    per_class[name] = v
  q = per_class["pos_weight"]
  q = jnp.ones((1,) * x.ndim, dtype) if q is None else q
  cw = per_class["class_weights"]
  # BCE: weights and mask over the elements (prefix rule), class weights along `axis`.
  w_b, m_b = _checks.weights_and_mask(weights, where, x.shape, dtype)
  w_b = cw if w_b is None else (w_b if cw is None else w_b * cw)
  b = reduction_coefficients(w_b, m_b, x.shape, dtype, reduction, axis_name)
  # Dice: the same options over the [groups..., C] losses, laid out like the sums
  # (size 1 on the summed axes) so they broadcast against the logits.
  kept = [i for i in range(x.ndim) if i not in axes]
  groups = [i for i in kept if i != ax]
  loss_shape = tuple(x.shape[i] for i in groups) + (c,)
  w_d, m_d = _checks.weights_and_mask(weights, where, loss_shape, dtype,
                                      what="per-(group, class) loss")
  sums_shape = tuple(1 if i in axes else n for i, n in enumerate(x.shape))

  def to_sums_layout(v):
    if v is None:
      return None
    v = jnp.expand_dims(v, tuple(range(v.ndim, x.ndim)))
    return jnp.moveaxis(v, list(range(len(groups) + 1)), groups + [ax])

  w_d, m_d = to_sums_layout(w_d), to_sums_layout(m_d)
  w_d = cw if w_d is None else (w_d if cw is None else w_d * cw)
  batch_reduced = 0 in axes
  a = reduction_coefficients(w_d, m_d, sums_shape, dtype, reduction,
                             None if batch_reduced else axis_name)
  x, y = x.astype(dtype), y.astype(dtype)
  _checks.check_finite("logits", x, where=m_b)
  if m_b is not None:  # double-where: masked inputs never reach the arithmetic
    x, y = jnp.where(m_b, x, 0), jnp.where(m_b, y, 0)
  bce, dice = _fused(x, y, q, b, a, axes, float(smooth),
                     axis_name if batch_reduced else None)
  if axis_name is not None:
    bce = lax.psum(bce, axis_name)
    if not batch_reduced:
      dice = lax.psum(dice, axis_name)
  return bce, dice
