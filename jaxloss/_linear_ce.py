"""Fused linear softmax cross-entropy: the language-model head without [tokens, V] logits."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from jaxloss import _checks
from jaxloss._class_inputs import take_class
from jaxloss._linear_ce_kernels import Config, fused_linear_ce
from jaxloss._reduction import reduce_weighted, safe_div

# Default vocabulary chunk: the widest power of two with tokens × chunk ≤ a budget of
# elements, clamped to [_MIN_CHUNK, _MAX_CHUNK] (multiples of 128: TPU lanes, GPU
# tiles). Each [tokens, chunk] f32 temporary is then at most 4 bytes × budget.
# * CPU (2**21, 8 MiB): the chunk's elementwise passes stay in L2/L3 cache. Measured
#   on the 2-core CPU at 4096 tokens, H = 512: chunks of 512 ran 5-25% faster than
#   256 or 1024, and 8 % faster than 4096-wide ones (noisy, loaded machine).
# * GPU/TPU (2**24, 64 MiB): each step's matmul must be large enough that the loop's
#   per-step overhead (a few kernel launches) is negligible; at 16k tokens, chunks of
#   1024 columns: about 0.3 GiB of temporaries against 21 GiB for the [tokens, V] logits.
# The backend is the default one at trace time; pass `chunk_size` to override (e.g.
# when exporting for another platform).
_CHUNK_ELEMENTS = {"cpu": 1 << 21}
_CHUNK_ELEMENTS_ACCELERATOR = 1 << 24
_MIN_CHUNK = 128
_MAX_CHUNK = 8192

# Jitted inside, as propel_loss's kernel: an eager call compiles the chunk loop once per
# shape instead of re-tracing it every call; under an outer jit it is inlined.
_jitted_kernel = jax.jit(fused_linear_ce, static_argnums=6)


def default_chunk_size(num_tokens: int, vocab: int, backend: str | None = None) -> int:
  """The vocabulary chunk used when ``chunk_size=None`` (see ``_CHUNK_ELEMENTS``)."""
  backend = jax.default_backend() if backend is None else backend
  budget = _CHUNK_ELEMENTS.get(backend, _CHUNK_ELEMENTS_ACCELERATOR)
  per_token = budget // max(num_tokens, 1)
  chunk = 1 << max(int(per_token).bit_length() - 1, 0)
  return int(min(max(chunk, _MIN_CHUNK), _MAX_CHUNK, vocab))


def _static_float(name: str, value: Any, **limits: Any) -> float:
  _checks.scalar_option(name, value, **limits)
  try:
    return float(value)
  except (jax.errors.ConcretizationTypeError, jax.errors.TracerArrayConversionError) as e:
    raise TypeError(f"`{name}` must be a concrete Python number, not a traced value.") from e


def _check_chunk(chunk_size: Any) -> int | None:
  if chunk_size is None:
    return None
  if isinstance(chunk_size, bool) or not isinstance(chunk_size, (int, np.integer)):
    raise TypeError(f"`chunk_size` must be None or a Python int; got {chunk_size!r}.")
  if chunk_size < 1:
    raise ValueError(f"`chunk_size` must be >= 1; got {chunk_size}.")
  return int(chunk_size)


def linear_softmax_cross_entropy(
    hidden: jax.typing.ArrayLike,
    kernel: jax.typing.ArrayLike,
    labels: jax.typing.ArrayLike,
    *,
    bias: jax.typing.ArrayLike | None = None,
    class_weights: jax.typing.ArrayLike | None = None,
    weights: jax.typing.ArrayLike | None = None,
    where: jax.typing.ArrayLike | None = None,
    ignore_index: int | None = None,
    label_smoothing: float = 0.0,
    z_loss: float = 0.0,
    logit_soft_cap: float | None = None,
    reduction: str = "mean",
    axis_name: str | None = None,
    vocab_axis_name: str | None = None,
    return_aux: bool = False,
    chunk_size: int | None = None,
    precision: Any = None,
) -> jax.Array | tuple[jax.Array, dict[str, jax.Array]]:
  r"""Softmax cross-entropy of ``hidden @ kernel + bias``, never forming the logits.

  The value and the gradients with respect to ``hidden``, ``kernel``,
  ``bias`` and ``class_weights`` equal those of
  ``softmax_cross_entropy(cap(hidden @ kernel + bias), labels, ...)`` with the
  same ``class_weights``, ``weights``, ``where``, ``ignore_index``,
  ``label_smoothing`` and ``reduction``, plus the z-loss below, for every
  option and reduction, but the
  ``[tokens, V]`` logits are never materialised: the vocabulary is streamed
  in chunks of ``chunk_size`` columns with an online log-sum-exp, and the
  backward pass recomputes each chunk's logits. Temporary memory is
  O(tokens × chunk) plus the gradients themselves.

  With logits :math:`z = \mathrm{cap}(h W + b)`, where
  :math:`\mathrm{cap}(u) = s \tanh(u / s)` for ``logit_soft_cap=s`` (Gemma 2;
  applied after the bias) and the identity otherwise, smoothed targets
  :math:`t_{ic} = (1-\varepsilon)[y_i = c] + \varepsilon / V`, class weights
  :math:`c_k` (1 if absent), per-token ``weights`` :math:`u_i` and
  :math:`\ell_i = \log\sum_c e^{z_{ic}}`:

  .. math::
    n_i = u_i \Big( \sum_c c_c\, t_{ic}\, (\ell_i - z_{ic})
          + \alpha\, c_{y_i}\, \ell_i^2 \Big), \qquad
    w_i = u_i\, c_{y_i}

  and the reduction of :func:`jaxloss.reduce_loss` uses :math:`n_i` as
  numerators and :math:`w_i` in the ``"weighted_mean"`` and
  ``"sum_by_nonzero_weights"`` denominators, exactly as
  :func:`jaxloss.softmax_cross_entropy`. ``z_loss=α`` (PaLM, T5X) is thus
  weighted, masked and normalised like the cross-entropy; without label
  smoothing :math:`n_i = w_i(\mathrm{CE}_i + \alpha \ell_i^2)`.

  Masking: ``where=False`` and ``labels == ignore_index`` remove a token from
  every numerator and denominator (≡ slicing it away), with zero gradient
  even when its ``hidden`` row is NaN. An all-masked or empty batch gives 0
  with zero gradients. A label outside ``[0, V)`` that is neither masked nor
  ``ignore_index`` makes the loss NaN: never dropped, clamped or wrapped.

  Equals:

  * ``optax.softmax_cross_entropy_with_integer_labels(hidden @ kernel,
    labels).mean()`` in the plain case;
  * ``torch.nn.functional.cross_entropy(hidden @ kernel, labels, weight=c,
    ignore_index=k, label_smoothing=ε)`` with ``reduction="weighted_mean"``
    (``"sum"`` and ``"none"`` map to the same names);
  * the fused losses of Apple's Cut Cross-Entropy, Liger-Kernel, tokamax's
    ``linear_softmax_cross_entropy_loss`` and jax-cce's
    ``linear_cross_entropy`` where their options overlap (they lack some of
    class weights, ``ignore_index``, smoothing, z-loss, soft-cap and the
    reductions).

  Sharding:

  * ``axis_name``: tokens split over a mapped axis (data parallelism);
    numerators and denominators are ``psum``-ed, so the result equals the
    unsharded loss, and the gradients of a replicated ``kernel`` are summed.
  * ``vocab_axis_name``: inside :func:`jax.shard_map`, each device holds a
    contiguous slice ``kernel[:, V/k]`` (and ``bias``) in shard order; the
    log-sum-exp combines with ``pmax``/``psum`` and the label logit comes
    from the shard that owns it. ``labels`` are global ids in ``[0, V)``,
    ``class_weights`` is the full ``[V]`` vector, ``hidden`` is replicated
    over the vocabulary axis. Both axes together give a 2-D (data × vocab)
    mesh.

  Dtypes: bf16/f16 ``hidden`` and ``kernel`` run the matmuls in that dtype
  with f32 accumulation (``preferred_element_type``); the softmax runs in
  f32 (f64 for f64 inputs under x64). Gradients come back in the input
  dtypes. ``precision`` reaches every ``dot_general``.

  Tied embeddings: pass ``embedding.T``. Under :func:`jax.jit` the transpose
  is one copy of the ``[V, H]`` table (and one more for its gradient), O(V·H)
  like the kernel itself, never O(tokens × V).

  The value and gradient are a hand-written ``custom_vjp`` keeping only the
  per-token log-sum-exp and label logit. Reverse mode only (a hand-written
  ``custom_vjp``): ``jax.jvp``, ``jax.jacfwd`` and ``jax.hessian`` raise
  JAX's ``TypeError``; use ``jax.jacrev(jax.jacrev(f))`` for second
  derivatives.

  Args:
    hidden: ``[..., H]`` features of each token (any floating dtype).
    kernel: ``[H, V]`` output projection (Flax ``Dense`` layout); with
      ``vocab_axis_name``, this device's ``[H, V/k]`` slice.
    labels: integer (or bool) class ids of ``hidden``'s leading shape.
    bias: optional ``[V]`` (this device's ``[V/k]`` slice when sharded).
    class_weights: optional ``[V]`` non-negative weights that follow the label.
    weights: optional per-token weights (see :func:`jaxloss.reduce_loss`).
    where: optional boolean mask over tokens.
    ignore_index: integer label to leave out (e.g. -100 for padding).
    label_smoothing: :math:`\varepsilon \in [0, 1]`, torch's rule.
    z_loss: :math:`\alpha \ge 0`, the coefficient of :math:`\ell_i^2`.
    logit_soft_cap: optional :math:`s > 0`; logits become
      :math:`s \tanh(z / s)`.
    reduction: see :func:`jaxloss.reduce_loss`.
    axis_name: optional mapped axis the tokens are split over (``psum``).
    vocab_axis_name: optional mapped axis the vocabulary is split over.
    return_aux: also return the dict described below.
    chunk_size: vocabulary columns per chunk; ``None`` picks the widest power
      of two with ``tokens × chunk`` at most ``2**21`` on CPU (cache-sized) and
      ``2**24`` on GPU/TPU, clamped to ``[128, 8192]`` (and to ``V``). A chunk
      that does not divide ``V`` leaves a narrower last chunk.
    precision: ``jax.lax.Precision`` (or pair) for every matmul.

  Returns:
    The reduced loss (per-token losses :math:`n_i` of ``hidden``'s leading
    shape for ``"none"``). With ``return_aux=True``, ``(loss, aux)`` where
    ``aux["lse"]`` holds the per-token :math:`\ell_i` (0 where masked),
    ``aux["z_loss"]`` the z-loss part of ``loss`` (the same reduction of the
    :math:`u_i \alpha c_{y_i} \ell_i^2` terms), and ``aux["accuracy"]`` the
    masked top-1 accuracy (as :func:`jaxloss.accuracy`: 0 when nothing is
    unmasked, NaN for an invalid label).

  Examples:
    >>> import jax, jax.numpy as jnp
    >>> import jaxloss
    >>> hidden = jax.random.normal(jax.random.key(0), (8, 16))
    >>> kernel = jax.random.normal(jax.random.key(1), (16, 1000)) / 4
    >>> labels = jnp.arange(8) * 100
    >>> fused = jaxloss.linear_softmax_cross_entropy(hidden, kernel, labels, chunk_size=256)
    >>> naive = jaxloss.softmax_cross_entropy(hidden @ kernel, labels)
    >>> bool(jnp.allclose(fused, naive, rtol=1e-5))
    True
  """
  h = _checks.float_input("hidden", hidden)
  w = _checks.float_input("kernel", kernel)
  y = _checks.integer_input("labels", labels)
  _checks.check_reduction(reduction)
  if h.ndim == 0:
    raise ValueError("`hidden` must have a feature axis [..., H]; got a scalar.")
  if w.ndim != 2 or w.shape[0] != h.shape[-1]:
    raise ValueError(
        f"`kernel` has shape {tuple(w.shape)}; expected [H, V] with H = {h.shape[-1]}, the "
        f"last axis of `hidden` {tuple(h.shape)}.")
  v_local = _checks.check_axis_size("kernel", w, 1, "vocabulary axis")
  lead = tuple(h.shape[:-1])
  if y.shape != lead:
    raise ValueError(
        f"`labels` has shape {tuple(y.shape)}; expected {lead}, the shape of `hidden` "
        f"{tuple(h.shape)} without its feature axis.")
  eps = _static_float("label_smoothing", label_smoothing, low=0.0, high=1.0)
  _checks.scalar_option("z_loss", z_loss, low=0.0)
  cap = None
  if logit_soft_cap is not None:
    cap = _static_float("logit_soft_cap", logit_soft_cap, low=0.0, low_inclusive=False)
  ignore_index = _checks.check_ignore_index(ignore_index)
  chunk = _check_chunk(chunk_size)
  vocab = v_local if vocab_axis_name is None else v_local * lax.axis_size(vocab_axis_name)
  b = None
  if bias is not None:
    b = _checks.float_input("bias", bias)
    if b.shape != (v_local,):
      raise ValueError(f"`bias` has shape {tuple(b.shape)}; expected ({v_local},), one per "
                       f"column of `kernel` {tuple(w.shape)}.")
  dtype = _checks.compute_dtype(h, w, b)
  wts, m = _checks.weights_and_mask(weights, where, lead, dtype)
  cw = None
  if class_weights is not None:
    cw = _checks.per_class_vector("class_weights", class_weights, vocab, dtype,
                                  " of the (whole) vocabulary")
  _checks.check_labels_in_range("labels", y, vocab, ignore_index, where=m)
  if ignore_index is not None:
    keep = y != ignore_index
    m = keep if m is None else jnp.logical_and(m, keep)
  _checks.check_finite("hidden", h, where=None if m is None else m[..., None])

  n = _checks.static_size(lead)
  num_h = h.shape[-1]
  h2 = h.reshape(n, num_h)
  # Invalid labels become -1 before the int32 cast (a wrapped int64 id could turn valid);
  # masked ones become 0, and masked rows of `hidden` leave before any arithmetic.
  bad = _checks.invalid_labels(y, vocab, None)
  yk = jnp.where(bad, -1, y)
  m_flat = None
  if m is not None:
    m_full = jnp.broadcast_to(m, lead)
    m_flat = m_full.reshape(n)
    yk = jnp.where(m_full, yk, 0)
    h2 = jnp.where(m_flat[:, None], h2, jnp.zeros((), h2.dtype))
  yk = yk.astype(jnp.int32).reshape(n)
  # bf16 x bf16 (or f16 x f16) stays in that dtype; any other pair runs in `dtype`.
  dot_dtype = h.dtype if h.dtype == w.dtype and h.dtype.itemsize == 2 else dtype
  # The barrier gives the kernel a plain row-major `hidden`: XLA:CPU fails at run time
  # ("DotThunk ... BF16 x BF16 = F32") when a transposed view reaches a bf16 matmul.
  h2 = lax.optimization_barrier(h2.astype(dot_dtype))
  cw_y = cw_local = None
  if cw is not None:
    cw_y = take_class(cw, yk)
    cw_local = cw
    if vocab_axis_name is not None:
      cw_local = lax.dynamic_slice_in_dim(cw, lax.axis_index(vocab_axis_name) * v_local,
                                          v_local)
  cfg = Config(
      eps=eps, cap=cap,
      chunk=chunk if chunk is not None else default_chunk_size(n, v_local),
      num_classes=vocab, precision=precision, vocab_axis=vocab_axis_name, dtype=dtype,
      dot_dtype=jnp.dtype(dot_dtype), argmax=bool(return_aux))
  cfg = cfg._replace(chunk=min(cfg.chunk, v_local))
  ce, lse, best = _jitted_kernel(h2, w, b, cw_local, cw_y, yk, cfg)

  ce, lse = ce.reshape(lead), lse.reshape(lead)
  label_w = None if cw_y is None else cw_y.reshape(lead)
  zl = None
  if not (isinstance(z_loss, (int, float)) and z_loss == 0):
    zl = jnp.asarray(z_loss, dtype) * (lse * lse)
    if label_w is not None:
      zl = label_w * zl
  den_w = wts
  if label_w is not None:
    den_w = label_w if wts is None else wts * label_w
  per = ce if zl is None else ce + zl
  num = per if wts is None else wts * per
  loss = reduce_weighted(num, den_w, m, reduction, axis_name)
  if not return_aux:
    return loss
  if zl is None:
    z_part = reduce_weighted(jnp.zeros(lead, dtype), den_w, m, reduction, axis_name)
  else:
    z_part = reduce_weighted(zl if wts is None else wts * zl, den_w, m, reduction, axis_name)
  keep = jnp.ones(lead, bool) if m is None else jnp.broadcast_to(m, lead)
  aux = {
      "lse": jnp.where(keep, lse, jnp.zeros((), dtype)),
      "z_loss": z_part,
      "accuracy": _accuracy(best.reshape(lead), y, keep, vocab, dtype, axis_name),
  }
  return loss, aux


def _accuracy(best, y, keep, vocab, dtype, axis_name):
  """Masked top-1 accuracy; NaN when an unmasked label is invalid (as jaxloss.accuracy)."""
  valid = (y >= 0) & (y < vocab)
  hit = jnp.sum(keep & valid & (best.astype(y.dtype) == y), dtype=dtype)
  count = jnp.sum(keep, dtype=dtype)
  n_bad = jnp.sum(keep & ~valid, dtype=dtype)
  if axis_name is not None:
    hit, count, n_bad = lax.psum((hit, count, n_bad), axis_name)
  return lax.stop_gradient(jnp.where(n_bad > 0, jnp.nan, safe_div(hit, count)))
