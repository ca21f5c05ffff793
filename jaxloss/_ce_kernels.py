"""The softmax cross-entropy kernels: hand-written custom_vjp value and gradient.

``_ce_int`` (integer labels) and ``_ce_prob`` (probability labels) form the
per-element loss from the log-sum-exp pair and keep it for the backward pass;
``softmax_cross_entropy`` (``_classification.py``) checks the inputs and
reduces.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from jaxloss._class_inputs import (
    _UNROLL_MAX_CLASSES,
    _class_sum,
    _gather_label,
    _iota_eq,
    match_vma,
)


def _logsumexp(x_in: jax.Array, axis: int, dtype) -> tuple[jax.Array, jax.Array]:
  """``(m, log Σ exp(x − m))`` with ``m = max(x)``, ``x = x_in`` in ``dtype``: the pair.

  lse = m + log Σ exp(x − m) never overflows, but at the float32 range limit the
  sum m + log(...) rounds the log away (3e38 + log 2 == 3e38), so −log p = lse − x
  is formed as log(...) − (x − m) from the pair. Both come back without the class
  axis: a kept size-1 axis costs XLA:CPU a layout copy.

  The max is a real reduction, not the unrolled ``_class_reduce``: XLA fuses a
  cheap elementwise max chain into every consumer, so each ``[N, C]`` kernel
  (the exp-sum, the backward pass) recomputed all C slices for each of its C
  outputs per row. A reduce is computed once (one ``[N]`` result that the
  consumers read): XLA:CPU bytes accessed 3.2 -> 2.5 MB at ``[2, 64, 64, 12]``,
  CPU time about 0.88x. The sum stays unrolled: its exp has a single consumer.
  The max is taken on the input dtype (exact: the upcast is monotonic), so a bf16
  input is not first materialised as an f32 copy for the reduction to read.
  """
  m = jnp.max(x_in, axis=axis).astype(dtype)
  x = x_in.astype(dtype)
  return m, jnp.log(_class_sum(jnp.exp(x - jnp.expand_dims(m, axis)), axis))


# Up to this many logits, already in the compute dtype, the integer-label cross-entropy
# keeps e = exp(x − max) from the forward pass and the backward pass reads it
# (p = e / Σe) instead of recomputing the exp; Σe is then a plain reduction of e.
# Chosen by shape and dtype at trace time, for XLA:CPU: below about 512 KiB its cost
# model runs the fused exp-sum kernel on one thread, while storing e gives a
# full-shape exp kernel and a reduction that both use every core, and e shares the
# gradient's buffer. Value and gradient, [2, 64, 64, 12] f32 on 2 cores: 0.87x the
# time of recomputing; at 0.75 MiB and beyond equal or up to 4% slower (one more
# [N, C] write and read), so large inputs recompute; so do bf16 inputs (0.84-0.97x
# without storing: an f32 e cannot share a bf16 gradient's buffer).
# With more than _UNROLL_MAX_CLASSES classes (plain reductions over the class axis) e
# is kept at every size: recomputing the exp in the backward pass costs more than the
# extra [N, C] write and read there (value and gradient, 2 cores: [4096, 1000] 7.0 ->
# 4.0 ms, [512, 1000] 0.66 -> 0.38, [16384, 64] 1.30 -> 0.78, [256, 32000] 16 -> 10;
# optax's autodiff of log_softmax, which keeps e too: 4.2, 0.41, 0.86, 12 ms).
_STORE_EXP_MAX_ELEMENTS = 1 << 17


def _logsumexp_keep_exp(x_in: jax.Array, axis: int, dtype):
  """``_logsumexp``, plus ``(e, 1 / Σe)`` with ``e = exp(x − m)`` (s >= 1: finite)."""
  m = jnp.max(x_in, axis=axis).astype(dtype)
  e = jnp.exp(x_in.astype(dtype) - jnp.expand_dims(m, axis))
  s = jnp.sum(e, axis=axis)
  return (m, jnp.log(s)), (e, 1 / s)


def _softmax(x: jax.Array, lse: tuple[jax.Array, jax.Array], axis: int) -> jax.Array:
  m, ls = (jnp.expand_dims(v, axis) for v in lse)
  return jnp.exp((x - m) - ls)


# ---------------------------------------------------------------- integer labels
# loss_i = Σ_c a_ic (lse_i − x_ic), a_ic = (1−ε)·cw_{y_i}·[c = y_i] + (ε/C)·cw_c.
# With A_i = Σ_c a_ic:  ∂loss_i/∂x_ik = A_i softmax(x_i)_k − a_ik.
# The residuals kept for the backward pass are the lse pair and −log p_y (values per
# element) and, for small inputs or many classes, e = exp(x − max) with 1/Σe (see
# _STORE_EXP_MAX_ELEMENTS).


@functools.partial(jax.custom_vjp, nondiff_argnums=(4, 5, 6))
def _ce_int(x, labels, cw_y, cw, axis, eps, dtype):
  return _ce_int_fwd(x, labels, cw_y, cw, axis, eps, dtype)[0]


def _half_neg_logp(x: jax.Array, lse: tuple[jax.Array, jax.Array], axis: int) -> jax.Array:
  """(lse − x) / 2 = log(Σ)/2 − (x/2 − m/2): finite for every pair of finite floats.

  At the float32 range limit lse − x itself overflows (3e38 − (−3e38)), while
  a coefficient times it is often representable (ε/C · 6e38), and a zero
  coefficient times inf would be NaN. Callers scale the halves, then double.
  """
  m, ls = (jnp.expand_dims(v, axis) for v in lse)
  return 0.5 * ls - (0.5 * x - 0.5 * m)


def _nll(x: jax.Array, labels: jax.Array, lse: tuple[jax.Array, jax.Array], axis: int):
  """−log p of each element's label, log(Σ) − (x_y − m); NaN for an invalid label."""
  m, ls = lse
  return ls - (_gather_label(x, labels, axis) - m)


