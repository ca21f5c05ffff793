"""Per-class breakdown of per-element losses: class ids or multi-hot labels."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import lax

from jaxloss import _checks
from jaxloss._class_inputs import _iota_eq
from jaxloss._reduction import safe_div


def class_breakdown(
    losses: jax.typing.ArrayLike,
    labels: jax.typing.ArrayLike,
    num_classes: int,
    *,
    axis: int | None = None,
    members: str = "positives",
    where: jax.typing.ArrayLike | None = None,
    ignore_index: int | None = None,
    axis_name: str | None = None,
) -> jax.Array:
  r"""Mean loss over the elements of each true class: the class that fails stands out.

  **Class ids** (``axis=None``, softmax losses): with ``l`` the per-element
  losses and ``y`` integer labels of the same shape,

  .. math::
    b_c = \frac{\sum_i m_i [y_i = c]\, l_i}{\sum_i m_i [y_i = c]}

  **Multi-hot labels** (``axis`` given, sigmoid losses): ``labels`` holds one
  0/1 (or soft) membership per class along ``axis``, so an element belongs to
  several classes. ``losses`` is either the per-class loss of the same shape
  (``sigmoid_binary_cross_entropy(..., reduction="none")``), read as
  :math:`l_{ic}`, or one loss per element (the shape without ``axis``), read
  as :math:`l_i` for every class. With ``members="positives"`` (default) the
  weights are :math:`u_{ic} = y_{ic}`, the class's own pixels, where a rare
  class's failure shows (a mean over all pixels is dominated by its easy
  negatives); ``"negatives"`` uses :math:`1 - y_{ic}` (false-positive side)
  and ``"all"`` uses 1 (the class's share of the mean loss):

  .. math::
    b_c = \frac{\sum_i m_i u_{ic}\, l_{ic}}{\sum_i m_i u_{ic}}

  In both modes :math:`b_c = 0` for a class with no unmasked member. Log this
  next to the mean loss. Pass a loss's ``reduction="none"`` output: it carries
  the loss's ``weights`` and class weights, so the breakdown of a *weighted*
  loss includes them. Elements with ``where=False`` or ``labels ==
  ignore_index`` are left out (≡ slicing them away). An unmasked class id
  outside ``[0, num_classes)`` that is not ``ignore_index`` belongs to no
  class and is never silently dropped: it makes every entry NaN, the rule of
  the losses and of :func:`jaxloss.confusion_matrix`; so do NaN multi-hot
  labels.

  Args:
    losses: per-element losses: the shape of ``labels`` or, with ``axis``,
      also that shape without ``axis``.
    labels: integer (or bool) class ids; with ``axis``, multi-hot
      memberships (bool, 0/1 integers or floats in [0, 1]).
    num_classes: the number of classes ``C`` (static, ``>= 1``); with
      ``axis``, ``labels.shape[axis]``.
    axis: ``None`` for class ids; the class axis of multi-hot ``labels``.
    members: multi-hot only: ``"positives"``, ``"negatives"`` or ``"all"``.
    where: optional boolean mask over elements (the shape without ``axis``,
      or per element and class with ``axis``; leading-prefix rule).
    ignore_index: class ids only: a label whose elements are left out.
    axis_name: optional mapped axis name to ``psum`` the sums over.

  Returns:
    ``[num_classes]`` float32 per-class mean losses, 0 for absent classes,
    NaN everywhere when an unmasked label is invalid.

  Examples:
    >>> import jax.numpy as jnp
    >>> import jaxloss
    >>> losses = jnp.array([0.1, 0.3, 2.0, 0.2])
    >>> labels = jnp.array([0, 0, 2, 0])
    >>> [round(v, 4) for v in jaxloss.class_breakdown(losses, labels, 4).tolist()]
    [0.2, 0.0, 2.0, 0.0]
    >>> multi_hot = jnp.array([[1, 0], [1, 1], [0, 0]], bool)  # 3 pixels, 2 classes
    >>> per_class = jnp.array([[0.1, 0.2], [0.3, 4.0], [0.2, 0.1]])
    >>> [round(v, 4) for v in jaxloss.class_breakdown(
    ...     per_class, multi_hot, 2, axis=-1).tolist()]
    [0.2, 4.0]
  """
  num_classes = _checks.check_num_classes("num_classes", num_classes)
  if axis is not None:
    return _multilabel_breakdown(losses, labels, num_classes, axis, members, where,
                                 ignore_index, axis_name)
  ignore_index = _checks.check_ignore_index(ignore_index)
  l = _checks.float_input("losses", losses)
  y = _checks.integer_input("labels", labels)
  if l.shape != y.shape:
    raise ValueError(f"`losses` has shape {tuple(l.shape)}; expected the shape of `labels` "
                     f"{tuple(y.shape)}.")
  dtype = _checks.compute_dtype(l)
  _, m = _checks.weights_and_mask(None, where, y.shape, dtype)
  _checks.check_labels_in_range("labels", y, num_classes, ignore_index, where=m)
  if ignore_index is not None:
    keep = y != ignore_index
    m = keep if m is None else jnp.logical_and(m, keep)
  _checks.check_finite("losses", l, where=m)
  l = l.astype(dtype)
  hit = _iota_eq(y, y.shape + (num_classes,), y.ndim)
  bad = _checks.invalid_labels(y, num_classes, ignore_index)
  if m is not None:
    hit = jnp.logical_and(hit, m[..., None])
    bad = jnp.logical_and(bad, m)
  axes = tuple(range(y.ndim))
  total = jnp.sum(jnp.where(hit, l[..., None], jnp.zeros((), dtype)), axis=axes)
  count = jnp.sum(hit, axis=axes, dtype=dtype)
  return _poisoned_ratio(total, count, jnp.sum(bad, dtype=dtype), axis_name)


MEMBERS = ("positives", "negatives", "all")


def _poisoned_ratio(total, count, n_bad, axis_name):
  if axis_name is not None:
    total, count, n_bad = lax.psum((total, count, n_bad), axis_name)
  return jnp.where(n_bad > 0, jnp.nan, safe_div(total, count))


def _multilabel_breakdown(losses, labels, num_classes, axis, members, where, ignore_index,
                          axis_name):
  """:func:`class_breakdown` for multi-hot labels along ``axis``."""
  if members not in MEMBERS:
    raise ValueError(f"`members` must be one of {MEMBERS}; got {members!r}.")
  if ignore_index is not None:
    raise ValueError("`ignore_index` applies to class ids, not to multi-hot labels "
                     "(`axis` given); mask elements with `where`.")
  y = _checks.real_input("labels", labels)
  l = _checks.float_input("losses", losses)
  if y.ndim == 0:
    raise ValueError("multi-hot `labels` need a class axis; got a scalar.")
  ax = _checks.normalize_axis("axis", axis, y.ndim)
  if y.shape[ax] != num_classes:
    raise ValueError(f"multi-hot `labels` has shape {tuple(y.shape)}: {y.shape[ax]} classes "
                     f"along axis {ax}, but `num_classes` is {num_classes}.")
  elem_shape = y.shape[:ax] + y.shape[ax + 1:]
  if l.shape == elem_shape:
    l = jnp.expand_dims(l, ax)  # one loss per element, shared by its classes
  elif l.shape != y.shape:
    raise ValueError(f"`losses` has shape {tuple(l.shape)}; expected the shape of multi-hot "
                     f"`labels` {tuple(y.shape)} or {elem_shape} (without axis {ax}).")
  dtype = _checks.compute_dtype(l, y if jnp.issubdtype(y.dtype, jnp.floating) else None)
  _, m = _checks.weights_and_mask(None, where, y.shape, dtype)
  y = y.astype(dtype)
  _checks.check_finite("labels", y, where=m)
  _checks.check_finite("losses", l, where=m)
  l = l.astype(dtype)
  u = {"positives": y, "negatives": 1 - y, "all": jnp.ones_like(y)}[members]
  bad = jnp.isnan(y) | (y < 0) | (y > 1)  # not a membership: poison, never drop
  if m is not None:
    u = jnp.where(m, u, jnp.zeros((), dtype))
    l = jnp.where(m, l, jnp.zeros((), dtype))
    bad = jnp.logical_and(bad, m)
  u = jnp.where(bad, jnp.zeros((), dtype), u)
  axes = tuple(i for i in range(y.ndim) if i != ax)
  total = jnp.sum(u * l, axis=axes)
  count = jnp.sum(u, axis=axes)
  return _poisoned_ratio(total, count, jnp.sum(bad, dtype=dtype), axis_name)
