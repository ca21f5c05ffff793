"""Consistency (UDA, MixMatch, Π-model) and entropy-minimisation losses.

Both are row reductions of softmaxes. Each is a ``jax.custom_jvp`` whose
tangent is ``Σ_k g_k · dx_k`` with the per-class coefficient ``g`` formed in
the primal pass: reverse mode transposes it to ``ct · g``, which XLA fuses into
the kernel that forms ``g``. Value and gradient then cost a max pass, a sum
pass and one gradient pass over the logits, where autodiff of the
log-softmax composition keeps (and re-reads) several ``[N, C]`` residuals.
Forward mode and second derivatives still work (the rule is plain JAX).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jax import lax
from jax.custom_derivatives import SymbolicZero

from jaxloss import _checks
from jaxloss._reduction import reduce_elements
from jaxloss._semi_supervised import _class_logits

# Rows from which the KL gradient recomputes its softmaxes (see _consistency_parts).
_FRESH_SOFTMAX_MIN_ROWS = 4096


def _shifted(x: jax.Array, axis: int) -> jax.Array:
  """``x − max x`` (<= 0; ``−inf`` where it overflows at ±3e38), the shift held constant."""
  return x - lax.stop_gradient(jnp.expand_dims(jnp.max(x, axis=axis), axis))


def _clamp(z: jax.Array, low) -> jax.Array:
  """``max(z, low)`` for a shifted ``z <= 0`` and a huge negative ``low``: ``exp`` of it is
  still 0 and a product ``e·z`` is ``0·finite = 0``, without a ``where``.

  XLA:CPU fuses a compare-select into none of its row-reduction kernels, so a
  ``where`` there costs a materialised ``[N, C]`` array; ``max`` fuses.
  """
  return jnp.maximum(z, jnp.asarray(low, z.dtype))


def _row(v: jax.Array, axis: int) -> jax.Array:
  return jnp.expand_dims(v, axis)


# --------------------------------------------------------------------------- entropy


def _entropy_parts(x: jax.Array, axis: int) -> tuple[jax.Array, jax.Array]:
  """``H = log S − Σ e z / S`` with ``z = x − max x``, ``e = exp z``; and ``∂H/∂x``."""
  z = _clamp(_shifted(x, axis), jnp.finfo(x.dtype).min)  # finite: e·z = 0 where e = 0
  e = jnp.exp(z)
  s = jnp.sum(e, axis=axis)
  log_s = jnp.log(s)
  h = log_s - jnp.sum(e * z, axis=axis) / s
  # ∂H/∂x_j = −p_j (log p_j + H), 0 where p_j = 0 (z finite there).
  return h, -(e / _row(s, axis)) * (z - _row(log_s - h, axis))


@functools.partial(jax.custom_jvp, nondiff_argnums=(1,))
def _entropy(x: jax.Array, axis: int) -> jax.Array:
  return _entropy_parts(x, axis)[0]


@_entropy.defjvp
def _entropy_jvp(axis, primals, tangents):
  (x,), (dx,) = primals, tangents
  h, g = _entropy_parts(x, axis)
  return h, jnp.sum(g * dx, axis=axis)


def entropy_minimization_loss(
    logits: jax.typing.ArrayLike,
    *,
    axis: int = -1,
    weights: jax.typing.ArrayLike | None = None,
    where: jax.typing.ArrayLike | None = None,
    reduction: str = "mean",
    axis_name: str | None = None,
) -> jax.Array:
  r"""Entropy of the predicted distribution (Grandvalet & Bengio 2005).

  .. math::
    l_i = H(p_i) = -\sum_k p_{ik} \log p_{ik}, \qquad p = \mathrm{softmax}(x)

  in nats, evaluated as :math:`\log S - \sum_k e_k z_k / S` with
  :math:`z = x - \max x`, :math:`e = \exp z`, :math:`S = \sum_k e_k`, the term
  0 where :math:`p_k = 0`: no ``log(0)``, no cancellation, and finite value and
  gradient (:math:`-p_k(\log p_k + H)`, formed in the same pass) for any finite
  logits (±3e38 included). Minimising it on unlabeled examples pushes decision
  boundaries away from the data.

  Equals ``torch.distributions.Categorical(logits=x).entropy()``,
  ``scipy.stats.entropy(softmax(x), axis=-1)`` and
  ``optax.softmax_cross_entropy(x, jax.nn.softmax(x))`` (value and gradient)
  per element, reduced by :func:`jaxloss.reduce_loss`.

  Args:
    logits: unnormalised scores with a class axis.
    axis: the class axis.
    weights: optional per-element weights.
    where: optional boolean mask over elements.
    reduction: see :func:`jaxloss.reduce_loss`.
    axis_name: optional mapped axis name to ``psum`` the reduction over.

  Returns:
    The reduced loss.

  Examples:
    >>> import jax.numpy as jnp
    >>> import jaxloss
    >>> h = jaxloss.entropy_minimization_loss(jnp.array([[0.0, 0.0], [9.0, 0.0]]),
    ...                                       reduction="none")
    >>> [round(v, 4) for v in h.tolist()]                # log 2, almost 0
    [0.6931, 0.0012]
  """
  (x,), ax, w, m, _ = _class_logits(("logits",), (logits,), axis, weights, where, reduction)
  return reduce_elements(_entropy(x, ax), w, m, reduction, axis_name)


# --------------------------------------------------------------------------- consistency


def _consistency_parts(a, b, temperature, kind, axis, wants_b):
  """The per-element loss, ``∂l/∂a`` and (if ``wants_b``) ``∂l/∂u`` and ``u``.

  ``p = softmax(a)`` from ``z = a − max a``; ``q = softmax(u)`` from
  ``u = (b − max b) / T`` (``b / T`` itself overflows at 3e38 for T < 1).
  """
  z, zb = _shifted(a, axis), _shifted(b, axis)
  if kind == "kl":
    # Clamped to [min, 0] and [min / 2, 0] (distinct constants: XLA would share one
    # broadcast between two kernels, and materialise it), so u − z cannot overflow.
    lo = jnp.finfo(a.dtype).min
    z, zb = _clamp(z, lo), _clamp(zb, lo / 2 * jnp.minimum(temperature, 1))
  u = zb / temperature
  ea, eu = jnp.exp(z), jnp.exp(u)
  sa, su = jnp.sum(ea, axis=axis), jnp.sum(eu, axis=axis)
  p, q = ea / _row(sa, axis), eu / _row(su, axis)
  gu = None
  if kind == "kl":
    # KL = Σ q (log q − log p) = Σ e_u (u − z) / S_u − log S_u + log S_a, the term
    # 0·finite = 0 where q = 0; huge (or inf) where q > 0 and p underflows.
    d = u - z
    lse_diff = jnp.log(sa) - jnp.log(su)
    per = jnp.sum(eu * d, axis=axis) / su + lse_diff
    if a.size // a.shape[axis] >= _FRESH_SOFTMAX_MIN_ROWS:
      # p − q from fresh softmaxes: XLA:CPU then fuses each in one row kernel with its
      # own max and sum, where sharing e_a, e_u materialises both (bytes accessed
      # at [4096, 1000]: 12x the input instead of 16x; naive JAX 15x).
      ga = jax.nn.softmax(a, axis=axis) - jax.nn.softmax(_shifted(b, axis) / temperature,
                                                         axis=axis)
    else:  # below 4096 rows XLA:CPU splits the kernels anyway: sharing reads less
      ga = p - q
    if wants_b:  # ∂/∂u_j = q_j (log q_j − log p_j − KL)
      gu = q * (d + _row(lse_diff - per, axis))
  else:
    c = a.shape[axis]
    diff = p - q
    per = jnp.sum(jnp.square(diff), axis=axis) / c
    # ∂/∂a_j = 2/C p_j (δ_j − Σ δ p), δ = p − q; ∂/∂u_j = −2/C q_j (δ_j − Σ δ q).
    ga = (2 / c) * p * (diff - _row(jnp.sum(diff * p, axis=axis), axis))
    if wants_b:
      gu = (-2 / c) * q * (diff - _row(jnp.sum(diff * q, axis=axis), axis))
  return per, ga, gu, u


# Row blocks: from _TILE_MIN_ELEMENTS logits (class axis last) the rows of "kl" are
# processed in blocks of the largest of _TILE_ROWS that divides their number, one
# lax.map step each.
# On the whole array XLA:CPU fuses the max, the two exp-sums and the KL's Σ e_u (u − z)
# into reductions that read the logits several times and run 2-3x slower than a block
# that stays in cache: value and gradient of "kl" at [4096, 1000] take 9-10 ms in blocks
# of 64-512 rows (52 MiB accessed, 1.1x the minimum) against 17-25 ms whole (188 MiB).
# "mse" has no such cross term; whole, it is faster (4.8 ms there, 7.1 ms in blocks).
_TILE_ROWS = (512, 256, 128, 64)
_TILE_MIN_ELEMENTS = 1 << 20


def _block_rows(a: jax.Array, kind: str, axis: int) -> int | None:
  """Rows per block for the tiled path, or None for the whole-array one (by shape)."""
  if kind != "kl" or axis != a.ndim - 1 or a.size < _TILE_MIN_ELEMENTS:
    return None
  rows = a.size // a.shape[axis]
  return next((r for r in _TILE_ROWS if rows % r == 0 and rows > r), None)


def _parts_with_tangent_rows(a, b, temperature, kind, axis, wants_b):
  """``(l, ∂l/∂a, ∂l/∂u, Σ_k ∂l/∂u_k · u_k)``, the last two None unless ``wants_b``.

  ``u`` is clamped to the float range in the last sum: ``gu = 0`` where ``u`` is
  ``−inf`` or clamped, so the product is 0 there rather than NaN.
  """
  rows = _block_rows(a, kind, axis)
  if rows is None:
    per, ga, gu, u = _consistency_parts(a, b, temperature, kind, axis, wants_b)
    gu_u = None if gu is None else jnp.sum(gu * _clamp(u, jnp.finfo(u.dtype).min), axis=axis)
    return per, ga, gu, gu_u
  lead, c = a.shape[:-1], a.shape[-1]

  def block(ab):
    per, ga, gu, u = _consistency_parts(ab[0], ab[1], temperature, kind, -1, wants_b)
    if gu is None:
      return per, ga
    return per, ga, gu, jnp.sum(gu * _clamp(u, jnp.finfo(u.dtype).min), axis=-1)

  blocks = a.size // c // rows
  out = lax.map(block, (a.reshape(blocks, rows, c), b.reshape(blocks, rows, c)))
  per, ga = out[0].reshape(lead), out[1].reshape(a.shape)
  if not wants_b:
    return per, ga, None, None
  return per, ga, out[2].reshape(a.shape), out[3].reshape(lead)


@functools.partial(jax.custom_jvp, nondiff_argnums=(3, 4))
def _consistency(a, b, temperature, kind, axis):
  return _parts_with_tangent_rows(a, b, temperature, kind, axis, False)[0]


def _consistency_jvp(kind, axis, primals, tangents):
  (a, b, t), (da, db, dt) = primals, tangents
  b_zero, t_zero = isinstance(db, SymbolicZero), isinstance(dt, SymbolicZero)
  per, ga, gu, gu_u = _parts_with_tangent_rows(a, b, t, kind, axis, not (b_zero and t_zero))
  dper = jnp.zeros_like(per) if isinstance(da, SymbolicZero) else jnp.sum(ga * da, axis=axis)
  if not b_zero:  # u = (b − max b) / T
    dper = dper + jnp.sum(gu * db, axis=axis) / t
  if not t_zero:  # ∂u/∂T = −u / T
    dper = dper - gu_u / t * dt
  return per, dper


_consistency.defjvp(_consistency_jvp, symbolic_zeros=True)


def consistency_loss(
    logits_a: jax.typing.ArrayLike,
    logits_b: jax.typing.ArrayLike,
    *,
    kind: str = "kl",
    temperature: float = 1.0,
    stop_gradient: bool = True,
    axis: int = -1,
    weights: jax.typing.ArrayLike | None = None,
    where: jax.typing.ArrayLike | None = None,
    reduction: str = "mean",
    axis_name: str | None = None,
) -> jax.Array:
  r"""Consistency between two predictions; ``b`` is the target (UDA, MixMatch, Π-model).

  With :math:`p = \mathrm{softmax}(a)` and target
  :math:`q = \mathrm{softmax}(b / T)` (under ``stop_gradient`` by default):

  .. math::
    \text{"kl"}: l_i = \sum_k q_{ik} (\log q_{ik} - \log p_{ik}), \qquad
    \text{"mse"}: l_i = \frac{1}{C} \sum_k (p_{ik} - q_{ik})^2

  ``"kl"`` is :math:`\mathrm{KL}(q \,\|\, p)` from shifted logits, with the
  term 0 where :math:`q_k = 0`, and :math:`q` from :math:`(b - \max b) / T`
  (``b / T`` would overflow): finite value and gradient for any finite logits
  (±3e38 included) wherever the true KL is finite. ``"mse"`` **averages**
  over the :math:`C` classes, the convention of MixMatch, the Π-model and
  Mean Teacher. :math:`T < 1`
  sharpens the target, as UDA's softmax temperature and MixMatch's
  sharpening :math:`q^{1/T} / \sum q^{1/T}` do. The gradients (e.g.
  :math:`p - q` for ``"kl"``) are formed in the same pass as the value.

  Equals (``reduction="mean"``, ``[B, C]`` inputs):

  * ``"kl"``: UDA's ``kl_for_log_probs(log_softmax(b), log_softmax(a))``;
    ``optax.losses.kl_divergence_with_log_targets(log_softmax(a),
    log_softmax(b)).mean()``; ``torch.nn.functional.kl_div(log_softmax(a),
    log_softmax(b), log_target=True, reduction="batchmean")``.
  * ``"mse"``: MixMatch's :math:`L_U = \frac{1}{C|U|}\sum \|q - p\|^2`;
    Mean Teacher's ``softmax_mse_loss(a, b) / batch_size``. For a sum over
    classes multiply by :math:`C`.

  Args:
    logits_a: prediction logits (differentiated), with a class axis.
    logits_b: target logits, the shape of ``logits_a``.
    kind: ``"kl"`` or ``"mse"``.
    temperature: :math:`T > 0` applied to ``logits_b``, a finite scalar.
    stop_gradient: if True (default) no gradient flows into ``logits_b``.
    axis: the class axis.
    weights: optional per-element weights.
    where: optional boolean mask over elements.
    reduction: see :func:`jaxloss.reduce_loss`.
    axis_name: optional mapped axis name to ``psum`` the reduction over.

  Returns:
    The reduced loss.

  Examples:
    >>> import jax.numpy as jnp
    >>> import jaxloss
    >>> a, b = jnp.array([[1.0, 0.0]]), jnp.array([[0.0, 1.0]])
    >>> [round(float(jaxloss.consistency_loss(a, b, kind=k)), 4) for k in ("kl", "mse")]
    [0.4621, 0.2136]
  """
  if kind not in ("kl", "mse"):
    raise ValueError(f"`kind` must be 'kl' or 'mse'; got {kind!r}.")
  _checks.check_static_positive("temperature", temperature)
  (a, b), ax, w, m, dtype = _class_logits(
      ("logits_a", "logits_b"), (logits_a, logits_b), axis, weights, where, reduction)
  if stop_gradient:
    b = lax.stop_gradient(b)
  per = _consistency(a, b, jnp.asarray(temperature, dtype), kind, ax)
  return reduce_elements(per, w, m, reduction, axis_name)