def _smoothing_terms(x, lse, cw, axis, eps):
  """(ε/C) Σ_c cw_c (lse − x_c) and (ε/C) Σ_c cw_c; cw=None means all ones."""
  c = x.shape[axis]
  half = _half_neg_logp(x, lse, axis)
  if cw is None:
    return 2 * _class_sum((eps / c) * half, axis), jnp.asarray(eps, x.dtype)
  cwb = jnp.expand_dims(cw, tuple(i for i in range(x.ndim) if i != axis))
  return 2 * _class_sum(((eps / c) * cwb) * half, axis), (eps / c) * jnp.sum(cw)


def _ce_int_fwd(x_in, labels, cw_y, cw, axis, eps, dtype):
  x = x_in.astype(dtype)
  kept = None
  if x_in.dtype == dtype and (x.size <= _STORE_EXP_MAX_ELEMENTS
                              or x.shape[axis] > _UNROLL_MAX_CLASSES):
    lse, kept = _logsumexp_keep_exp(x_in, axis, dtype)
  else:
    lse = _logsumexp(x_in, axis, dtype)
  nll = _nll(x, labels, lse, axis)
  loss = nll if cw_y is None else cw_y * nll
  if eps:
    loss = (1 - eps) * loss + _smoothing_terms(x, lse, cw, axis, eps)[0]
  return loss, (x_in, labels, cw_y, cw, lse, kept, nll)


def _ce_int_bwd(axis, eps, dtype, res, g):
  x_in, labels, cw_y, cw, lse, kept, nll = res
  x = x_in.astype(dtype)
  onehot = _iota_eq(labels, x.shape, axis)
  a_y = (1 - eps) * (jnp.ones_like(g) if cw_y is None else cw_y)
  big_a = a_y
  a = jnp.where(onehot, jnp.expand_dims(a_y, axis), 0)
  if eps:
    smooth, smooth_total = _smoothing_terms(x, lse, cw, axis, eps)
    big_a = big_a + smooth_total
    if cw is None:
      a = a + eps / x.shape[axis]
    else:
      a = a + (eps / x.shape[axis]) * jnp.expand_dims(
          cw, tuple(i for i in range(x.ndim) if i != axis))
  ge = jnp.expand_dims(g, axis)
  if kept is None:
    p = _softmax(x, lse, axis)
  else:
    e, inv_s = kept
    p = e * jnp.expand_dims(inv_s, axis)
  dx = ge * (jnp.expand_dims(big_a, axis) * p - a)
  # ∂loss_i/∂cw_{y_i} = (1−ε)(lse_i − x_{i,y_i}); ∂loss_i/∂cw_c = (ε/C)(lse_i − x_ic).
  dcw_y = None if cw_y is None else (1 - eps) * g * nll
  dcw = None
  if cw is not None:
    dcw = jnp.zeros_like(cw)
    if eps:
      axes = tuple(i for i in range(x.ndim) if i != axis)
      dcw = 2 * jnp.sum(((eps / x.shape[axis]) * ge) * _half_neg_logp(x, lse, axis), axis=axes)
  return dx.astype(x_in.dtype), None, dcw_y, match_vma(dcw, cw)


_ce_int.defvjp(_ce_int_fwd, _ce_int_bwd)


# ---------------------------------------------------------------- probability labels
# loss_i = Σ_c a_ic (lse_i − x_ic) with a_ic = cw_c·((1−ε) y_ic + ε/C); same gradient
# A_i softmax − a_i in x, and ∂loss_i/∂y_ic = (1−ε)·cw_c·(lse_i − x_ic).


@functools.partial(jax.custom_vjp, nondiff_argnums=(3, 4, 5))
def _ce_prob(x, y, cw, axis, eps, dtype):
  return _ce_prob_fwd(x, y, cw, axis, eps, dtype)[0]


def _coefficients(y, cw, axis, eps):
  a = y if not eps else (1 - eps) * y + eps / y.shape[axis]
  if cw is not None:
    a = a * jnp.expand_dims(cw, tuple(i for i in range(y.ndim) if i != axis))
  return a


def _ce_prob_fwd(x_in, y, cw, axis, eps, dtype):
  x = x_in.astype(dtype)
  lse = _logsumexp(x_in, axis, dtype)
  # a·(lse − x) as 2·(a·(lse/2 − x/2)): a zero coefficient never meets an overflowed inf.
  loss = 2 * _class_sum(_coefficients(y, cw, axis, eps) * _half_neg_logp(x, lse, axis), axis)
  return loss, (x_in, y, cw, lse)


def _ce_prob_bwd(axis, eps, dtype, res, g):
  x_in, y, cw, lse = res
  x = x_in.astype(dtype)
  half = _half_neg_logp(x, lse, axis)
  a = _coefficients(y, cw, axis, eps)
  ge = jnp.expand_dims(g, axis)
  dx = ge * (jnp.expand_dims(_class_sum(a, axis), axis) * _softmax(x, lse, axis) - a)
  dy = 2 * ((ge * (1 - eps)) * half)
  if cw is not None:
    cwb = jnp.expand_dims(cw, tuple(i for i in range(y.ndim) if i != axis))
    dy = dy * cwb
    axes = tuple(i for i in range(x.ndim) if i != axis)
    ys = y if not eps else (1 - eps) * y + eps / y.shape[axis]
    dcw = 2 * jnp.sum((ge * ys) * half, axis=axes)
  else:
    dcw = None
  return dx.astype(x_in.dtype), dy, match_vma(dcw, cw)


_ce_prob.defvjp(_ce_prob_fwd, _ce_prob_bwd)
