"""Surface metrics on device: Hausdorff distance (HD, HD95), average surface distance, surface Dice.

All three read the same data: for each image ``b`` and class ``c``, the edge
voxels of the predicted mask :math:`\\partial P` and of the label mask
:math:`\\partial G` (a mask minus its erosion by the cross-shaped structuring
element, voxels outside the grid counted as background, as MONAI's
``get_mask_edges``), and the Euclidean distance from every edge voxel of one to
the nearest edge voxel of the other, scaled by ``spacing``. Those distances are
:func:`jaxloss.distance_transform` of :math:`\\lnot\\partial G` read at
:math:`\\partial P` (and the other way round): dense maps with static shapes,
so every metric runs under ``jit`` with no host callback and no boolean
indexing. Percentiles over the variable number of edge voxels sort the map
with non-edge voxels sent to +inf and read it at a traced rank.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from jaxloss import _checks
from jaxloss._distance import check_sampling, distance_transform

_F32 = jnp.float32


def _with_common_args(fn):
  """Fills the shared ``Args`` entries into the docstring's ``{common_args}``."""
  fn.__doc__ = fn.__doc__.replace("{common_args}", _COMMON_ARGS.strip("\n").lstrip())
  return fn


_COMMON_ARGS = """
    predictions: the predicted segmentation: integer class ids ``[B, *spatial]``
      (``num_classes`` required), or one-hot / multi-hot masks ``[B, *spatial,
      C]`` (class axis ``axis``), bool or float holding 0/1. Two or three
      spatial axes; axis 0 is the batch axis.
    labels: the reference segmentation, in either form (independently of
      ``predictions``); it must give the same ``[B, *spatial]`` and ``C``.
    num_classes: the class count ``C``: required for integer ids; for masks it
      is optional and must equal the class axis' size.
    axis: the class axis of mask inputs (not 0); unused for integer ids.
    include_background: False (the default, as MONAI) leaves class 0 out. With
      a single class (``C = 1``) False raises ``ValueError`` (MONAI silently
      keeps the channel).
    spacing: the voxel spacing: one positive number, or one per spatial axis
      in the order of the spatial axes (as MONAI's per-image ``spacing``; one
      spacing for the whole batch). Default 1. Static (Python numbers).
"""


def _spacing(spacing: float | Sequence[float] | None, k: int) -> tuple[float, ...]:
  try:
    return check_sampling(spacing, k)
  except ValueError as e:
    raise ValueError(str(e).replace("`sampling`", "`spacing`")) from None


def _class_masks(name: str, x: jax.typing.ArrayLike, num_classes: int | None, axis: int
                 ) -> tuple[jax.Array, jax.Array | None]:
  """Bool masks ``[B, C, *spatial]`` and where they are invalid (NaN for that image/class)."""
  x = _checks.real_input(name, x)
  shape = tuple(x.shape)
  if jnp.issubdtype(x.dtype, jnp.integer):
    if num_classes is None:
      raise ValueError(f"integer `{name}` of shape {shape} holds class ids and needs "
                       f"`num_classes`; pass bool or float one-hot masks with a class axis "
                       f"otherwise.")
    c = _checks.check_num_classes("num_classes", num_classes)
    if x.ndim not in (3, 4):
      raise ValueError(f"`{name}` has shape {shape}; expected class ids [B, *spatial] with 2 "
                       f"or 3 spatial axes (rank 3 or 4).")
    y = _checks.widen_labels(x)
    _checks.check_labels_in_range(name, y, c)
    k = y.ndim - 1
    m = lax.broadcasted_iota(y.dtype, (1, c) + (1,) * k, 1) == y[:, None]
    bad = jnp.any(_checks.invalid_labels(y, c), axis=tuple(range(1, y.ndim)))
    return m, bad.reshape((-1,) + (1,) * (k + 1))
  if x.ndim not in (4, 5):
    raise ValueError(f"`{name}` has shape {shape}; expected one-hot masks [B, *spatial, C] "
                     f"with 2 or 3 spatial axes and a class axis (rank 4 or 5), or integer "
                     f"class ids [B, *spatial].")
  ax = _checks.normalize_axis("axis", axis, x.ndim)
  if ax == 0:
    raise ValueError(f"`axis` must not be 0: axis 0 of `{name}` is the batch axis.")
  _checks.check_axis_size(name, x, ax, "class axis")
  if num_classes is not None and _checks.check_num_classes("num_classes", num_classes) != (
      shape[ax]):
    raise ValueError(f"`{name}` has shape {shape} with {shape[ax]} classes along "
                     f"`axis`={axis}; expected `num_classes`={num_classes}.")
  x = jnp.moveaxis(x, ax, 1)
  if x.dtype == jnp.bool_:
    return x, None
  m = x == 1
  return m, jnp.any(~(m | (x == 0)), axis=tuple(range(2, x.ndim)), keepdims=True)


