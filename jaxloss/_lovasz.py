"""Lovász losses (Berman, Rannen Triki & Blaschko, CVPR 2018): IoU surrogates via sorting.

Both sort errors with :func:`jax.lax.sort`, so shapes stay static and the losses
jit; ignored pixels get an error that sorts them last with no contribution,
instead of being removed by dynamic boolean indexing as in the reference code.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import lax

from jaxloss import _checks
from jaxloss._reduction import reduce_elements, safe_div


def _lovasz_grad(fg_sorted: jax.Array) -> jax.Array:
  """Gradient of the Lovász extension of the Jaccard loss w.r.t. sorted errors.

  With g = Σ fg, the Jaccard loss of the first k pixels predicted foreground is
  J_k = 1 − (g − cumsum(fg)_k) / (g + cumsum(1 − fg)_k); the gradient is its
  increments J_k − J_{k−1} (J_0 = 0). The union is ≥ 1 after the first pixel
  unless g = 0 and the pixel is foreground, impossible, so no division by 0.
  """
  gts = jnp.sum(fg_sorted, axis=-1, keepdims=True)
  intersection = gts - jnp.cumsum(fg_sorted, axis=-1)
  union = gts + jnp.cumsum(1 - fg_sorted, axis=-1)
  jaccard = 1 - safe_div(intersection, union)
  return jnp.concatenate([jaccard[..., :1], jaccard[..., 1:] - jaccard[..., :-1]], axis=-1)


def _descending_key(errors: jax.Array) -> jax.Array:
  """uint32 keys whose ascending order is :func:`lax.sort`'s order of ``-errors``.

  The same total order as ``lax.sort``'s float comparator: -0 equals +0, NaNs
  equal each other and sort after +inf.
  """
  zero = jnp.zeros((), errors.dtype)
  v = jnp.where(errors == 0, zero, -errors)
  v = jnp.where(jnp.isnan(v), jnp.full((), jnp.nan, errors.dtype), v)
  bits = lax.bitcast_convert_type(v, jnp.int32)
  bits = jnp.where(bits < 0, bits ^ jnp.int32(0x7FFFFFFF), bits)
  return lax.bitcast_convert_type(bits, jnp.uint32) ^ jnp.uint32(0x80000000)


def _radix_order(errors: jax.Array) -> jax.Array:
  """The stable descending argsort of f32 ``errors`` over the last axis, by single-key sorts.

  XLA:CPU sorts one array of integers with a plain comparison about 6x faster
  than it sorts a (key, payload) tuple through the comparator. So this sorts
  32-bit words ``digit << b | position`` (``b`` bits hold a position) once per
  ``32 - b``-bit digit of the key, least significant digit first: each sort is
  stable in the digit (ties keep the previous pass's order, by position), so the
  last pass leaves the stable sort of the whole key. Two passes up to 2^16
  elements per row.
  """
  ax, n = errors.ndim - 1, errors.shape[-1]
  b = max(1, (n - 1).bit_length())
  d = 32 - b
  key = _descending_key(errors)
  pos = lax.broadcasted_iota(jnp.uint32, errors.shape, ax)
  src = None  # the original index of each position after the passes so far
  for shift in range(0, 32, d):
    digit = key if src is None else jnp.take_along_axis(key, src, ax, mode="promise_in_bounds")
    digit = digit >> shift if shift + d >= 32 else (digit >> shift) & jnp.uint32((1 << d) - 1)
    # Distinct words (the position), so an unstable sort is exact.
    packed = lax.sort((digit << b) | pos, dimension=ax, is_stable=False)
    p = (packed & jnp.uint32((1 << b) - 1)).astype(jnp.int32)
    src = p if src is None else jnp.take_along_axis(src, p, ax, mode="promise_in_bounds")
  return src


_RADIX_MAX_BITS = 24  # positions up to 2^24 per row: at most 4 passes


def _descending_order(errors: jax.Array) -> jax.Array:
  """The stable argsort of ``errors`` over the last axis, largest first."""
  ax, n = errors.ndim - 1, errors.shape[-1]
  iota = lax.broadcasted_iota(jnp.int32, errors.shape, ax)
  tuple_sort = lambda e: lax.sort((-e, iota), dimension=ax, num_keys=1)[1]  # noqa: E731
  if errors.dtype != jnp.float32 or n < 2 or (n - 1).bit_length() > _RADIX_MAX_BITS:
    return tuple_sort(errors)
  # CPU: the single-key passes win (5.7x the tuple sort on [8, 16384]); GPU and TPU
  # sort key-value tuples natively, so they keep one sort.
  return lax.platform_dependent(errors, cpu=_radix_order, default=tuple_sort)


def _sorted_dot(errors: jax.Array, fg: jax.Array, hinge: bool) -> jax.Array:
  """Σ_k f(error_(k)) · lovasz_grad(fg)_k over the last axis, errors sorted descending."""
  order = _descending_order(lax.stop_gradient(errors))
  fg_sorted = jnp.take_along_axis(fg, order, -1, mode="promise_in_bounds")
  sorted_errors = jnp.take_along_axis(errors, order, -1, mode="promise_in_bounds")
  grad = lax.stop_gradient(_lovasz_grad(fg_sorted))
  value = jax.nn.relu(sorted_errors) if hinge else sorted_errors
  return jnp.sum(value * grad, axis=-1)


def _check_per_image(per_image: bool, weights, axis_name: str | None) -> None:
  if weights is not None and not per_image:
    raise ValueError("`weights` weigh images: they need `per_image=True`.")
  if axis_name is not None and not per_image:
    # The batch-level loss sorts the errors of every pixel of the batch together; a
    # psum of per-shard losses would be a different loss, so refuse instead of guessing.
    raise ValueError(f"`axis_name`={axis_name!r} needs `per_image=True`: the batch-level "
                     "Lovász loss sorts all pixels of the batch together and cannot be "
                     "summed over shards; under jit with a NamedSharding it needs no "
                     "axis_name.")


def _groups(v: jax.Array, per_image: bool) -> jax.Array:  # for the binary hinge
  """``[B, ...]`` to ``[G, P]``: one row per image, or the whole batch as one row."""
  size = _checks.static_size(v.shape[1:])  # B = 0 leaves no -1 to infer
  return v.reshape(v.shape[0], size) if per_image else v.reshape(1, v.shape[0] * size)


def _poison(loss: jax.Array, bad: jax.Array, per_image: bool) -> jax.Array:
  """NaN in every group (image, or the batch) holding an unmasked invalid label.

  Invalid pixels are left out of the sort like ignored ones, so the poison is
  added here: a group whose labels are *all* invalid has no present class and
  would otherwise score 0.
  """
  hit = jnp.any(_groups(bad, per_image), axis=-1)
  return jnp.where(hit, jnp.nan, loss)


def lovasz_softmax_loss(
    predictions: jax.typing.ArrayLike,
    labels: jax.typing.ArrayLike,
    *,
    axis: int = -1,
    activation: str | None = None,
    per_image: bool = False,
    classes: str = "present",
    ignore_index: int | None = None,
    weights: jax.typing.ArrayLike | None = None,
    where: jax.typing.ArrayLike | None = None,
    reduction: str = "mean",
    axis_name: str | None = None,
) -> jax.Array:
  r"""Lovász-softmax loss, a convex surrogate of the per-class Jaccard (IoU) loss.

  For each group (the batch, or each image with ``per_image``) and class c,
  with errors :math:`e_i = |[y_i = c] - p_{ic}|` sorted in decreasing order:

  .. math::
    l_c = \sum_k e_{(k)}\, \Delta J_c(k), \qquad
    l = \operatorname{mean}_{c} l_c

  where :math:`\Delta J_c` are the increments of the Jaccard loss of the
  sorted foreground (``_lovasz_grad``), and the mean runs over the classes
  present in the group's labels (``classes="present"``) or all classes
  (``"all"``). Equals the authors' ``lovasz_softmax(probas, labels,
  classes, per_image, ignore)``; the gradient is that of the sorted errors,
  as in their code.

  Labels of any integer dtype (or bool) give identical results. An unmasked
  label outside ``[0, C)`` that is not ``ignore_index`` makes its group's loss
  NaN (its image with ``per_image``, else the batch), even when no label of
  the group is valid; negative labels never wrap around. Pixels of masked
  images and ``ignore_index`` pixels are left out, as if sliced away: NaN
  predictions there have no effect on the value or the gradient. An empty
  batch (``B = 0``) gives 0 with zero gradient under the scalar reductions.
  :func:`jaxloss.checked` reports unmasked NaN/inf predictions and invalid
  labels.

  Args:
    predictions: probabilities (or logits with ``activation="softmax"``),
      ``[B, ..., C]``.
    labels: integer labels ``[B, ...]`` in ``[0, C)`` or ``ignore_index``.
    axis: the class axis (``C >= 1``).
    activation: ``None`` or ``"softmax"``.
    per_image: one loss per image (then averaged by the reduction) instead of
      one over the batch.
    classes: ``"present"`` or ``"all"``.
    ignore_index: label whose pixels are left out.
    weights: per-image weights ``[B]`` (``per_image=True`` only).
    where: per-image mask ``[B]``: a masked image's pixels are left out.
    reduction: see :func:`jaxloss.reduce_loss`, over the groups.
    axis_name: with ``per_image``, mapped axis to ``psum`` the reduction over;
      without ``per_image`` it raises (the batch-level sort cannot be split).

  Returns:
    The reduced loss; ``reduction="none"`` gives ``[B]`` (``per_image``) or ``[1]``.

  Examples:
    >>> import jax.numpy as jnp
    >>> import jaxloss
    >>> p = jnp.array([[[0.9, 0.1], [0.6, 0.4], [0.2, 0.8]]])
    >>> round(float(jaxloss.lovasz_softmax_loss(p, jnp.array([[0, 1, 1]]))), 4)
    0.3833
  """
  if classes not in ("present", "all"):
    raise ValueError(f"`classes` must be 'present' or 'all'; got {classes!r}.")
  if activation not in (None, "softmax"):
    raise ValueError(f"`activation` must be None or 'softmax'; got {activation!r}.")
  x = _checks.float_input("predictions", predictions)
  y = _checks.integer_input("labels", labels)
  _checks.check_reduction(reduction)
  ignore_index = _checks.check_ignore_index(ignore_index)
  ax = _checks.normalize_axis("axis", axis, x.ndim)
  if ax == 0 or x.ndim < 2:
    raise ValueError(f"`predictions` must be [B, ..., C] with the class axis after the batch "
                     f"axis; got shape {tuple(x.shape)} and axis={axis}.")
  c = _checks.check_axis_size("predictions", x, ax, "class axis")
  if y.shape != x.shape[:ax] + x.shape[ax + 1:]:
    raise ValueError(f"`labels` has shape {tuple(y.shape)}; expected "
                     f"{x.shape[:ax] + x.shape[ax + 1:]}, the shape of `predictions` without "
                     f"its class axis.")
  _check_per_image(per_image, weights, axis_name)
  dtype = _checks.compute_dtype(x)
  w, m = _checks.weights_and_mask(weights, where, (x.shape[0],), dtype, what="per-image loss")
  labelled = jnp.ones(y.shape, bool) if ignore_index is None else y != ignore_index
  if m is not None:
    labelled = labelled & m.reshape((-1,) + (1,) * (y.ndim - 1))
  _checks.check_labels_in_range("labels", y, c, ignore_index, where=labelled)
  x = jnp.moveaxis(x, ax, -1)
  _checks.check_finite("predictions", x, where=labelled[..., None])
  # A label outside [0, C) that is not ignored is never dropped: it poisons its group.
  bad = labelled & _checks.invalid_labels(y, c)
  keep = labelled & ~bad
  # double-where: left-out pixels never reach the softmax (NaN there stays harmless).
  x = jnp.where(keep[..., None], x.astype(dtype), jnp.zeros((), dtype))
  p = jax.nn.softmax(x, axis=-1) if activation == "softmax" else x
  fg = (lax.broadcasted_iota(y.dtype, y.shape + (c,), y.ndim) == y[..., None]).astype(dtype)
  # Left-out pixels get error 0 and no foreground: sorted last, they contribute nothing.
  errors = jnp.where(keep[..., None], jnp.abs(fg - p), 0)
  fg = jnp.where(keep[..., None], fg, 0)
  pixels = _checks.static_size(y.shape[1:])

  # [G, C, P]: per image [B, C, pixels], or the batch as one group [1, C, B * pixels].
  def by_class(v):
    if per_image:
      return jnp.moveaxis(v, -1, 1).reshape(v.shape[0], c, pixels)
    return jnp.moveaxis(v, -1, 0).reshape(1, c, v.shape[0] * pixels)

  errors_g, fg_g = by_class(errors), by_class(fg)
  per_class = _sorted_dot(errors_g, fg_g, hinge=False)  # [G, C]
  present = jnp.sum(fg_g, axis=-1) > 0 if classes == "present" else jnp.ones(per_class.shape,
                                                                             bool)
  group_loss = safe_div(jnp.sum(jnp.where(present, per_class, 0), axis=-1),
                        jnp.sum(present, axis=-1, dtype=dtype))
  group_loss = _poison(group_loss, bad, per_image)
  if not per_image:
    return reduce_elements(group_loss, None, None, reduction)
  return reduce_elements(group_loss, w, m, reduction, axis_name)


def lovasz_hinge_loss(
    logits: jax.typing.ArrayLike,
    labels: jax.typing.ArrayLike,
    *,
    per_image: bool = True,
    ignore_index: int | None = None,
    weights: jax.typing.ArrayLike | None = None,
    where: jax.typing.ArrayLike | None = None,
    reduction: str = "mean",
    axis_name: str | None = None,
) -> jax.Array:
  r"""Binary Lovász hinge loss on logits, a surrogate of the foreground IoU loss.

  With signs :math:`s_i = 2 y_i - 1` and hinge errors :math:`e_i = 1 - x_i
  s_i` sorted in decreasing order,

  .. math::
    l = \sum_k \max(e_{(k)}, 0)\, \Delta J(k)

  per image (``per_image=True``, the authors' default) or over the batch.
  Equals the authors' ``lovasz_hinge(logits, labels, per_image, ignore)``.

  Labels are binary: integer (any dtype, or bool) or floating 0/1. An
  unmasked label that is neither 0 nor 1 (2, -1, 0.5, NaN) and not
  ``ignore_index`` makes its group's loss NaN (its image with ``per_image``,
  else the batch). Pixels of masked images and ``ignore_index`` pixels are
  left out, as if sliced away. An empty batch (``B = 0``) gives 0 with zero
  gradient under the scalar reductions. :func:`jaxloss.checked` reports
  unmasked NaN/inf logits and non-binary labels.

  Args:
    logits: ``[B, ...]`` logits of the foreground.
    labels: binary labels ``[B, ...]`` (integer, bool or float 0/1).
    per_image: one loss per image, or one over the batch.
    ignore_index: integer label whose pixels are left out (any value).
    weights: per-image weights ``[B]`` (``per_image=True`` only).
    where: per-image mask ``[B]``: a masked image's pixels are left out.
    reduction: see :func:`jaxloss.reduce_loss`, over the groups.
    axis_name: with ``per_image``, mapped axis to ``psum`` the reduction over;
      without ``per_image`` it raises (the batch-level sort cannot be split).

  Returns:
    The reduced loss; ``reduction="none"`` gives ``[B]`` (``per_image``) or ``[1]``.

  Examples:
    >>> import jax.numpy as jnp
    >>> import jaxloss
    >>> x = jnp.array([[2.0, -1.0, 0.5, -3.0]])
    >>> round(float(jaxloss.lovasz_hinge_loss(x, jnp.array([[1, 0, 0, 1]]))), 4)
    2.25
  """
  x = _checks.float_input("logits", logits)
  y = _checks.real_input("labels", labels)
  _checks.check_reduction(reduction)
  ignore_index = _checks.check_ignore_index(ignore_index)
  if y.shape != x.shape or x.ndim < 1:
    raise ValueError(f"`labels` has shape {tuple(y.shape)}; expected the shape of `logits` "
                     f"{tuple(x.shape)} with the batch on axis 0.")
  _check_per_image(per_image, weights, axis_name)
  dtype = _checks.compute_dtype(x)
  w, m = _checks.weights_and_mask(weights, where, (x.shape[0],), dtype, what="per-image loss")
  is_ids = _checks.is_class_ids(y)
  if is_ids:
    y = _checks.widen_labels(y)
  labelled = jnp.ones(y.shape, bool) if ignore_index is None else y != ignore_index
  if m is not None:
    labelled = labelled & m.reshape((-1,) + (1,) * (y.ndim - 1))
  # Binary labels are 0 or 1; any other unmasked value (2, -1, 0.5, NaN) poisons its group.
  bad = labelled & (y != 0) & (y != 1)
  if is_ids:
    _checks.check_labels_in_range("labels", y, 2, ignore_index, where=labelled)
  elif _checks.value_checks_enabled() and y.size:
    _checks._check(~jnp.any(bad), "`labels` must be binary (0 or 1) (e.g. {v}).",
                   v=y.reshape(-1)[jnp.argmax(bad.reshape(-1))])
  _checks.check_finite("logits", x, where=labelled)
  keep = labelled & ~bad
  x = jnp.where(keep, x.astype(dtype), jnp.zeros((), dtype))
  fg = jnp.where(keep, y == 1, False).astype(dtype)
  errors = 1 - x * (2 * fg - 1)
  # Left-out pixels: the most negative error sorts them last, and relu zeroes them.
  errors = jnp.where(keep, errors, jnp.finfo(dtype).min)
  loss = _sorted_dot(_groups(errors, per_image), _groups(fg, per_image), hinge=True)
  loss = _poison(loss, bad, per_image)
  if not per_image:
    return reduce_elements(loss, None, None, reduction)
  return reduce_elements(loss, w, m, reduction, axis_name)
