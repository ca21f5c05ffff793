"""Cross-entropy family: class-weighted softmax CE and weighted sigmoid BCE.

Class weights follow the **ground-truth** label. Scaling logits by a weight
changes the softmax temperature; it is not class weighting.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax import lax

from jaxloss import _checks
from jaxloss._reduction import reduce_weighted


class ClassTargets(NamedTuple):
  """Checked class-axis inputs shared by the softmax losses."""

  logits: jax.Array  # the input's dtype (cast inside each fused kernel), masked rows zeroed
  labels: jax.Array  # int labels (masked -> 0) or probabilities (masked rows -> 0)
  is_int: bool
  axis: int
  num_classes: int
  class_weights: jax.Array | None  # [C] in compute dtype
  weights: jax.Array | None  # per element (shape of logits minus the class axis)
  where: jax.Array | None
  dtype: jnp.dtype


def prepare_class_inputs(
    logits, labels, *, axis, class_weights, weights, where, ignore_index, reduction,
    name: str = "logits",
) -> ClassTargets:
  """The shared front of every class-axis loss: checks, masks, dtypes.

  The per-element shape is ``logits.shape`` without the class axis. Integer
  labels have that shape; probability (one-hot, smoothed, soft) labels have the
  shape of ``logits``. Elements whose label is ``ignore_index``, or whose
  probability row is all zero (an unlabeled example), are added to the mask.
  Masked logits and labels are replaced by 0 *before* any arithmetic
  (double-``where``), so NaN inputs under the mask stay harmless. Logits keep
  their dtype: a bf16 input cast once to f32 outside the kernels would be
  materialised as a full f32 copy, so each kernel casts on the fly.
  """
  x = _checks.float_input(name, logits)
  y = _checks.real_input("labels", labels)
  _checks.check_reduction(reduction)
  if x.ndim == 0:
    raise ValueError(f"`{name}` must have a class axis; got a scalar.")
  ax = _checks.normalize_axis("axis", axis, x.ndim)
  num_classes = _checks.check_axis_size(name, x, ax, "class axis")
  elem_shape = x.shape[:ax] + x.shape[ax + 1:]
  ignore_index = _checks.check_ignore_index(ignore_index)
  # bool labels of the element shape are class ids 0/1; of the logits' shape, one-hot.
  is_int = _checks.is_class_ids(y) and not (y.dtype == jnp.bool_ and y.shape == x.shape)
  if is_int:
    y = _checks.widen_labels(y)
    if y.shape != elem_shape:
      raise ValueError(
          f"integer `labels` has shape {tuple(y.shape)}; expected {elem_shape}, the shape of "
          f"`{name}` {tuple(x.shape)} without its class axis {ax}."
      )
  elif y.shape != x.shape:
    raise ValueError(
        f"probability `labels` has shape {tuple(y.shape)}; expected the shape of `{name}` "
        f"{tuple(x.shape)}. Integer class ids need an integer dtype."
    )
  if ignore_index is not None and not is_int:
    raise ValueError("`ignore_index` only applies to integer labels.")
  dtype = _checks.compute_dtype(x, None if is_int else y)
  w, m = _checks.weights_and_mask(weights, where, elem_shape, dtype)
  cw = None
  if class_weights is not None:
    cw = _checks.per_class_vector("class_weights", class_weights, num_classes, dtype,
                                  f" of `{name}` {tuple(x.shape)} along axis {ax}")
  if is_int:
    _checks.check_labels_in_range("labels", y, num_classes, ignore_index, where=m)
    if ignore_index is not None:
      keep = y != ignore_index
      m = keep if m is None else jnp.logical_and(m, keep)
  else:
    y = y.astype(dtype)
    _checks.check_finite("labels", y, where=None if m is None else jnp.expand_dims(m, ax))
    _checks.check_probabilities("labels", y, ax, where=m)
    labeled = jnp.any(y != 0, axis=ax)  # an all-zero row is an unlabeled example
    m = labeled if m is None else jnp.logical_and(m, labeled)
  _checks.check_finite(name, x, where=None if m is None else jnp.expand_dims(m, ax))
  if m is not None:
    mc = jnp.expand_dims(m, ax)
    x = jnp.where(mc, x, jnp.zeros((), x.dtype))
    y = jnp.where(m if is_int else mc, y, jnp.zeros((), y.dtype))
  return ClassTargets(x, y, is_int, ax, num_classes, cw, w, m, dtype)


def match_vma(cotangent: jax.Array | None, primal: jax.Array | None) -> jax.Array | None:
  """Sums a custom_vjp cotangent over the mapped axes its primal does not vary over.

  Inside ``shard_map``, a replicated input (class weights, say) used with a
  sharded batch is implicitly broadcast across the devices; the transpose of
  that broadcast is a ``psum``. A hand-written backward pass must apply it too.
  """
  if cotangent is None or primal is None:
    return cotangent
  extra = tuple(sorted(_varying_axes(cotangent) - _varying_axes(primal)))
  return lax.psum(cotangent, extra) if extra else cotangent


def _varying_axes(x: jax.Array) -> frozenset:
  aval = jax.typeof(x)
  mat = getattr(aval, "manual_axis_type", None)  # JAX >= 0.10; earlier: aval.vma
  return mat.varying if mat is not None else getattr(aval, "vma", frozenset())


def _iota_eq(labels: jax.Array, shape: tuple[int, ...], axis: int) -> jax.Array:
  # Compare-with-iota instead of a one-hot array: stays inside the fusion.
  return lax.broadcasted_iota(labels.dtype, shape, axis) == jnp.expand_dims(labels, axis)


# XLA:CPU reduces a small minor axis (a dozen classes) one row at a time, about
# 1.6x slower than an elementwise max/add over per-class slices, which vectorises
# across rows. Up to this many classes the class reductions are unrolled.
_UNROLL_MAX_CLASSES = 32


def _class_reduce(op, x: jax.Array, axis: int) -> jax.Array:
  """``op``-reduction over the class axis (``jnp.maximum`` or ``jnp.add``), no kept axis."""
  c = x.shape[axis]
  if c > _UNROLL_MAX_CLASSES:
    return (jnp.max if op is jnp.maximum else jnp.sum)(x, axis=axis)
  return functools.reduce(op, [lax.index_in_dim(x, k, axis, keepdims=False) for k in range(c)])


def _class_sum(x: jax.Array, axis: int) -> jax.Array:
  return _class_reduce(jnp.add, x, axis)


def _take_label(x: jax.Array, labels: jax.Array, axis: int) -> jax.Array:
  """The logit of each element's label; NaN for a label outside ``[0, C)``.

  An invalid label thus poisons the loss instead of being dropped, at no extra
  pass over the data. For few classes the selection is an elementwise select
  over per-class slices, which XLA fuses with the log-sum-exp; otherwise one
  gather per element (a masked select + reduce would materialise ``[N, C]``).
  """
  c = x.shape[axis]
  if c > _UNROLL_MAX_CLASSES:
    return _gather_label(x, labels, axis)
  zero = jnp.zeros((), x.dtype)
  picked = [jnp.where(labels == k, lax.index_in_dim(x, k, axis, keepdims=False), zero)
            for k in range(c)]
  valid = (labels >= 0) & (labels < c)
  return jnp.where(valid, functools.reduce(jnp.add, picked), jnp.nan)


def _gather_label(x: jax.Array, labels: jax.Array, axis: int) -> jax.Array:
  """``_take_label`` as one gather per element, for any number of classes.

  It reads one logit per element where the select reads all C slices (strided):
  XLA:CPU 30 -> 8 us at ``[2, 64, 64, 12]`` in the cross-entropy, whose other
  kernels the select never fused with. A negative index would wrap around (NumPy
  semantics, even with mode="fill"): every invalid label is sent to C, past the
  end, where the fill gives NaN.
  """
  c = x.shape[axis]
  idx = jnp.expand_dims(jnp.where(labels < 0, c, labels), axis)
  taken = jnp.take_along_axis(x, idx, axis=axis, mode="fill", fill_value=jnp.nan)
  return jnp.squeeze(taken, axis)


def take_class(values: jax.Array, labels: jax.Array) -> jax.Array:
  """``values[labels]`` for a ``[C]`` vector; NaN for a label outside ``[0, C)``.

  ``jnp.take`` wraps negative indices even with ``mode="fill"``, so they are sent
  past the end first: an invalid label is never read as class ``C + label``.
  """
  idx = jnp.where(labels < 0, values.shape[0], labels)
  return jnp.take(values, idx, mode="fill", fill_value=jnp.nan)


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
# element) and, for small inputs, e = exp(x − max) with 1/Σe (see _STORE_EXP_MAX_ELEMENTS).


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
  if x.size <= _STORE_EXP_MAX_ELEMENTS and x_in.dtype == dtype:
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


def softmax_cross_entropy(
    logits: jax.typing.ArrayLike,
    labels: jax.typing.ArrayLike,
    *,
    axis: int = -1,
    class_weights: jax.typing.ArrayLike | None = None,
    weights: jax.typing.ArrayLike | None = None,
    where: jax.typing.ArrayLike | None = None,
    ignore_index: int | None = None,
    label_smoothing: float = 0.0,
    reduction: str = "mean",
    axis_name: str | None = None,
) -> jax.Array:
  r"""Softmax cross-entropy with class weights that follow the ground truth.

  With :math:`p = \mathrm{softmax}(x)` along ``axis``, class weights
  :math:`c_k` (1 if absent), smoothed targets
  :math:`y'_{ik} = (1-\varepsilon) y_{ik} + \varepsilon / C`:

  .. math::
    l_i = \sum_k c_k\, y'_{ik}\, (-\log p_{ik}), \qquad
    w_i = \mathrm{weights}_i \sum_k c_k\, y_{ik}

  and the reduction of :func:`jaxloss.reduce_loss` uses :math:`w_i l_i` as
  numerators and :math:`w_i` (built from the *unsmoothed* label) in the
  ``"weighted_mean"`` and ``"sum_by_nonzero_weights"`` denominators. Integer
  labels :math:`y_i` are one-hot rows, so integer and one-hot labels give
  identical results in every reduction (PyTorch does not: with probability
  targets its ``"mean"`` ignores ``weight``, issue 107680).

  Masking: ``where=False``, ``labels == ignore_index`` and all-zero probability
  rows (how a missing label is usually encoded) remove an element from every
  numerator and denominator. With :math:`\varepsilon > 0` a pixel whose true
  class has weight 0 still has a non-zero loss under ``reduction="none"``,
  exactly as in torch.

  Integer labels outside ``[0, C)`` that are not ``ignore_index`` give NaN, so
  they are never silently ignored; :func:`jaxloss.checked` names them.

  Equals:

  * ``torch.nn.functional.cross_entropy(x_nchw, y, weight=c, ignore_index=k,
    label_smoothing=ε, reduction="mean")`` with ``reduction="weighted_mean"``
    (for ``"sum"``/``"none"``: the same names);
  * ``optax.softmax_cross_entropy_with_integer_labels(x, y).mean()`` with no
    weights and ``reduction="mean"``; ``optax.softmax_cross_entropy(x, y)``
    for probability labels.

  The value and gradient are a hand-written ``custom_vjp``: the backward pass is
  :math:`g_i (A_i p_i - a_i)` with :math:`a_{ik} = c_k y'_{ik}`,
  :math:`A_i = \sum_k a_{ik}`, and keeps the log-sum-exp per element (inputs of
  at most :math:`2^{17}` logits in the compute dtype, with integer labels, also keep
  :math:`e^{x - \max x}`, which is faster on CPU there than recomputing it).
  Forward mode on the loss itself is not available (a hand-written
  ``custom_vjp``): ``jax.jvp`` and ``jax.jacfwd`` raise JAX's ``TypeError``.
  Second derivatives work, because the backward pass is plain JAX:
  ``jax.hessian`` (forward over reverse) and ``jax.jacrev(jax.jacrev(f))``.

  Labels: integer class ids of any integer dtype, or bool (ids 0 and 1), are
  widened before any index arithmetic, so uint8 label maps give exactly the
  int32 result. Every term :math:`a (\mathrm{lse} - x)` is formed as
  :math:`2\,a\,(\mathrm{lse}/2 - x/2)`, so logits at the float32 range limit
  (±3e38) give finite values wherever the result is representable, and a zero
  target probability never meets an overflowed difference.

  Args:
    logits: unnormalised scores with a class axis.
    labels: integer (or bool) class ids (shape of ``logits`` without ``axis``)
      or probabilities/one-hot (shape of ``logits``).
    axis: the class axis of ``logits``.
    class_weights: optional ``[C]`` non-negative weights, e.g.
      :func:`jaxloss.median_frequency_weights`.
    weights: optional per-element weights (see :func:`jaxloss.reduce_loss`).
    where: optional boolean mask over elements.
    ignore_index: integer label to leave out (e.g. 255 for void pixels).
    label_smoothing: :math:`\varepsilon \in [0, 1]`.
    reduction: see :func:`jaxloss.reduce_loss`.
    axis_name: optional mapped axis name to ``psum`` the reduction over.

  Returns:
    The reduced loss, or per-element losses ``w_i l_i`` for ``"none"``.

  Examples:
    >>> import jax.numpy as jnp
    >>> import jaxloss
    >>> logits = jnp.array([[2.0, 0.0, -1.0], [0.0, 1.0, 0.0]])
    >>> labels = jnp.array([0, 2])
    >>> cw = jnp.array([1.0, 1.0, 4.0])
    >>> round(float(jaxloss.softmax_cross_entropy(
    ...     logits, labels, class_weights=cw, reduction="weighted_mean")), 4)
    1.2751
  """
  _checks.scalar_option("label_smoothing", label_smoothing, low=0.0, high=1.0)
  t = prepare_class_inputs(
      logits, labels, axis=axis, class_weights=class_weights, weights=weights, where=where,
      ignore_index=ignore_index, reduction=reduction)
  eps = float(label_smoothing)
  if t.is_int:
    # Out-of-range labels that are not ignore_index are an error, never dropped: their
    # gathered logit and class weight are NaN (mode="fill"), so the loss is NaN.
    cw_y = None
    if t.class_weights is not None:
      cw_y = take_class(t.class_weights, t.labels)
    loss = _ce_int(t.logits, t.labels, cw_y, t.class_weights, t.axis, eps, t.dtype)
    label_weight = cw_y
  else:
    loss = _ce_prob(t.logits, t.labels, t.class_weights, t.axis, eps, t.dtype)
    label_weight = None
    if t.class_weights is not None:
      cwb = jnp.expand_dims(t.class_weights,
                            tuple(i for i in range(t.logits.ndim) if i != t.axis))
      label_weight = _class_sum(cwb * t.labels, t.axis)
  return _reduce(loss, label_weight, t, reduction, axis_name)


def _reduce(loss, label_weight, t: ClassTargets, reduction, axis_name):
  """Numerators weights·loss, denominators weights·label_weight (both may be absent)."""
  w = t.weights
  if label_weight is not None:
    w = label_weight if w is None else w * label_weight
  wl = loss if t.weights is None else t.weights * loss
  return reduce_weighted(wl, w, t.where, reduction, axis_name)