def _edges(m: jax.Array, k: int) -> jax.Array:
  """``m`` minus its erosion by the cross (outside the grid is background): scipy's edges."""
  inner = m
  for ax in range(m.ndim - k, m.ndim):
    n = m.shape[ax]
    pad = [(0, 0)] * m.ndim
    pad[ax] = (1, 1)
    p = jnp.pad(m, pad)
    inner = inner & lax.slice_in_dim(p, 0, n, axis=ax) & lax.slice_in_dim(p, 2, n + 2, axis=ax)
  return m & ~inner


class _Surfaces:
  """Edges, edge counts and edge-to-edge distances of every (image, class), ``[B, C, ...]``."""

  def __init__(self, predictions, labels, num_classes, axis, include_background, spacing):
    mp, bad_p = _class_masks("predictions", predictions, num_classes, axis)
    mg, bad_g = _class_masks("labels", labels, num_classes, axis)
    if mp.shape != mg.shape:
      raise ValueError(f"`predictions` (shape {tuple(jnp.shape(predictions))}) and `labels` "
                       f"(shape {tuple(jnp.shape(labels))}) give masks [B, C, *spatial] of "
                       f"shapes {tuple(mp.shape)} and {tuple(mg.shape)}; expected the same.")
    if not include_background:
      if mp.shape[1] == 1:
        raise ValueError(f"`include_background`=False with a single class (masks of shape "
                         f"{tuple(mp.shape)} as [B, C, *spatial]): there is no background to "
                         f"exclude; pass include_background=True.")
      mp, mg = mp[:, 1:], mg[:, 1:]
    k = mp.ndim - 2
    self.spatial = tuple(range(2, mp.ndim))
    bad = [b if b.shape[1] == 1 or include_background else b[:, 1:]
           for b in (bad_p, bad_g) if b is not None]
    self.bad = None if not bad else jnp.any(jnp.stack(jnp.broadcast_arrays(*bad)), axis=0)
    self.ep, self.eg = _edges(mp, k), _edges(mg, k)
    # d[0]: distance to the nearest label edge; d[1]: to the nearest prediction edge.
    d = distance_transform(jnp.stack([~self.eg, ~self.ep]), spatial_dims=k,
                           sampling=_spacing(spacing, k))
    self.d_pg, self.d_gp = d[0], d[1]
    self.n_p = jnp.sum(self.ep, axis=self.spatial, dtype=jnp.int32)
    self.n_g = jnp.sum(self.eg, axis=self.spatial, dtype=jnp.int32)

  def total(self, d: jax.Array, e: jax.Array) -> jax.Array:
    return jnp.sum(jnp.where(e, d, _F32(0)), axis=self.spatial)

  def finish(self, value: jax.Array, both_empty: float, one_empty: float) -> jax.Array:
    """The empty-case rule, then NaN for invalid inputs."""
    none_p, none_g = self.n_p == 0, self.n_g == 0
    value = jnp.where(none_p | none_g, _F32(one_empty), value)
    value = jnp.where(none_p & none_g, _F32(both_empty), value)
    if self.bad is not None:
      value = jnp.where(self.bad.reshape(self.bad.shape[:2]), _F32(jnp.nan), value)
    return value


