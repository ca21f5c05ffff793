"""Exact Euclidean distance transforms on device: the shape-aware losses' foundation.

:func:`signed_distance` builds the boundary loss's per-class signed maps on it.
:func:`distance_transform` is the separable exact algorithm of Saito and
Toriwaki (1994) / Meijster et al. (2000), written with static shapes so that it
runs under ``jit`` on CPU, GPU and TPU with no host callback:

1. along the last spatial axis, the distance in steps to the nearest False
   element of the same line: on CPU two sequential scans of the recurrence
   ``c ← M ? c + 1 : 0`` (forward and backward) vectorised across the lines,
   elsewhere a running max/min of False positions (``lax.platform_dependent``
   picks; both give the same integers);
2. along every further spatial axis, the squared distance is the min-plus
   convolution ``g(i) = min_j f(j) + (s·(i − j))²`` with the previous pass,
   one broadcast-add-reduce (XLA fuses it: no ``[..., n, n]`` temporary).

Both passes are exact in float32 for integer grids (every squared distance
below 2**24 is an integer held exactly), so the result equals
``scipy.ndimage.distance_transform_edt`` to float32 rounding of the final
square root.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import jax
import jax.numpy as jnp
from jax import lax

from jaxloss import _checks


def _spatial_dims(mask: jax.Array, spatial_dims: int) -> int:
  if (not isinstance(spatial_dims, int) or isinstance(spatial_dims, bool)
      or spatial_dims < 1):
    raise ValueError(f"`spatial_dims` must be a positive int; got {spatial_dims!r}.")
  if mask.ndim < spatial_dims:
    raise ValueError(f"`mask` has shape {tuple(mask.shape)} (rank {mask.ndim}), fewer axes "
                     f"than `spatial_dims`={spatial_dims} spatial axes; expected rank >= "
                     f"{spatial_dims} (leading axes are batch axes).")
  return spatial_dims


def check_sampling(sampling: float | Sequence[float] | None, spatial_dims: int
                   ) -> tuple[float, ...]:
  """The per-axis spacing as a tuple of positive finite floats (one per spatial axis)."""
  if sampling is None:
    return (1.0,) * spatial_dims
  if isinstance(sampling, (int, float)) and not isinstance(sampling, bool):
    values: tuple = (sampling,) * spatial_dims
  else:
    try:
      if isinstance(sampling, (str, bytes)):
        raise TypeError
      values = tuple(sampling)  # type: ignore[arg-type]
    except TypeError:
      raise ValueError(f"`sampling` must be a positive number or a sequence of "
                       f"{spatial_dims} positive numbers; got {sampling!r}.") from None
  if len(values) != spatial_dims:
    raise ValueError(f"`sampling` has {len(values)} entries; expected one per spatial axis "
                     f"({spatial_dims}).")
  out = []
  for v in values:
    try:
      f = float(v)
    except (TypeError, ValueError, jax.errors.ConcretizationTypeError):
      raise ValueError(f"`sampling` must hold static positive numbers (voxel spacing); "
                       f"got {sampling!r}.") from None
    if not (math.isfinite(f) and f > 0):
      raise ValueError(f"`sampling` entries must be positive and finite; got {sampling!r}.")
    out.append(f)
  return tuple(out)


def _steps_running(m: jax.Array) -> jax.Array:
  """Steps to the nearest False along the last axis from a running max/min of False indices."""
  idx = lax.broadcasted_iota(jnp.float32, m.shape, m.ndim - 1)
  last = lax.cummax(jnp.where(m, -jnp.inf, idx), axis=m.ndim - 1)
  nxt = lax.cummin(jnp.where(m, jnp.inf, idx), axis=m.ndim - 1, reverse=True)
  return jnp.minimum(idx - last, nxt - idx)  # inf where the line has no False element


def _steps_scan(m: jax.Array) -> jax.Array:
  """The same from two sequential scans along the lines (on CPU several times faster)."""
  lines = jnp.moveaxis(m, -1, 0)

  def step(c, row):
    c = jnp.where(row, c + 1, jnp.float32(0))
    return c, c

  # No False yet: inf. Built from the input so it varies like it under shard_map.
  init = jnp.where(lines[0], jnp.float32(jnp.inf), jnp.float32(jnp.inf))
  _, left = lax.scan(step, init, lines)
  _, right = lax.scan(step, init, lines, reverse=True)
  return jnp.moveaxis(jnp.minimum(left, right), 0, -1)


def _nearest_false_sq(m: jax.Array, spacing: float) -> jax.Array:
  """Pass 1 along the last axis: (spacing · steps to the nearest False in the line)²."""
  # A 256-step scan is cheap on CPU but costs a launch per step on GPU/TPU.
  steps = lax.platform_dependent(m, cpu=_steps_scan, default=_steps_running)
  return jnp.square(steps * spacing)


def _min_plus(f: jax.Array, spacing: float) -> jax.Array:
  """``g[..., i] = min_j f[..., j] + (spacing·(i − j))²`` along the last axis (exact)."""
  n = f.shape[-1]
  i = jnp.arange(n, dtype=jnp.float32)
  w = jnp.square((i[:, None] - i[None, :]) * spacing)  # [n_out, n_in], a constant
  # The barrier keeps two passes with the same (n, spacing) from sharing one `w`: XLA
  # then materialised its broadcast to [..., n, n] for both (662 MiB at [2, 96, 96, 96]).
  w, f = lax.optimization_barrier((w, f))
  w = w.reshape((1,) * (f.ndim - 1) + (n, n))  # explicit broadcast (strict rank promotion)
  return jnp.min(f[..., None, :] + w, axis=-1)


def _no_background_value(shape: Sequence[int], sampling: Sequence[float]) -> float:
  """The value of every element when there is no False element at all (see docstring)."""
  return math.sqrt(sum((n * s) ** 2 for n, s in zip(shape, sampling, strict=True)))


def squared_distance_transform(mask: jax.Array, sampling: tuple[float, ...]) -> jax.Array:
  """The squared EDT over the last ``len(sampling)`` axes of a bool ``mask`` (inf: no False)."""
  k = len(sampling)
  nd = mask.ndim
  axes = list(range(nd - k, nd))
  # Pass 1 along the last spatial axis, then min-plus along the others.
  f = _nearest_false_sq(mask, sampling[-1])
  for ax in reversed(axes[:-1]):
    f = jnp.moveaxis(_min_plus(jnp.moveaxis(f, ax, -1), sampling[ax - (nd - k)]), -1, ax)
  return f


def distance_transform(
    mask: jax.typing.ArrayLike,
    *,
    spatial_dims: int = 2,
    sampling: float | Sequence[float] | None = None,
) -> jax.Array:
  r"""Exact Euclidean distance from each True element to the nearest False element.

  .. math::
     D(x) = \min_{y:\ \lnot M(y)} \Big(\sum_k \big(s_k (x_k - y_k)\big)^2\Big)^{1/2}
     \quad (M(x)\ \text{True}), \qquad D(x) = 0 \quad (M(x)\ \text{False}),

  over the last ``spatial_dims`` axes of ``mask``; leading axes are batch axes,
  each transformed on its own. ``s`` is ``sampling`` (the voxel spacing).

  Equals ``scipy.ndimage.distance_transform_edt(mask[b], sampling=sampling)``
  for each batch index ``b`` to float32 rounding, whenever ``mask[b]`` holds at
  least one False element.

  **No background.** When a grid has no False element, every element gets the
  grid's diagonal extent :math:`\sqrt{\sum_k (n_k s_k)^2}`, a finite value
  larger than any distance a grid with background can hold (the farthest
  in-grid pair is :math:`\sqrt{\sum_k ((n_k - 1) s_k)^2}` apart). scipy returns
  distances to a phantom background outside its first row instead.

  **No gradient.** The input is a boolean mask (labels, or thresholded
  predictions); the output is a constant to autodiff.

  Args:
    mask: bool array ``[..., *spatial]``; integer 0/1 masks are refused (pass
      ``mask != 0``).
    spatial_dims: how many trailing axes are spatial (2 for images, 3 for
      volumes).
    sampling: the spacing along each spatial axis: one positive number, or one
      per spatial axis (as scipy's ``sampling``). Default 1.

  Returns:
    float32 distances with ``mask``'s shape.

  Algorithm: separable and exact (Saito & Toriwaki 1994; Meijster et al.
  2000); the first pass finds the nearest False element along each line of
  the last axis, each further pass an exact min-plus convolution with
  :math:`(s\,\Delta)^2`. Cost: :math:`O(N \sum_{k < d} n_k)` for N
  elements and spatial sizes :math:`n_1 \dots n_d`; static shapes, no host callback.

  >>> import jax.numpy as jnp, jaxloss
  >>> m = jnp.array([[0, 1, 1, 1, 0]], bool)
  >>> jaxloss.distance_transform(m).tolist()
  [[0.0, 1.0, 2.0, 1.0, 0.0]]
  """
  mask = _checks.bool_input("mask", mask)
  k = _spatial_dims(mask, spatial_dims)
  spacing = check_sampling(sampling, k)
  sq = squared_distance_transform(mask, spacing)
  fill = _no_background_value(mask.shape[mask.ndim - k:], spacing)
  return jnp.sqrt(jnp.where(jnp.isinf(sq), jnp.float32(fill * fill), sq))


def _check_spatial_dims(spatial_dims, expected: int, shape: tuple[int, ...], what: str) -> None:
  if spatial_dims is None:
    return
  if (not isinstance(spatial_dims, int) or isinstance(spatial_dims, bool)
      or spatial_dims != expected):
    raise ValueError(f"`spatial_dims`={spatial_dims!r} disagrees with `labels_or_masks` of shape "
                     f"{shape} ({what}): every axis but the batch axis 0 and the class axis is "
                     f"spatial, so expected {expected} (or None).")


def id_masks(y: jax.Array, c: int, ignore_index: int | None) -> jax.Array:
  """Bool class masks ``[B, C, *spatial]`` of widened ids ``[B, *spatial]``.

  An ignored id belongs to no class, also inside ``[0, C)``; an invalid id to none.
  """
  m = lax.broadcasted_iota(y.dtype, (1, c) + (1,) * (y.ndim - 1), 1) == y[:, None]
  if ignore_index is not None:
    m = m & (y != ignore_index)[:, None]
  return m


def _signed(m: jax.Array, sampling: tuple[float, ...]) -> jax.Array:
  """φ of bool masks ``[B, C, *spatial]``: ``where(M, 1 − EDT(M), EDT(¬M))``, 0 if M is empty."""
  k = len(sampling)
  spatial = tuple(range(m.ndim - k, m.ndim))
  fill = _no_background_value(m.shape[m.ndim - k:], sampling)

  def edt(mask):
    sq = squared_distance_transform(mask, sampling)
    return jnp.sqrt(jnp.where(jnp.isinf(sq), jnp.float32(fill * fill), sq))

  # EDT(M) and EDT(¬M) as two independent transforms rather than one on the stacked
  # masks: XLA:CPU runs the two concurrently (as in _shape_losses._distance_fields).
  phi = jnp.where(m, 1 - edt(m), edt(~m))
  present = jnp.any(m, axis=spatial, keepdims=True)
  return jnp.where(present, phi, jnp.float32(0))


def signed_distance(
    labels_or_masks: jax.typing.ArrayLike,
    *,
    num_classes: int | None = None,
    axis: int = -1,
    spatial_dims: int | None = None,
    sampling: float | Sequence[float] | None = None,
    ignore_index: int | None = None,
) -> jax.Array:
  r"""Per-class signed distance maps: negative inside a class, positive outside.

  For each image ``b`` and class ``c`` with ground-truth mask :math:`M`
  (:math:`M(x)` : pixel ``x`` belongs to ``c``),

  .. math::
     \phi = D(\lnot M)\,[\lnot M] - \big(D(M) - 1\big)\,[M],

  where :math:`D` is :func:`distance_transform` (each True element's distance
  to the nearest False one, scaled by ``sampling``). Outside the class
  :math:`\phi` is the distance to the nearest class pixel; inside it is one
  minus the distance to the nearest non-class pixel (0 on the inner boundary,
  negative deeper in). This is the boundary loss's level-set map.

  * **Absent class** (:math:`M` all False in an image): :math:`\phi = 0` on
    that image, as in the authors' code (another class supervises its pixels).
  * **Class filling the image**: :math:`\phi = -(D(M) - 1)` with
    :func:`distance_transform`'s no-background rule (every pixel at the grid's
    diagonal extent :math:`\sqrt{\sum_k (n_k s_k)^2}`), a finite constant.
  * **ignore_index** (integer ids only): an ignored pixel belongs to no class;
    it is outside every class mask (positive :math:`\phi` for every present
    class, 0 for absent ones).
  * **Invalid labels**: an id outside ``[0, num_classes)`` that is not
    ``ignore_index`` gives NaN for *every* class of *that image* (the pixel's
    class is unknown, and it moves every class's boundary); other images are
    unaffected. A float mask entry other than 0 or 1 (NaN included) gives NaN
    for that image and class.
  * **No gradient**: the result is wrapped in ``lax.stop_gradient`` (it acts
    on labels); differentiate through the predictions it multiplies.

  Equals the authors' ``one_hot2dist(seg, resolution=sampling)`` of the
  boundary loss (Kervadec et al., "Boundary loss for highly unbalanced
  segmentation", MIDL 2019 / MedIA 2021; ``utils.py`` of
  github.com/LIVIAETS/boundary-loss), applied to each image's one-hot
  ``seg[k] = M_k``, with the class axis moved to ``axis``, to float32
  rounding. Differences: a class filling the whole image uses the
  no-background rule above (scipy measures to a phantom background); multi-hot
  masks are accepted (``one_hot2dist`` asserts one-hot).

  Args:
    labels_or_masks: integer class ids ``[B, *spatial]`` (``num_classes``
      required; the output gets a class axis at ``axis``), or one-hot /
      multi-hot masks with a class axis ``axis``: bool, or float holding 0/1.
      Axis 0 is the batch axis; every other axis but the class axis is spatial.
    num_classes: the class count ``C``: required for integer ids; for masks it
      is optional and must equal the class axis' size.
    axis: the class axis of the output (and of mask inputs); not 0.
    spatial_dims: optional check: the number of spatial axes, which must be the
      rank of the output minus 2.
    sampling: the spacing along each spatial axis: one positive number, or one
      per spatial axis (as scipy's ``sampling``). Default 1.
    ignore_index: a class id (integer ids only) whose pixels belong to no class.

  Returns:
    float32 ``φ`` of shape ``[B, ..., C, ...]`` (class axis at ``axis``): the
    input's shape for masks, ``labels`` with a class axis inserted for ids.

  >>> import jax.numpy as jnp, jaxloss
  >>> phi = jaxloss.signed_distance(jnp.array([[0, 1, 1, 1, 0]]), num_classes=2)
  >>> phi[0, :, 1].tolist(), phi[0, :, 0].tolist()
  ([1.0, 0.0, -1.0, 0.0, 1.0], [0.0, 1.0, 2.0, 1.0, 0.0])
  """
  y = _checks.real_input("labels_or_masks", labels_or_masks)
  ignore_index = _checks.check_ignore_index(ignore_index)
  is_ids = bool(jnp.issubdtype(y.dtype, jnp.integer))
  shape = tuple(y.shape)
  if is_ids:
    if num_classes is None:
      raise ValueError(f"integer `labels_or_masks` of shape {shape} holds class ids and needs "
                       f"`num_classes`; pass bool masks with a class axis otherwise.")
    c = _checks.check_num_classes("num_classes", num_classes)
    out_ndim = y.ndim + 1
    what = "integer ids [B, *spatial]"
  else:
    if ignore_index is not None:
      raise ValueError("`ignore_index` only applies to integer labels.")
    out_ndim = y.ndim
    what = "masks [B, *spatial] with a class axis"
  if out_ndim < 3:
    raise ValueError(f"`labels_or_masks` has shape {shape}; expected {what} with at least one "
                     f"spatial axis (rank >= {2 if is_ids else 3}).")
  ax = _checks.normalize_axis("axis", axis, out_ndim)
  if ax == 0:
    raise ValueError("`axis` must not be 0: axis 0 of `labels_or_masks` is the batch axis.")
  k = out_ndim - 2
  _check_spatial_dims(spatial_dims, k, shape, what)
  spacing = check_sampling(sampling, k)
  spatial = tuple(range(2, out_ndim))  # of the working layout [B, C, *spatial]
  if is_ids:
    y = _checks.widen_labels(y)
    _checks.check_labels_in_range("labels_or_masks", y, c, ignore_index)
    m = id_masks(y, c, ignore_index)
    bad = jnp.any(_checks.invalid_labels(y, c, ignore_index), axis=tuple(range(1, y.ndim)))
    bad = bad.reshape((-1,) + (1,) * (k + 1))
  else:
    y = jnp.moveaxis(y, ax, 1)
    if num_classes is not None and _checks.check_num_classes("num_classes", num_classes) != (
        y.shape[1]):
      raise ValueError(f"`labels_or_masks` has shape {shape} with {y.shape[1]} classes along "
                       f"`axis`={axis}; expected `num_classes`={num_classes}.")
    if y.dtype == jnp.bool_:
      m, bad = y, None
    else:
      m = y == 1
      bad = jnp.any(~(m | (y == 0)), axis=spatial, keepdims=True)
  phi = _signed(m, spacing)
  if bad is not None:
    phi = jnp.where(bad, jnp.float32(jnp.nan), phi)
  return lax.stop_gradient(jnp.moveaxis(phi, 1, ax))
