"""The fused kernel of :func:`jaxloss.linear_softmax_cross_entropy`.

Per token ``i`` (rows of ``h``) and vocabulary column ``c`` (columns of ``w``):

* ``u = h @ w + b``, ``z = cap(u) = s·tanh(u/s)`` (identity without a cap);
* ``lse_i = log Σ_c exp z_ic`` (online over vocabulary chunks, then over shards);
* ``ce_i = (1−ε)·cw_{y_i}·(lse_i − z_{i,y_i}) + (ε/V)·Σ_c cw_c·(lse_i − z_ic)``.

The custom_vjp outputs ``(ce, lse, argmax)``; the caller adds the z-loss from
``lse`` so its gradient arrives through the ``lse`` cotangent. With cotangents
``g`` (of ``ce``) and ``k`` (of ``lse``) and ``A_i = (1−ε)·cw_{y_i} + (ε/V)·Σ_c cw_c``:

  ``∂/∂z_ic = (g_i·A_i + k_i)·softmax(z_i)_c − g_i·(1−ε)·cw_{y_i}·[c = y_i] − g_i·(ε/V)·cw_c``

times ``1 − tanh²(u/s)`` under the cap. Only O(tokens) residuals are kept
(``lse`` and the label logit); the backward pass recomputes each chunk's
logits, accumulates ``dh += du @ w_cᵀ`` and writes ``dw_c = hᵀ @ du``.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax import lax

from jaxloss._class_inputs import _varying_axes, match_vma


class Config(NamedTuple):
  """Static options of the kernel (hashable: a ``nondiff_argnums`` argument)."""

  eps: float  # label smoothing
  cap: float | None  # logit soft cap
  chunk: int  # vocabulary columns per chunk
  num_classes: int  # the GLOBAL vocabulary size V (ε/V, label validity)
  precision: object  # reaches every dot_general
  vocab_axis: object  # shard_map axis the vocabulary is split over, or None
  dtype: object  # compute dtype: float32, or float64 under x64
  dot_dtype: object  # matmul operand dtype (bf16 stays bf16, accumulated in `dtype`)
  argmax: bool  # also return the per-token argmax (for aux accuracy)


def _dot(a, b, contract, cfg: Config):
  return lax.dot_general(a, b, (contract, ((), ())), precision=cfg.precision,
                         preferred_element_type=cfg.dtype)


def _chunks(v_local: int, chunk: int) -> tuple[int, int]:
  """(number of full chunks, width of the remainder chunk, 0 if none)."""
  return v_local // chunk, v_local % chunk


def _offset(v_local: int, cfg: Config):
  """First global vocabulary id of this shard (0 without vocabulary sharding)."""
  if cfg.vocab_axis is None:
    return 0
  return lax.axis_index(cfg.vocab_axis) * v_local


# XLA:CPU has no bf16/f16 dynamic-slice or dynamic-update-slice: it upcasts the whole
# operand to f32, then hoists that convert out of the loop, i.e. one f32 copy of the
# kernel (1 GiB at H = 2048, V = 131072), and rewrites the whole bf16 gradient buffer at
# every chunk. On the bits (uint16) both stay chunk-sized and in place; on GPU and TPU
# the bitcasts are free.
def _bits(x):
  if x.dtype.itemsize == 2:
    return lax.bitcast_convert_type(x, jnp.uint16)
  return x


def _unbits(x, dtype):
  return lax.bitcast_convert_type(x, dtype) if x.dtype != dtype else x


def _slice_cols(w, start, width):
  return _unbits(lax.dynamic_slice_in_dim(_bits(w), start, width, axis=w.ndim - 1), w.dtype)


def _update_cols(buf, update, start):
  """``buf`` (bits, see ``_bits``) with columns ``[start, ...)`` set to ``update``."""
  return lax.dynamic_update_slice_in_dim(buf, _bits(update), start, axis=buf.ndim - 1)


def _logits(h, w, b, start, width, cfg: Config):
  """Chunk columns ``[start, start + width)``: (u, z, tanh(u/s) or None), all [N, width]."""
  wc = _slice_cols(w, start, width).astype(cfg.dot_dtype)
  u = _dot(h, wc, ((1,), (0,)), cfg)
  if b is not None:
    u = u + _slice_cols(b, start, width).astype(cfg.dtype)[None, :]
  if cfg.cap is None:
    return wc, u, u, None
  t = jnp.tanh(u * (1.0 / cfg.cap))
  return wc, u, cfg.cap * t, t


def _loop(n_full: int, rem: int, chunk: int, body, carry, inputs):
  """``body(carry, start, width)`` over the full chunks (a loop) and the remainder (once).

  Inside ``shard_map`` the carry must vary over the mapped axes the body's ``inputs``
  vary over (a loop's carry keeps its type), so the initial carry is cast to them.
  """
  axes = frozenset().union(*(_varying_axes(x) for x in inputs if x is not None))

  def vary(x):
    extra = tuple(sorted(axes - _varying_axes(x)))
    return lax.pcast(x, extra, to="varying") if extra else x

  carry = jax.tree.map(vary, carry)
  if n_full:
    carry = lax.fori_loop(0, n_full, lambda j, c: body(c, j * chunk, chunk), carry)
  if rem:
    carry = body(carry, n_full * chunk, rem)
  return carry


# --------------------------------------------------------------------------- forward


def _forward(h, w, b, cw_local, y, cfg: Config):
  n = h.shape[0]
  v_local = w.shape[1]
  dt = cfg.dtype
  offset = _offset(v_local, cfg)
  n_full, rem = _chunks(v_local, cfg.chunk)

  def body(carry, start, width):
    m, s, zy, szc, best = carry
    _, u, z, _ = _logits(h, w, b, start, width, cfg)
    cmax = jnp.max(z, axis=1)
    m_new = jnp.maximum(m, cmax)
    s = s * jnp.exp(m - m_new) + jnp.sum(jnp.exp(z - m_new[:, None]), axis=1)
    # The label logit: a gather of one value per token from the chunk that owns it
    # (labels are global ids; `loc` outside [0, width) means another chunk or shard).
    loc = y - (offset + start)
    inside = (loc >= 0) & (loc < width)
    picked = jnp.take_along_axis(u, jnp.clip(loc, 0, width - 1)[:, None], axis=1)[:, 0]
    if cfg.cap is not None:
      picked = cfg.cap * jnp.tanh(picked * (1.0 / cfg.cap))
    zy = jnp.where(inside, picked, zy)
    if cfg.eps:
      if cw_local is None:
        szc = szc + jnp.sum(z, axis=1)
      else:
        cwc = lax.dynamic_slice_in_dim(cw_local, start, width)
        szc = szc + _dot(z, cwc, ((1,), (0,)), cfg._replace(precision=lax.Precision.HIGHEST))
    if cfg.argmax:
      # Strictly greater: on ties the earlier chunk (the lower id) wins, as jnp.argmax.
      idx = jnp.argmax(z, axis=1).astype(jnp.int32) + start
      best = jnp.where(cmax > m, idx, best)
    return m_new, s, zy, szc, best

  init = (jnp.full((n,), -jnp.inf, dt), jnp.zeros((n,), dt), jnp.zeros((n,), dt),
          jnp.zeros((n,), dt), jnp.zeros((n,), jnp.int32))
  m, s, zy, szc, best = _loop(n_full, rem, cfg.chunk, body, init, (h, w, b, cw_local, y))
  if cfg.vocab_axis is not None:
    ax = cfg.vocab_axis
    m_all = lax.pmax(m, ax)
    s = lax.psum(s * jnp.exp(m - m_all), ax)
    zy = lax.psum(zy, ax)  # only the owning shard holds a non-zero
    szc = lax.psum(szc, ax)
    if cfg.argmax:
      big = jnp.iinfo(jnp.int32).max
      best = lax.pmin(jnp.where(m == m_all, best + offset, big), ax)
    m = m_all
  lse = m + jnp.log(s)
  valid = (y >= 0) & (y < cfg.num_classes)
  zy = jnp.where(valid, zy, jnp.nan)  # an invalid label poisons the loss, never vanishes
  return lse, zy, szc, (best if cfg.argmax else None)


def _sum_cw(cw_local, cfg: Config):
  if cw_local is None:
    return None
  total = jnp.sum(cw_local)
  return total if cfg.vocab_axis is None else lax.psum(total, cfg.vocab_axis)


def _ce(lse, zy, szc, cw_y, sum_cw, cfg: Config):
  nll = lse - zy
  ce = nll if cw_y is None else cw_y * nll
  if cfg.eps:
    v = cfg.num_classes
    total = jnp.asarray(v, cfg.dtype) if sum_cw is None else sum_cw
    ce = (1 - cfg.eps) * ce + (cfg.eps / v) * (lse * total - szc)
  return ce


@functools.partial(jax.custom_vjp, nondiff_argnums=(6,))
def fused_linear_ce(h, w, b, cw_local, cw_y, y, cfg: Config):
  """``(ce [N], lse [N], argmax [N] int32 or None)``; see the module docstring.

  ``h`` [N, H] in ``cfg.dot_dtype`` with masked rows already zeroed, ``w`` [H, V_l],
  ``b`` [V_l] or None, ``cw_local`` [V_l] (this shard's class weights) or None,
  ``cw_y`` [N] (the label's class weight) or None, ``y`` [N] global ids.
  """
  return _fwd(h, w, b, cw_local, cw_y, y, cfg)[0]


def _fwd(h, w, b, cw_local, cw_y, y, cfg: Config):
  lse, zy, szc, best = _forward(h, w, b, cw_local, y, cfg)
  ce = _ce(lse, zy, szc, cw_y, _sum_cw(cw_local, cfg), cfg)
  return (ce, lse, best), (h, w, b, cw_local, cw_y, y, lse, zy)


def _bwd(cfg: Config, res, cts):
  h, w, b, cw_local, cw_y, y, lse, zy = res
  g, k = cts[0], cts[1]
  dt = cfg.dtype
  eps = cfg.eps
  v_local = w.shape[1]
  offset = _offset(v_local, cfg)
  sum_cw = _sum_cw(cw_local, cfg)
  # Per token: the softmax coefficient, the label's one-hot coefficient, the uniform one.
  label_a = (1 - eps) * (jnp.ones_like(g) if cw_y is None else cw_y)
  big_a = label_a + (eps if sum_cw is None else (eps / cfg.num_classes) * sum_cw)
  coef_p = g * big_a + k
  coef_y = g * label_a
  coef_u = g * (eps / cfg.num_classes)
  n_full, rem = _chunks(v_local, cfg.chunk)

  def body(carry, start, width):
    dh, dw, db, dcw = carry
    wc, _, z, t = _logits(h, w, b, start, width, cfg)
    p = jnp.exp(z - lse[:, None])
    loc = y - (offset + start)
    hit = lax.broadcasted_iota(loc.dtype, z.shape, 1) == loc[:, None]
    dz = coef_p[:, None] * p - jnp.where(hit, coef_y[:, None], jnp.zeros((), dt))
    if eps:
      if cw_local is None:
        dz = dz - coef_u[:, None]
      else:
        cwc = lax.dynamic_slice_in_dim(cw_local, start, width)
        dz = dz - coef_u[:, None] * cwc[None, :]
    du = dz if t is None else dz * (1 - t * t)
    du_d = du.astype(cfg.dot_dtype)
    dh = dh + _dot(du_d, wc, ((1,), (1,)), cfg)
    dw = _update_cols(dw, _dot(h, du_d, ((0,), (0,)), cfg).astype(w.dtype), start)
    if db is not None:
      db = _update_cols(db, jnp.sum(du, axis=0).astype(b.dtype), start)
    if dcw is not None and eps:
      # ∂ce_i/∂cw_c = (ε/V)(lse_i − z_ic), summed over tokens with their cotangents.
      part = jnp.sum(coef_u * lse) - _dot(coef_u, z, ((0,), (0,)), cfg._replace(
          precision=lax.Precision.HIGHEST))
      dcw = lax.dynamic_update_slice_in_dim(dcw, part.astype(dcw.dtype), start, 0)
    return dh, dw, db, dcw

  init = (jnp.zeros(h.shape, dt), _bits(jnp.zeros(w.shape, w.dtype)),
          None if b is None else _bits(jnp.zeros(b.shape, b.dtype)),
          None if cw_local is None else jnp.zeros(cw_local.shape, cw_local.dtype))
  dh, dw, db, dcw = _loop(n_full, rem, cfg.chunk, body, init,
                         (h, w, b, cw_local, cw_y, y, lse, g, k))
  dw = _unbits(dw, w.dtype)
  db = None if db is None else _unbits(db, b.dtype)
  if cfg.vocab_axis is not None:
    dh = lax.psum(dh, cfg.vocab_axis)  # each shard holds its columns' share
  dcw_y = None if cw_y is None else (1 - eps) * g * (lse - zy)
  return (match_vma(dh.astype(h.dtype), h), match_vma(dw, w), match_vma(db, b),
          match_vma(dcw, cw_local), match_vma(dcw_y, cw_y), None)


fused_linear_ce.defvjp(_fwd, _bwd)