def _percentile(d: jax.Array, e: jax.Array, n: jax.Array, q: jax.Array) -> jax.Array:
  """The ``q``-quantile of ``d`` over the ``n`` voxels where ``e``: NumPy/torch linear."""
  flat = jnp.where(e, d, _F32(jnp.inf)).reshape(d.shape[:2] + (-1,))
  s = jnp.sort(flat, axis=-1)
  rank = q * (n.astype(_F32) - 1)
  lo, hi = jnp.floor(rank), jnp.ceil(rank)
  w = rank - lo
  last = s.shape[-1] - 1

  def at(r):
    i = jnp.clip(r.astype(jnp.int32), 0, last)
    return jnp.take_along_axis(s, i[..., None], axis=-1)[..., 0]

  a, b = at(lo), at(hi)
  # torch.lerp / NumPy's _lerp: exact at both ends.
  return jnp.where(w < 0.5, a + w * (b - a), b - (b - a) * (1 - w))


@_with_common_args
def hausdorff_distance(
    predictions: jax.typing.ArrayLike,
    labels: jax.typing.ArrayLike,
    *,
    num_classes: int | None = None,
    axis: int = -1,
    include_background: bool = False,
    spacing: float | Sequence[float] | None = None,
    percentile: float | None = None,
    directed: bool = False,
) -> jax.Array:
  r"""Hausdorff distance (or its percentile, HD95) between predicted and label surfaces.

  With :math:`\partial P`, :math:`\partial G` the edge voxels of the predicted
  and label masks of one image and class (see below) and
  :math:`d(x, S) = \min_{y \in S} \lVert s \odot (x - y) \rVert_2` (``s`` the
  ``spacing``),

  .. math::
     \mathrm{HD}_q = \max\Big( Q_q\big\{d(x, \partial G)\big\}_{x \in \partial P},\;
                              Q_q\big\{d(y, \partial P)\big\}_{y \in \partial G} \Big)

  where :math:`Q_q` is the ``percentile`` :math:`q` with NumPy's default linear
  interpolation (the maximum when ``percentile=None``). ``directed=True``
  keeps the first term only (prediction to label). ``percentile=95`` gives the
  HD95 of the segmentation literature.

  **Edges**: a voxel of the mask whose cross-shaped neighbourhood (4 in 2-D,
  6 in 3-D) is not entirely in the mask; voxels outside the grid count as
  background, so a mask touching the border has edges there.

  **Empty masks** (MONAI returns NaN or inf and warns; here the rule is
  explicit):

  * both empty (the class is absent from both): ``0``, the value of any two
    identical masks: the prediction agrees perfectly;
  * exactly one empty: ``inf`` (no surface to reach), also for
    ``directed=True`` and any ``percentile``;
  * invalid input: ``NaN`` for the image when an integer id lies outside
    ``[0, C)`` (every class of that image), or for the image and class when a
    float mask entry is neither 0 nor 1 (NaN included). Never dropped.

  Equals MONAI 1.6.1 ``compute_hausdorff_distance(y_pred, y,
  include_background, "euclidean", percentile, directed, spacing)`` with
  ``y_pred = moveaxis(one_hot(predictions, C), -1, 1)`` (NCHW[D]; likewise
  ``y``), to float32 rounding, on every (image, class) with both masks
  non-empty (tests/peer_data/monai_surface_cases.json). Differences: the empty
  rules above (MONAI: NaN when both are empty; inf when one is empty, but NaN
  for a percentile since it interpolates between infs); ``percentile=0`` is
  the minimum (MONAI treats 0 as ``None``, the maximum); one spacing for the
  batch (MONAI also takes one per image); no ``ignore_index`` and no
  chessboard/taxicab ``distance_metric``.

  Cost: two exact distance transforms per (image, class) (see
  :func:`jaxloss.distance_transform`), plus a sort of the grid per direction
  when ``percentile`` is set. Not differentiable (it acts on masks).

  Args:
    {common_args}
    percentile: ``None`` for the maximum, or a number in ``[0, 100]`` (static
      or traced) for that percentile of each direction's distances.
    directed: True for the one-sided distance from the prediction's surface
      to the label's.

  Returns:
    float32 ``[B, C']`` distances in ``spacing`` units, ``C' = C`` or ``C - 1``
    without background.

  Examples:
    >>> import jax.numpy as jnp, jaxloss
    >>> y = jnp.zeros((1, 8, 8), int).at[0, 2:5, 2:5].set(1)
    >>> p = jnp.zeros((1, 8, 8), int).at[0, 2:5, 3:7].set(1)
    >>> jaxloss.hausdorff_distance(p, y, num_classes=2).tolist()
    [[2.0]]
    >>> jaxloss.hausdorff_distance(p, y, num_classes=2, directed=True,
    ...                            spacing=(1.0, 0.5)).tolist()
    [[1.0]]
  """
  if percentile is not None:
    _checks.scalar_option("percentile", percentile, low=0.0, high=100.0)
  if not isinstance(directed, (bool, np.bool_)):
    raise TypeError(f"`directed` must be a bool; got {directed!r}.")
  s = _Surfaces(predictions, labels, num_classes, axis, include_background, spacing)
  parts = [(s.d_pg, s.ep, s.n_p)] + ([] if directed else [(s.d_gp, s.eg, s.n_g)])
  if percentile is None:
    values = [jnp.max(jnp.where(e, d, _F32(0)), axis=s.spatial) for d, e, _ in parts]
  else:
    q = jnp.asarray(percentile / 100).astype(_F32)
    values = [_percentile(d, e, n, q) for d, e, n in parts]
  value = values[0] if directed else jnp.maximum(*values)
  return s.finish(value, both_empty=0.0, one_empty=jnp.inf)


