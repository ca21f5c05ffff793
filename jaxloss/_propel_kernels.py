"""The PROPEL kernel: log-space value and a hand-written ``custom_vjp``.

Layout: every array is component- and dimension-major with the flattened batch
last (``mu``, ``s``: ``[D, I, N]``; ``t``: ``[D, N]``; logits ``[I, N]``), so
that XLA:CPU vectorises over the batch whatever ``I`` and ``D`` are.

Notation, per example: means :math:`\\mu_i`, variances :math:`v_i = s_i^2 + v_0`,
target :math:`t` with variance :math:`u = \\sigma^2 + v_0`, weights
:math:`\\pi_i`, :math:`S = v_a + v_b`, :math:`\\Delta = \\mu_a - \\mu_b`,
:math:`z^2 = \\Delta^2 / S` (per dimension) and

  log G(a, b) = -1/2 Σ_d [log(2π S_d) + z²_d],   log H(v) = -1/2 Σ_d log(4π v_d).

Everything is centred on ``base = log H(u·1) = -(D/2) log(4πu)``, the exact
ground-truth self-term, so that a perfect prediction gives exactly
``log T1 = log T2 = log 2`` instead of the difference of two numbers of size
``D·|log σ|``.
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
from jax import lax

from jaxloss._class_inputs import match_vma

# Variance floor: v = s² + V0. It keeps log(v), 1/v and 1/(v_i + v_j) finite when a
# raw std is exactly 0; for |s| > 1e-11 it does not change s² in float32 at all.
V0 = 1e-30
# Clamp of z² = Δ²/S per dimension, applied to the pair terms only. exp(-Z2_MAX/2)
# is exactly 0 in float32 and float64, so a pair with any z²_d ≥ Z2_MAX already had
# ρ = 0: the clamp changes no value and no gradient, it only keeps Δ²/S finite
# (no inf, hence no 0·inf = NaN in the backward pass) for arbitrarily far pairs.
Z2_MAX = 2000.0
LN10 = math.log(10.0)
LOG2 = math.log(2.0)
# The backward sweep works on batch tiles of about this many (component, example)
# pairs, so that its [I, tile] accumulators stay in cache (see _batch_tiles).
TILE_ELEMENTS = 1 << 14
# Up to this many dimensions, loops over D are unrolled in Python.
UNROLL_DIMS = 16
# Reductions over up to this many components or dimensions are unrolled.
UNROLL_REDUCE = 32


def _lead_reduce(op, x: jax.Array, axis: int = 0) -> jax.Array:
  """``op``-reduction (jnp.add or jnp.maximum) over a component or dimension axis.

  Elementwise ops over slices, never a reduce: XLA:CPU reduces such a non-minor
  axis of a few dozen entries about ten times slower than an elementwise op, which
  also fuses with its producers; and a fixed association order gives the same
  rounding eagerly and under jit. Up to UNROLL_REDUCE entries a chain, beyond a
  pairwise tree (log2 steps over halves, padded with the identity).
  """
  size = x.shape[axis]
  if size <= UNROLL_REDUCE:
    return functools.reduce(op, [lax.index_in_dim(x, k, axis, keepdims=False)
                                 for k in range(size)])
  while size > 1:
    if size % 2:
      fill = 0.0 if op is jnp.add else -jnp.inf
      widths = [(0, 0)] * x.ndim
      widths[axis] = (0, 1)
      x, size = jnp.pad(x, widths, constant_values=fill), size + 1
    half = size // 2
    x = op(lax.slice_in_dim(x, 0, half, axis=axis), lax.slice_in_dim(x, half, size, axis=axis))
    size = half
  return lax.index_in_dim(x, 0, axis, keepdims=False)


def _lse0(x: jax.Array) -> jax.Array:
  # log Σ_i exp(x_i) = m + log Σ_i exp(x_i − m), m = max_i x_i: no overflow, and
  # the largest term is exp(0) = 1, so no log(0) either.
  m = _lead_reduce(jnp.maximum, x)
  return m + jnp.log(_lead_reduce(jnp.add, jnp.exp(x - m[None])))


def _log_weights(logits: jax.Array | None, num: int, n: int, dtype) -> jax.Array:
  """log π, ``[I, N]``: log-softmax of the logits, or log(1/I)."""
  if logits is None:
    return jnp.full((num, n), -math.log(num), dtype)
  return logits - _lse0(logits)[None]


def _gt_terms(mu, v, t, u, logpi):
  """T1 side, centred: â_i = log π_i + log G(gt, i) − base, and its pieces."""
  dm = mu - t[:, None, :]  # Δ = μ_i − t
  inv = 1 / (v + u)
  z2 = dm * dm * inv
  # log G(gt, i) − base = −1/2 Σ_d [log(2π(v+u)) − log(4πu) + z²] = −1/2 Σ_d [log((v+u)/(2u)) + z²]
  # (as a difference of logs: the ratio overflows for raw stds ~1e19·σ; 0 exactly at v = u).
  a = logpi - 0.5 * _lead_reduce(jnp.add, (jnp.log(v + u) - jnp.log(2 * u)) + z2)
  return a, dm, inv, z2


def _diag_terms(v, u, logpi):
  """Scaled component weights w̃_i = π_i sqrt(H_i) e^{−M/2} ∈ (0, 1] and M/2 (centred)."""
  # (log H_i − base)/2 = −1/4 Σ_d log(v_d / u)
  lw = logpi - 0.25 * _lead_reduce(jnp.add, jnp.log(v) - jnp.log(u))
  half_m = _lead_reduce(jnp.maximum, lw)
  return jnp.exp(lw - half_m[None]), half_m


def _column(x: jax.Array, j) -> jax.Array:
  """Component j of ``x`` ([..., I, N]) as [..., 1, N], broadcasting against all rows."""
  return lax.dynamic_index_in_dim(x, j, axis=x.ndim - 2, keepdims=True)


def _dim(x: jax.Array, k) -> jax.Array:
  return x[k] if isinstance(k, int) else lax.dynamic_index_in_dim(x, k, 0, keepdims=False)


def _pair_dim(mu, v, j, k):
  """Δ_ij, 1/S_ij and min(z²_ij, Z2_MAX) of dimension k, all rows i against column j."""
  m, w = _dim(mu, k), _dim(v, k)
  dm = m - _column(m, j)
  inv = 1 / (w + _column(w, j))
  return dm, inv, jnp.minimum(dm * dm * inv, Z2_MAX)


def _pair_column(mu, v, sd, j):
  """ρ_ij = G(i, j) / sqrt(H_i H_j) for all rows i against column j ([I, N]).

  Cauchy–Schwarz, G(i, j) ≤ sqrt(H_i H_j), gives
  ρ_ij = Π_d sqrt(2 s_i s_j / S_d) · exp(−1/2 Σ_d z²_d) ∈ (0, 1]:
  a product of factors ≤ 1 (AM–GM) and no logarithm per pair. An underflow to 0
  only drops a term below 1e-38 of the diagonal ones. ``sd`` holds sqrt(2v), so
  2 s_i s_j / S = sd_i sd_j / S.

  Returns ρ and, for D ≤ UNROLL_DIMS, the per-dimension (Δ, 1/S, z²) (else None).
  """
  d = mu.shape[0]

  def step(k, acc, terms=None):
    prod, zsum = acc
    dm, inv, z2 = _pair_dim(mu, v, j, k)
    if terms is not None:
      terms.append((dm, inv, z2))
    s = _dim(sd, k)
    return prod * ((s * _column(s, j)) * inv), zsum + z2

  # *_like: loop carries must vary over the same mapped axes as the data (shard_map).
  acc = (jnp.ones_like(mu[0]), jnp.zeros_like(mu[0]))
  terms = None
  if d > UNROLL_DIMS:
    acc = lax.fori_loop(0, d, step, acc)
  else:
    terms = []
    for k in range(d):
      acc = step(k, acc, terms)
  prod, zsum = acc
  return jnp.sqrt(prod) * jnp.exp(-0.5 * zsum), terms


def _row_dot(w: jax.Array, x: jax.Array) -> jax.Array:
  """Σ_i w_i x_i over the component axis of [I, N] arrays, as a dot product
  (XLA:CPU reduces a leading axis slowly)."""
  return jnp.einsum("in,in->n", w, x)


def _pair_total(mu, v, sd, wt):
  """Q = Σ_ij w̃_i w̃_j ρ_ij ([N]): a sweep over columns j, one fused kernel each."""

  def body(j, acc):
    rho, _ = _pair_column(mu, v, sd, j)
    return acc + _column(wt, j) * rho

  acc = lax.fori_loop(0, mu.shape[1], body, jnp.zeros_like(mu[0]))
  return _row_dot(wt, acc)


def _pair_sums(mu, v, sd, wt, scale):
  """Σ_j q_ij, Σ_j q_ij Δ_ij/S_ij and Σ_j q_ij (z²_ij − 1)/S_ij, q_ij = scale·w̃_i w̃_j ρ_ij.

  A sweep over columns j accumulating [I, N] and [D, I, N] sums: memory O(D·I·N),
  never [I, I, N]. Products are ordered (q·Δ)·(1/S) and (q·(z²−1))·(1/S): where q
  underflows to 0 the result is 0, never 0·inf.
  """
  d, num = mu.shape[:2]

  def body(j, acc):
    a, gmu, gv = acc
    rho, terms = _pair_column(mu, v, sd, j)
    q = (scale[None, :] * wt) * _column(wt, j) * rho
    if terms is not None:
      gmu = tuple(g + (q * dm) * inv for g, (dm, inv, _) in zip(gmu, terms, strict=True))
      gv = tuple(g + (q * (z2 - 1)) * inv for g, (_, inv, z2) in zip(gv, terms, strict=True))
    else:
      def dim_step(k, acc):
        gm, gw = acc
        dm, inv, z2 = _pair_dim(mu, v, j, k)
        gm = lax.dynamic_update_index_in_dim(gm, _dim(gm, k) + (q * dm) * inv, k, 0)
        gw = lax.dynamic_update_index_in_dim(gw, _dim(gw, k) + (q * (z2 - 1)) * inv, k, 0)
        return gm, gw

      gmu, gv = lax.fori_loop(0, d, dim_step, (gmu, gv))
    return a + q, gmu, gv

  zero = jnp.zeros_like(mu[0])
  if d > UNROLL_DIMS:
    init = (zero, jnp.zeros_like(mu), jnp.zeros_like(mu))
  else:
    init = (zero, (zero,) * d, (zero,) * d)
  # Not unrolled, even for small I: the loop's outputs are then materialised in this
  # layout. Unrolled, XLA:CPU fuses the whole sweep into the transpose back to
  # [N, I, 2D] and evaluates it per output element, unvectorised (10x slower at I = 4).
  a, gmu, gv = lax.fori_loop(0, num, body, init)
  if d <= UNROLL_DIMS:
    gmu, gv = jnp.stack(gmu), jnp.stack(gv)
  return a, gmu, gv


def _batch_tiles(fn, args, fills):
  """``fn`` over tiles of the batch (last) axis, so that its [I, tile] sums stay in cache.

  Tiles hold about TILE_ELEMENTS // I examples (at least 128); the batch is padded
  with ``fills`` (a harmless component of weight 0) and the padding dropped again.
  """
  num, n = args[0].shape[-2:]
  nt = max(128, TILE_ELEMENTS // num)
  if n <= nt:
    return fn(*args)
  tiles = -(-n // nt)
  pad = tiles * nt - n

  def split(x, fill):
    x = jnp.pad(x, [(0, 0)] * (x.ndim - 1) + [(0, pad)], constant_values=fill)
    return jnp.moveaxis(x.reshape(x.shape[:-1] + (tiles, nt)), -2, 0)

  outs = lax.map(lambda xs: fn(*xs), tuple(split(x, f) for x, f in zip(args, fills, strict=True)))
  return tuple(jnp.moveaxis(o, 0, -2).reshape(o.shape[1:-1] + (tiles * nt,))[..., :n]
               for o in outs)


def _forward(mu, s, t, logits, sigma, exact_gt: bool):
  d, num, n = mu.shape
  v = s * s + V0
  u = sigma * sigma + V0
  logpi = _log_weights(logits, num, n, mu.dtype)
  a, _, _, _ = _gt_terms(mu, v, t, u, logpi)
  lse1 = _lse0(a)
  wt, half_m = _diag_terms(v, u, logpi)
  # Q = Σ_ij w̃_i w̃_j ρ_ij ≥ 1 (the largest diagonal term is 1·1·1), so log Q is finite.
  q_sum = _pair_total(mu, v, jnp.sqrt(2 * v), wt)
  h = _h_centred(d, u, exact_gt)
  # T2/H(u) = e^{ĥ} + e^{M̂} Q, with M̂ = 2·max_i(log π_i + (log H_i − base)/2)
  log_t2 = jnp.logaddexp(h, 2 * half_m + jnp.log(q_sum))
  loss = (log_t2 - (LOG2 + lse1)) * (1 / LN10)
  return loss, (lse1, log_t2, half_m)


def _h_centred(d: int, u, exact_gt: bool):
  """log H_gt − base: 0 with the exact self-term; (D−1)/2·log(4πu) with the 1-D one."""
  if exact_gt:
    return jnp.zeros_like(u)
  return (0.5 * (d - 1)) * jnp.log((4 * math.pi) * u)


def _component_major(x, t, logits):
  """[N, I, 2D], [N, D], [N, I] → μ, s [D, I, N], t [D, N], logits [I, N]."""
  d = t.shape[-1]
  xt = jnp.transpose(x, (2, 1, 0))
  return xt[:d], xt[d:], t.T, None if logits is None else logits.T


@functools.partial(jax.custom_vjp, nondiff_argnums=(4,))
def propel_core(x, t, logits, sigma, exact_gt):
  """Per-example PROPEL loss ``[N]`` from outputs [N, I, 2D], targets [N, D], logits [N, I]."""
  return _forward(*_component_major(x, t, logits), sigma, exact_gt)[0]


def _fwd(x, t, logits, sigma, exact_gt):
  mu, s, tt, lg = _component_major(x, t, logits)
  loss, stats = _forward(mu, s, tt, lg, sigma, exact_gt)
  return loss, (mu, s, tt, lg, sigma, stats)


def _bwd(exact_gt, res, g):
  # L = (log T2 − log T1)/ln 10 with log T1 = log 2 + LSE_i a_i and
  # log T2 = LSE(h, {c_ij}), c_ij = log π_i + log π_j + log G(i, j). Hence
  #   ∂L/∂x · ln 10 = Σ_ij q_ij ∂c_ij/∂x + q_0 ∂h/∂x − Σ_i r_i ∂a_i/∂x,
  # q_ij = e^{c_ij − log T2}, q_0 = e^{h − log T2}, r_i = softmax(a)_i. With
  #   ∂log G(a,b)/∂μ_a = −Δ/S,  ∂log G(a,b)/∂v_a = (z² − 1)/(2S),  ∂log G(a,b)/∂μ_b = +Δ/S,
  # and q symmetric, the pair sum counts every i twice (i in the row and in the
  # column); the diagonal G(i,i) = H_i is included (Δ = 0, ∂/∂v_i = −1/(2v_i)).
  mu, s, t, logits, sigma, (lse1, log_t2, half_m) = res
  d, num, n = mu.shape
  kappa = g * (1 / LN10)
  v = s * s + V0
  u = sigma * sigma + V0
  logpi = _log_weights(logits, num, n, mu.dtype)
  a, dm1, inv1, z21 = _gt_terms(mu, v, t, u, logpi)
  r = jnp.exp(a - lse1[None])  # [I, N], Σ_i r_i = 1
  wt, _ = _diag_terms(v, u, logpi)
  h = _h_centred(d, u, exact_gt)
  q0 = jnp.exp(h - log_t2)
  scale = jnp.exp(2 * half_m - log_t2)  # q_ij = scale · w̃_i w̃_j ρ_ij
  # Σ_j q_ij, Σ_j q_ij Δ_ij/S_ij, Σ_j q_ij (z²_ij − 1)/S_ij.
  a_sum, gmu_sum, gv_sum = _batch_tiles(
      _pair_sums, (mu, v, jnp.sqrt(2 * v), wt, scale), (0.0, 1.0, 1.0, 0.0, 0.0))
  k = kappa[None, None, :]
  # μ_i: 2 Σ_j q_ij (−Δ_ij/S_ij) from T2; −r_i·(−Δ_i^gt/S_i^gt) from −log T1.
  g_mu = k * (r[None] * dm1 * inv1 - 2 * gmu_sum)
  # v_i: 2 Σ_j q_ij (z²−1)/(2S) from T2; −r_i (z²_gt − 1)/(2 S_gt) from −log T1.
  gt_v = (0.5 * r[None]) * (z21 - 1) * inv1
  g_v = k * (gv_sum - gt_v)
  g_s = g_v * (2 * s)  # v = s² + V0
  # t: ∂a_i/∂t = +Δ_i^gt / S_i^gt, only in −log T1.
  g_t = -kappa[None, :] * _lead_reduce(jnp.add, r[None] * dm1 * inv1, axis=1)
  g_logits = None
  if logits is not None:
    # log π_i = ℓ_i − LSE(ℓ): ∂c_ij/∂ℓ_k = [i=k] + [j=k] − 2π_k, ∂a_i/∂ℓ_k = [i=k] − π_k;
    # Σ_ij q_ij = 1 − q_0 and Σ_i r_i = 1 give 2 Σ_j q_kj − 2π_k(1 − q_0) − r_k + π_k.
    pi = jnp.exp(logpi)
    g_logits = kappa[None, :] * (2 * a_sum - 2 * pi * (1 - q0)[None, :] - r + pi)
  # u: ∂h/∂u = −D/(2u) (exact) or −1/(2u) (reference); ∂a_i/∂u = Σ_d (z²_gt − 1)/(2 S_gt).
  dh = -(d if exact_gt else 1) / (2 * u)
  g_u = jnp.sum(kappa * (q0 * dh - jnp.sum(gt_v, axis=(0, 1))))
  g_sigma = match_vma(g_u * (2 * sigma), sigma)
  g_x = jnp.transpose(jnp.concatenate([g_mu, g_s], axis=0), (2, 1, 0))  # [N, I, 2D]
  return g_x, g_t.T, None if g_logits is None else g_logits.T, g_sigma


propel_core.defvjp(_fwd, _bwd)


def propel_reference(x, t, logits, sigma, exact_gt):
  """The same forward without the custom_vjp (for autodiff comparisons and the bench)."""
  return _forward(*_component_major(x, t, logits), sigma, exact_gt)[0]
