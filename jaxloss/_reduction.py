"""The single reduction core: how weights, masks and the batch combine.

Every loss in jaxloss computes per-element losses ``l`` and hands them, with
the broadcast weights ``w`` and mask ``m``, to :func:`reduce_elements`. All the
denominators of the library live here.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import lax

from jaxloss import _checks


def safe_div(num: jax.Array, den: jax.Array) -> jax.Array:
  """``num / den``, and 0 with zero gradient where ``den == 0``.

  The inner ``where`` keeps the division away from 0/0, so the backward pass
  never forms ``0 * inf`` (the double-``where`` pattern).
  """
  nonzero = den != 0
  return jnp.where(nonzero, num / jnp.where(nonzero, den, 1), 0)


def _psum(x: jax.Array | float, axis_name: str | None) -> jax.Array | float:
  return x if axis_name is None else lax.psum(x, axis_name)


def reduce_elements(
    losses: jax.Array,
    weights: jax.Array | None,
    where: jax.Array | None,
    reduction: str,
    axis_name: str | None = None,
) -> jax.Array:
  """Reduces already-checked per-element ``losses``.

  ``weights`` and ``where`` are ``None`` or already broadcast to
  ``losses.shape``. Masked elements are selected away with ``jnp.where``, so a
  NaN or inf loss under the mask contributes neither value nor gradient (the
  loss itself must also keep masked *inputs* out of its arithmetic, which each
  loss does before calling this).
  """
  if where is not None:
    # Masked losses leave before they meet a weight: w·NaN would send NaN to the
    # gradient of w (and 0·NaN to the loss's inputs) even under the outer select.
    losses = jnp.where(where, losses, jnp.zeros((), losses.dtype))
  weighted = losses if weights is None else weights * losses
  return reduce_weighted(weighted, weights, where, reduction, axis_name)


def reduce_weighted(
    weighted_losses: jax.Array,
    weights: jax.Array | None,
    where: jax.Array | None,
    reduction: str,
    axis_name: str | None = None,
) -> jax.Array:
  """The reduction core, on losses that already carry their weights.

  ``weighted_losses`` are the numerator terms :math:`w_i l_i`; ``weights`` are
  the :math:`w_i` that enter the ``"weighted_mean"`` and
  ``"sum_by_nonzero_weights"`` denominators. They are passed separately because
  a loss may weight its numerator differently from its normaliser (label
  smoothing with class weights does, as in torch).
  """
  dtype = weighted_losses.dtype
  wl = weighted_losses
  if where is not None:
    wl = jnp.where(where, wl, jnp.zeros((), dtype))
  if reduction == "none":
    return wl
  num = _psum(jnp.sum(wl), axis_name)
  if reduction == "sum":
    return num
  return safe_div(num, denominator(weights, where, wl.shape, dtype, reduction, axis_name))


def denominator(
    weights: jax.Array | None,
    where: jax.Array | None,
    shape: tuple[int, ...],
    dtype: jnp.dtype,
    reduction: str,
    axis_name: str | None = None,
) -> jax.Array:
  """The denominator of a scalar ``reduction`` over losses of ``shape`` (1 for "sum")."""
  if reduction == "sum":
    return jnp.ones((), dtype)
  if reduction == "mean" or weights is None:
    # Keras "sum_over_batch_size": divide by the number of unmasked elements.
    # Without weights, "weighted_mean" and "sum_by_nonzero_weights" are this too.
    terms = None if where is None else where
  elif reduction == "weighted_mean":
    # PyTorch weighted mean / TF1 MEAN: divide by the total (unmasked) weight.
    terms = weights if where is None else jnp.where(where, weights, jnp.zeros((), dtype))
  elif reduction == "sum_by_nonzero_weights":
    # TF1 default: divide by the number of elements whose effective weight is non-zero.
    terms = weights != 0 if where is None else jnp.logical_and(weights != 0, where)
  else:  # pragma: no cover - guarded by check_reduction
    raise ValueError(reduction)
  return _psum(_full_sum(terms, shape, dtype), axis_name)


def reduction_coefficients(
    weights: jax.Array | None,
    where: jax.Array | None,
    shape: tuple[int, ...],
    dtype: jnp.dtype,
    reduction: str,
    axis_name: str | None = None,
) -> jax.Array:
  """``c`` with ``reduce_weighted(w * l, w, m, reduction) == psum(Σ c·l)`` for any ``l``.

  A scalar reduction is linear in the losses; fused kernels use these
  coefficients (compact: size-1 axes where they broadcast) to form the value
  and its gradient ``c`` in one pass. Masked entries have coefficient 0.
  """
  c = jnp.ones((1,) * len(shape), dtype) if weights is None else weights
  if where is not None:
    c = jnp.where(where, c, jnp.zeros((), dtype))
  return safe_div(c, denominator(weights, where, shape, dtype, reduction, axis_name))


def _full_sum(terms: jax.Array | None, shape: tuple[int, ...], dtype: jnp.dtype) -> jax.Array:
  """Σ over ``shape`` of ``terms`` broadcast to it (1 if None), without broadcasting.

  ``terms`` has size-1 axes where it broadcasts, so the full sum is its own sum
  times the number of times each entry repeats.
  """
  full = _checks.static_size(shape)
  if terms is None:
    return jnp.asarray(full, dtype)
  size = _checks.static_size(terms.shape)
  if full == 0 or size == 0:
    # An empty batch: nothing to sum, and the documented zero-denominator rule applies.
    return jnp.sum(terms, dtype=dtype) * jnp.zeros((), dtype)
  return jnp.sum(terms, dtype=dtype) * jnp.asarray(full // size, dtype)


def reduce_loss(
    losses: jax.typing.ArrayLike,
    *,
    weights: jax.typing.ArrayLike | None = None,
    where: jax.typing.ArrayLike | None = None,
    reduction: str = "mean",
    axis_name: str | None = None,
) -> jax.Array:
  r"""Reduces per-element losses with weights, a mask and a named reduction.

  Let :math:`l` be ``losses``, :math:`w` the ``weights`` broadcast to it (1 if
  absent) and :math:`m` the boolean ``where`` mask broadcast to it (True if
  absent). Then

  ``"none"``
    :math:`w\,m\,l`, the shape of ``losses``.
  ``"sum"``
    :math:`\sum w m l`; torch and Keras ``"sum"``, TF1 ``SUM``.
  ``"mean"``
    :math:`\sum w m l / \sum m`; Keras ``"sum_over_batch_size"``, TF1
    ``SUM_OVER_BATCH_SIZE``.
  ``"weighted_mean"``
    :math:`\sum w m l / \sum w m`; torch ``"mean"`` with ``weight=``, TF1
    ``MEAN``, Keras ``"mean_with_sample_weight"``.
  ``"sum_by_nonzero_weights"``
    :math:`\sum w m l / \#\{w m \ne 0\}`; TF1 ``SUM_BY_NONZERO_WEIGHTS``, its
    default.

  Without a mask, the ``"mean"`` denominator is the element count (not the
  batch size). Without weights, ``"weighted_mean"`` and
  ``"sum_by_nonzero_weights"`` equal ``"mean"``.

  Rules:

  * A zero denominator (everything masked, all weights zero) gives 0 with
    zero gradients, never NaN.
  * Masked elements contribute exactly zero value and zero gradient, even
    when their loss is NaN or inf.
  * With ``axis_name``, numerators and denominators are ``psum``-ed over that
    named axis, so a reduction inside ``shard_map`` or ``pmap`` over a sharded
    batch equals the unsharded one.
  * ``weights`` and ``where`` may be scalars, the full shape, a *leading*
    prefix of it (one value per example), or the same rank with size-1 axes.
    Lower-rank arrays are aligned on the leading axes, never the trailing ones.

  Args:
    losses: per-element losses, any floating dtype.
    weights: non-negative weights broadcastable to ``losses`` as above.
    where: boolean mask broadcastable to ``losses``; False removes an element
      from numerator and denominator.
    reduction: one of ``"none"``, ``"sum"``, ``"mean"``, ``"weighted_mean"``,
      ``"sum_by_nonzero_weights"``.
    axis_name: optional mapped axis name to ``psum`` over.

  Returns:
    A scalar, or the weighted masked losses for ``reduction="none"``; float32
    (float64 for float64 inputs under x64).

  Examples:
    >>> import jax.numpy as jnp
    >>> import jaxloss
    >>> losses = jnp.array([1.0, 2.0, 3.0, 4.0])
    >>> weights = jnp.array([0.0, 1.0, 1.0, 3.0])
    >>> for r in ("sum", "mean", "weighted_mean", "sum_by_nonzero_weights"):
    ...   print(r, round(float(jaxloss.reduce_loss(losses, weights=weights, reduction=r)), 4))
    sum 17.0
    mean 4.25
    weighted_mean 3.4
    sum_by_nonzero_weights 5.6667
  """
  l = _checks.float_input("losses", losses)
  _checks.check_reduction(reduction)
  dtype = _checks.compute_dtype(l)
  w, m = _checks.weights_and_mask(weights, where, l.shape, dtype)
  _checks.check_finite("losses", l, where=m)
  l = l.astype(dtype)
  return reduce_elements(l, w, m, reduction, axis_name)