@_with_common_args
def average_surface_distance(
    predictions: jax.typing.ArrayLike,
    labels: jax.typing.ArrayLike,
    *,
    num_classes: int | None = None,
    axis: int = -1,
    include_background: bool = False,
    spacing: float | Sequence[float] | None = None,
    symmetric: bool = False,
) -> jax.Array:
  r"""Average distance from the predicted surface to the label's (or both ways: ASSD).

  With :math:`\partial P`, :math:`\partial G` and :math:`d(x, S)` as in
  :func:`hausdorff_distance`,

  .. math::
     \mathrm{ASD} = \frac{1}{|\partial P|} \sum_{x \in \partial P} d(x, \partial G),
     \qquad
     \mathrm{ASSD} = \frac{\sum_{x \in \partial P} d(x, \partial G)
                          + \sum_{y \in \partial G} d(y, \partial P)}
                         {|\partial P| + |\partial G|}

  (``symmetric=False`` and ``True``): the mean over the edge voxels, each
  counted once, in ``spacing`` units.

  **Empty masks**: both empty gives ``0`` (perfect agreement); exactly one
  empty gives ``inf``; an invalid input gives ``NaN`` (the rules of
  :func:`hausdorff_distance`).

  Equals MONAI 1.6.1 ``compute_average_surface_distance(y_pred, y,
  include_background, symmetric, "euclidean", spacing)`` with ``y_pred =
  moveaxis(one_hot(predictions, C), -1, 1)`` (likewise ``y``), to float32
  rounding, wherever both masks are non-empty; MONAI gives NaN when both are
  empty and inf when one is. One spacing for the batch; no ``ignore_index``.

  Args:
    {common_args}
    symmetric: True averages over both surfaces (ASSD); False over the
      prediction's surface only.

  Returns:
    float32 ``[B, C']`` mean distances, ``C' = C`` or ``C - 1`` without
    background.

  Examples:
    >>> import jax.numpy as jnp, jaxloss
    >>> y = jnp.zeros((1, 8, 8), int).at[0, 2:5, 2:5].set(1)
    >>> p = jnp.zeros((1, 8, 8), int).at[0, 2:5, 3:7].set(1)
    >>> round(float(jaxloss.average_surface_distance(p, y, num_classes=2)[0, 0]), 4)
    0.9
  """
  if not isinstance(symmetric, (bool, np.bool_)):
    raise TypeError(f"`symmetric` must be a bool; got {symmetric!r}.")
  s = _Surfaces(predictions, labels, num_classes, axis, include_background, spacing)
  total, count = s.total(s.d_pg, s.ep), s.n_p
  if symmetric:
    total, count = total + s.total(s.d_gp, s.eg), count + s.n_g
  value = total / jnp.maximum(count, 1).astype(_F32)
  return s.finish(value, both_empty=0.0, one_empty=jnp.inf)


