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


def _sorted_dot(errors: jax.Array, fg: jax.Array, hinge: bool) -> jax.Array:
  """Σ_k f(error_(k)) · lovasz_grad(fg)_k over the last axis, errors sorted descending."""
  neg_sorted, fg_sorted = lax.sort((-errors, fg), dimension=errors.ndim - 1, num_keys=1)
  sorted_errors = -neg_sorted
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
  return v.reshape(v.shape[0], -1) if per_image else v.reshape(1, -1)


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

  Args:
    predictions: probabilities (or logits with ``activation="softmax"``),
      ``[B, ..., C]``.
    labels: integer labels ``[B, ...]``.
    axis: the class axis.
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
  x = _checks.float_input("predictions", predictions)
  y = _checks.integer_input("labels", labels)
  _checks.check_reduction(reduction)
  ax = _checks.normalize_axis("axis", axis, x.ndim)
  if ax == 0 or x.ndim < 2:
    raise ValueError(f"`predictions` must be [B, ..., C] with the class axis after the batch "
                     f"axis; got shape {tuple(x.shape)} and axis={axis}.")
  c = x.shape[ax]
  if y.shape != x.shape[:ax] + x.shape[ax + 1:]:
    raise ValueError(f"`labels` has shape {tuple(y.shape)}; expected "
                     f"{x.shape[:ax] + x.shape[ax + 1:]}, the shape of `predictions` without "
                     f"its class axis.")
  _check_per_image(per_image, weights, axis_name)
  dtype = _checks.compute_dtype(x)
  w, m = _checks.weights_and_mask(weights, where, (x.shape[0],), dtype, what="per-image loss")
  _checks.check_labels_in_range("labels", y, c, ignore_index)
  x = jnp.moveaxis(x.astype(dtype), ax, -1)
  keep = jnp.ones(y.shape, bool) if ignore_index is None else y != ignore_index
  if m is not None:
    keep = keep & m.reshape((-1,) + (1,) * (y.ndim - 1))
  x = jnp.where(keep[..., None], x, 0)  # double-where: masked pixels never reach softmax
  p = jax.nn.softmax(x, axis=-1) if activation == "softmax" else x
  if activation not in (None, "softmax"):
    raise ValueError(f"`activation` must be None or 'softmax'; got {activation!r}.")
  fg = (lax.broadcasted_iota(y.dtype, y.shape + (c,), y.ndim) == y[..., None]).astype(dtype)
  # A label outside [0, C) that is not ignored is never dropped: it poisons the loss.
  bad = keep & ((y < 0) | (y >= c))
  # Left-out pixels get error 0 and no foreground: sorted last, they contribute nothing.
  errors = jnp.where(keep[..., None], jnp.abs(fg - p), 0)
  errors = jnp.where(bad[..., None], jnp.nan, errors)
  fg = jnp.where(keep[..., None], fg, 0)
  # [G, C, P]: per image [B, C, pixels], or the batch as one group [1, C, B * pixels].
  def by_class(v):
    if per_image:
      return jnp.moveaxis(v, -1, 1).reshape(v.shape[0], c, -1)
    return jnp.moveaxis(v, -1, 0).reshape(1, c, -1)

  errors_g, fg_g = by_class(errors), by_class(fg)
  per_class = _sorted_dot(errors_g, fg_g, hinge=False)  # [G, C]
  present = jnp.sum(fg_g, axis=-1) > 0 if classes == "present" else jnp.ones(per_class.shape,
                                                                             bool)
  group_loss = safe_div(jnp.sum(jnp.where(present, per_class, 0), axis=-1),
                        jnp.sum(present, axis=-1, dtype=dtype))
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

  Args:
    logits: ``[B, ...]`` logits of the foreground.
    labels: binary labels ``[B, ...]`` (integer or float 0/1).
    per_image: one loss per image, or one over the batch.
    ignore_index: integer label whose pixels are left out.
    weights: per-image weights ``[B]`` (``per_image=True`` only).
    where: per-image mask ``[B]``.
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
  if y.shape != x.shape or x.ndim < 1:
    raise ValueError(f"`labels` has shape {tuple(y.shape)}; expected the shape of `logits` "
                     f"{tuple(x.shape)} with the batch on axis 0.")
  _check_per_image(per_image, weights, axis_name)
  dtype = _checks.compute_dtype(x)
  w, m = _checks.weights_and_mask(weights, where, (x.shape[0],), dtype, what="per-image loss")
  keep = jnp.ones(y.shape, bool) if ignore_index is None else y != ignore_index
  if m is not None:
    keep = keep & m.reshape((-1,) + (1,) * (y.ndim - 1))
  x = jnp.where(keep, x.astype(dtype), 0)
  fg = jnp.where(keep, y, 0).astype(dtype)
  errors = 1 - x * (2 * fg - 1)
  # Left-out pixels: the most negative error sorts them last, and relu zeroes them.
  errors = jnp.where(keep, errors, jnp.finfo(dtype).min)
  loss = _sorted_dot(_groups(errors, per_image), _groups(fg, per_image), hinge=True)
  if not per_image:
    return reduce_elements(loss, None, None, reduction)
  return reduce_elements(loss, w, m, reduction, axis_name)
