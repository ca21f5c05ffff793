"""Masked metrics that share the losses' label and masking rules."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import lax

from jaxloss import _checks
from jaxloss._classification import prepare_class_inputs
from jaxloss._reduction import reduce_elements, safe_div


def accuracy(
    logits: jax.typing.ArrayLike,
    labels: jax.typing.ArrayLike,
    *,
    axis: int = -1,
    where: jax.typing.ArrayLike | None = None,
    ignore_index: int | None = None,
    axis_name: str | None = None,
) -> jax.Array:
  r"""Masked top-1 accuracy; unlabeled elements are left out, not counted as errors.

  .. math::
    \mathrm{acc} = \frac{\sum_i m_i\, [\arg\max_k x_{ik} = y_i]}{\sum_i m_i},
    \qquad 0 \text{ if } \sum_i m_i = 0

  where :math:`m_i` is ``where`` and the element is labeled: an integer label
  that is not ``ignore_index``, or a one-hot (probability) row that is not all
  zero, whose class is its arg-max. The masks are those of
  :func:`jaxloss.labeled_mask` and :func:`jaxloss.softmax_cross_entropy`;
  shapes stay static, so it runs under :func:`jax.jit` without boolean
  indexing. Ties in ``logits`` go to the lowest class id, as
  :func:`jnp.argmax` does. Integer labels outside ``[0, C)`` count as wrong.

  Equals Keras ``SparseCategoricalAccuracy`` / ``CategoricalAccuracy`` with
  ``sample_weight=labeled_mask(labels)``, and ``(argmax(x) == y)[m].mean()``
  in NumPy (which gives NaN instead of 0 when nothing is labeled).

  Args:
    logits: scores with a class axis (any floating dtype).
    labels: integer class ids (shape of ``logits`` without ``axis``), or
      one-hot/probability rows (shape of ``logits``); all-zero rows are
      unlabeled.
    axis: the class axis of ``logits``.
    where: optional boolean mask over elements.
    ignore_index: integer label that marks an unlabeled element.
    axis_name: optional mapped axis name to ``psum`` the counts over.

  Returns:
    The fraction of correct labeled elements, float32 (float64 for float64
    inputs under x64); 0 when no element is labeled. Not differentiable.

  Examples:
    >>> import jax.numpy as jnp
    >>> import jaxloss
    >>> logits = jnp.array([[2.0, 0.0], [0.0, 1.0], [3.0, 0.0], [1.0, 0.0]])
    >>> labels = jnp.array([[1.0, 0.0], [1.0, 0.0], [0.0, 0.0], [0.0, 0.0]])
    >>> float(jaxloss.accuracy(logits, labels))           # 1 of the 2 labeled rows
    0.5
  """
  t = prepare_class_inputs(
      logits, labels, axis=axis, class_weights=None, weights=None, where=where,
      ignore_index=ignore_index, reduction="mean")
  predicted = jnp.argmax(t.logits, axis=t.axis)
  truth = t.labels if t.is_int else jnp.argmax(t.labels, axis=t.axis)
  correct = (predicted == truth.astype(predicted.dtype)).astype(t.dtype)
  return reduce_elements(correct, None, t.where, "mean", axis_name)


def confusion_matrix(
    predicted_labels: jax.typing.ArrayLike,
    labels: jax.typing.ArrayLike,
    num_classes: int,
    *,
    where: jax.typing.ArrayLike | None = None,
    axis_name: str | None = None,
) -> jax.Array:
  r"""Confusion matrix ``M[true, predicted]`` of integer labels, jit-able and accumulable.

  .. math::
    M_{jk} = \sum_i m_i\, [y_i = j]\, [\hat y_i = k]

  Rows are true classes and columns predictions (scikit-learn's convention).
  Matrices of successive batches add up; with ``axis_name`` they are
  ``psum``-ed over a sharded batch. Counts are int32. A true or predicted
  label outside ``[0, num_classes)`` that is not masked by ``where`` is
  counted in no cell; :func:`jaxloss.checked` reports it, and the
  ``labels`` check of the losses applies (mask ``ignore_index`` pixels with
  ``where``).

  Args:
    predicted_labels: integer predictions (e.g. ``argmax`` of the logits).
    labels: integer true labels, the shape of ``predicted_labels``.
    num_classes: the number of classes ``C`` (static).
    where: optional boolean mask of the elements to count.
    axis_name: optional mapped axis to ``psum`` the matrix over.

  Returns:
    ``[C, C]`` int32 counts, rows true classes, columns predictions.

  Examples:
    >>> import jax.numpy as jnp
    >>> import jaxloss
    >>> jaxloss.confusion_matrix(jnp.array([0, 1, 1, 2]), jnp.array([0, 1, 2, 2]), 3).tolist()
    [[1, 0, 0], [0, 1, 0], [0, 1, 1]]
  """
  p = _checks.integer_input("predicted_labels", predicted_labels)
  y = _checks.integer_input("labels", labels)
  if p.shape != y.shape:
    raise ValueError(f"`predicted_labels` has shape {tuple(p.shape)}; expected the shape of "
                     f"`labels` {tuple(y.shape)}.")
  if not isinstance(num_classes, int) or num_classes < 1:
    raise ValueError(f"`num_classes` must be a positive int; got {num_classes!r}.")
  _, m = _checks.weights_and_mask(None, where, y.shape, jnp.float32)
  _checks.check_labels_in_range("labels", y, num_classes, where=m)
  _checks.check_labels_in_range("predicted_labels", p, num_classes, where=m)
  valid = (y >= 0) & (y < num_classes) & (p >= 0) & (p < num_classes)
  if m is not None:
    valid = valid & m
  cell = jnp.where(valid, y * num_classes + p, num_classes * num_classes)
  # One extra bin collects the masked and invalid elements, then is dropped.
  counts = jnp.bincount(cell.reshape(-1), length=num_classes * num_classes + 1)
  matrix = counts[:-1].reshape(num_classes, num_classes).astype(jnp.int32)
  return matrix if axis_name is None else lax.psum(matrix, axis_name)


def _per_class(cm: jax.typing.ArrayLike, name: str) -> tuple[jax.Array, ...]:
  cm = _checks.real_input(name, cm)
  if cm.ndim != 2 or cm.shape[0] != cm.shape[1]:
    raise ValueError(f"`{name}` must be a square [C, C] confusion matrix; got shape "
                     f"{tuple(cm.shape)}.")
  cm = cm.astype(jnp.float32)
  tp = jnp.diagonal(cm)
  return tp, jnp.sum(cm, axis=0) - tp, jnp.sum(cm, axis=1) - tp


def iou_per_class(confusion: jax.typing.ArrayLike) -> jax.Array:
  r"""Per-class IoU ``TP / (TP + FP + FN)`` from a confusion matrix; 0 for absent classes.

  A class absent from both predictions and targets has no IoU: it is reported
  as 0 (never NaN) and left out of :func:`mean_iou`.

  Args:
    confusion: ``[C, C]`` confusion matrix ``M[true, predicted]`` from
      :func:`confusion_matrix` (counts, possibly summed over batches).

  Returns:
    ``[C]`` float32 IoUs.

  Examples:
    >>> import jax.numpy as jnp
    >>> import jaxloss
    >>> cm = jnp.array([[3, 1, 0], [0, 2, 0], [0, 0, 0]])
    >>> [round(v, 4) for v in jaxloss.iou_per_class(cm).tolist()]
    [0.75, 0.6667, 0.0]
  """
  tp, fp, fn = _per_class(confusion, "confusion")
  return safe_div(tp, tp + fp + fn)


def dice_per_class(confusion: jax.typing.ArrayLike) -> jax.Array:
  r"""Per-class Dice (F1) ``2 TP / (2 TP + FP + FN)``; 0 for classes absent from both.

  Args:
    confusion: ``[C, C]`` confusion matrix ``M[true, predicted]`` from
      :func:`confusion_matrix` (counts, possibly summed over batches).

  Returns:
    ``[C]`` float32 Dice scores.

  Examples:
    >>> import jax.numpy as jnp
    >>> import jaxloss
    >>> cm = jnp.array([[3, 1, 0], [0, 2, 0], [0, 0, 0]])
    >>> [round(v, 4) for v in jaxloss.dice_per_class(cm).tolist()]
    [0.8571, 0.8, 0.0]
  """
  tp, fp, fn = _per_class(confusion, "confusion")
  return safe_div(2 * tp, 2 * tp + fp + fn)


def mean_iou(confusion: jax.typing.ArrayLike) -> jax.Array:
  r"""Mean IoU over the classes present in predictions or targets.

  Args:
    confusion: ``[C, C]`` confusion matrix ``M[true, predicted]`` from
      :func:`confusion_matrix` (counts, possibly summed over batches).

  Returns:
    A float32 scalar; 0 when no class is present.

  Examples:
    >>> import jax.numpy as jnp
    >>> import jaxloss
    >>> round(float(jaxloss.mean_iou(jnp.array([[3, 1, 0], [0, 2, 0], [0, 0, 0]]))), 4)
    0.7083
  """
  tp, fp, fn = _per_class(confusion, "confusion")
  present = (tp + fp + fn) > 0
  return safe_div(jnp.sum(jnp.where(present, safe_div(tp, tp + fp + fn), 0)),
                  jnp.sum(present, dtype=jnp.float32))