def _tolerance(tolerance: jax.typing.ArrayLike, n_classes: int) -> jax.Array:
  t = _checks.real_input("tolerance", tolerance)
  if t.ndim == 0:
    _checks.scalar_option("tolerance", tolerance, low=0.0)
    return jnp.broadcast_to(t.astype(_F32), (n_classes,))
  if not isinstance(tolerance, jax.core.Tracer):  # a concrete vector: checked here, as MONAI
    v = np.asarray(tolerance, np.float64)
    if not (np.all(np.isfinite(v)) and np.all(v >= 0)):
      raise ValueError(f"`tolerance` must hold finite values >= 0; got {v.tolist()}.")
  return _checks.per_class_vector("tolerance", t, n_classes, _F32,
                                  " (one per class measured, after dropping the background)")


@_with_common_args
def surface_dice(
    predictions: jax.typing.ArrayLike,
    labels: jax.typing.ArrayLike,
    *,
    tolerance: jax.typing.ArrayLike,
    num_classes: int | None = None,
    axis: int = -1,
    include_background: bool = False,
    spacing: float | Sequence[float] | None = None,
) -> jax.Array:
  r"""Normalised surface Dice: the fraction of both surfaces within ``tolerance`` of the other.

  With :math:`\partial P`, :math:`\partial G` and :math:`d(x, S)` as in
  :func:`hausdorff_distance` and :math:`\tau_c` the class's ``tolerance``,

  .. math::
     \mathrm{NSD} = \frac{\big|\{x \in \partial P : d(x, \partial G) \le \tau_c\}\big|
                        + \big|\{y \in \partial G : d(y, \partial P) \le \tau_c\}\big|}
                       {|\partial P| + |\partial G|}

  in :math:`[0, 1]` (Nikolov et al., "Clinically applicable segmentation of
  head and neck anatomy for radiotherapy", JMIR 2021): each surface is
  measured by its count of edge voxels.

  **Empty masks**: both empty gives ``1`` (perfect agreement, the value of
  any two identical masks); exactly one empty gives ``0`` (no surface element
  lies within tolerance, as MONAI); an invalid input gives ``NaN`` (the rules
  of :func:`hausdorff_distance`).

  Equals MONAI 1.6.1 ``compute_surface_dice(y_pred, y, class_thresholds,
  include_background, "euclidean", spacing, use_subvoxels=False)`` with
  ``y_pred = moveaxis(one_hot(predictions, C), -1, 1)`` (likewise ``y``) and
  ``class_thresholds = tolerance``, wherever at least one mask is non-empty;
  MONAI gives NaN when both are empty. ``use_subvoxels=True`` (DeepMind's
  surface-area weights) is not implemented; one spacing for the batch; no
  ``ignore_index``.

  Args:
    {common_args}
    tolerance: the accepted distance, in ``spacing`` units: a scalar, or one
      per measured class (``[C']``, MONAI's ``class_thresholds``); finite and
      ``>= 0``.

  Returns:
    float32 ``[B, C']`` fractions in ``[0, 1]``, ``C' = C`` or ``C - 1``
    without background.

  Examples:
    >>> import jax.numpy as jnp, jaxloss
    >>> y = jnp.zeros((1, 8, 8), int).at[0, 2:5, 2:5].set(1)
    >>> p = jnp.zeros((1, 8, 8), int).at[0, 2:5, 3:7].set(1)
    >>> round(float(jaxloss.surface_dice(p, y, num_classes=2, tolerance=1.0)[0, 0]), 4)
    0.8333
  """
  s = _Surfaces(predictions, labels, num_classes, axis, include_background, spacing)
  tau = _tolerance(tolerance, s.ep.shape[1]).reshape((1, -1) + (1,) * len(s.spatial))
  hits = (jnp.sum(s.ep & (s.d_pg <= tau), axis=s.spatial, dtype=jnp.int32)
          + jnp.sum(s.eg & (s.d_gp <= tau), axis=s.spatial, dtype=jnp.int32))
  value = hits.astype(_F32) / jnp.maximum(s.n_p + s.n_g, 1).astype(_F32)
  return s.finish(value, both_empty=1.0, one_empty=0.0)
