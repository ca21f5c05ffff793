"""Class-axis inputs and helpers shared by the loss families.

``prepare_class_inputs`` checks and masks logits and labels for every
class-axis loss (cross-entropy, focal, CE + Dice, the metrics). The helpers
pick a label's logit or class weight (NaN for an invalid label) and reduce over
a small class axis unrolled; ``match_vma`` sums a hand-written backward pass's
cotangent over the mapped axes its primal does not vary over.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax import lax

from jaxloss import _checks


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


# jnp.argmax is a variadic (value, index) reduce, which XLA:CPU runs as a scalar loop:
# 9.1 ms at [4096, 1000] f32 where a max takes 0.3 ms (value and gradient of the whole
# pseudo-label loss take 13 ms). From this many classes first_argmax finds the index by
# two plain reductions instead: 1.7 ms there, 0.12 against 0.45 ms at [1024, 100], 0.26
# against 0.46 at [8192, 32]; at [65536, 10] jnp.argmax is faster (0.18 against 1.4 ms).
_ARGMAX_BY_MAX_MIN_CLASSES = 32


def first_argmax(x: jax.Array, max_x: jax.Array, axis: int) -> jax.Array:
  """``jnp.argmax(x, axis)`` (int32) given ``max_x = max(x, axis)`` with the axis kept.

  With ranks ``r_k = C − k``, the first maximal index is ``C − max_k r_k·[x_k = max x]``.
  A NaN outranks every number (rank ``r_k + C``), so a row with a NaN gives its first
  NaN, as ``jnp.argmax`` does, whether or not ``max_x`` propagated it. The ranks are
  exact floats below 2^mantissa classes.
  """
  axis = axis % x.ndim
  c = x.shape[axis]
  if c < _ARGMAX_BY_MAX_MIN_CLASSES or c >= 2 ** jnp.finfo(x.dtype).nmant:
    return jnp.argmax(x, axis=axis).astype(jnp.int32)
  rank = c - lax.broadcasted_iota(x.dtype, x.shape, axis)  # C, C − 1, ..., 1
  zero = jnp.zeros((), x.dtype)
  key = jnp.max(jnp.where(jnp.isnan(x), rank + c, jnp.where(x == max_x, rank, zero)), axis=axis)
  return jnp.where(key > c, 2 * c - key, c - key).astype(jnp.int32)


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
