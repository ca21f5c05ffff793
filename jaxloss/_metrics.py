"""Masked metrics that share the losses' label and masking rules."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from jax import lax

from jaxloss import _checks
from jaxloss._class_inputs import prepare_class_inputs
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
  :func:`jnp.argmax` does. Integer labels of any integer dtype (or bool) give
  identical results.

  An unmasked integer label outside ``[0, C)`` that is not ``ignore_index``
  makes the accuracy NaN, as it makes the losses NaN: it is never counted as
  merely wrong (:func:`jaxloss.checked` names it).

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
    inputs under x64); 0 when no element is labeled; NaN when an unmasked
    integer label is out of range. Not differentiable.

  Examples:
    >>> import jax.numpy as jnp
    >>> import jaxloss
    >>> logits = jnp.array([[2.0, 0.0], [0.0, 1.0], [3.0, 0.0], [1.0, 0.0]])
    >>> labels = jnp.array([[1.0, 0.0], [1.0, 0.0], [0.0, 0.0], [0.0, 0.0]])
    >>> float(jaxloss.accuracy(logits, labels))           # 1 of the 2 labeled rows
    0.5
    >>> float(jaxloss.accuracy(logits, jnp.array([0, 0, 2, 0])))  # label 2 of C = 2
    nan
  """
  x = _checks.float_input("logits", logits)
  if x.ndim > 0:
    _checks.check_axis_size("logits", x, _checks.normalize_axis("axis", axis, x.ndim),
                            "class axis")
  t = prepare_class_inputs(
      x, labels, axis=axis, class_weights=None, weights=None, where=where,
      ignore_index=ignore_index, reduction="mean")
  predicted = jnp.argmax(t.logits, axis=t.axis)
  truth = t.labels if t.is_int else jnp.argmax(t.labels, axis=t.axis)
  correct = (predicted == truth.astype(predicted.dtype)).astype(t.dtype)
  if t.is_int:
    # An out-of-range label is never "just wrong": it poisons the (psum-ed) numerator.
    correct = jnp.where(_checks.invalid_labels(t.labels, t.num_classes), jnp.nan, correct)
  return reduce_elements(correct, None, t.where, "mean", axis_name)


def _count_dtype(dtype: Any) -> jnp.dtype:
  try:
    d = jnp.dtype(dtype)
  except TypeError as e:
    raise TypeError(f"`dtype` must be a floating or integer dtype; got {dtype!r}.") from e
  if not (jnp.issubdtype(d, jnp.floating) or jnp.issubdtype(d, jnp.integer)):
    raise TypeError(f"`dtype` must be a floating or integer dtype; got {dtype!r}.")
  # float64/int64 without x64 become float32/int32 (no warning, as for every default).
  return jnp.dtype(jax.dtypes.canonicalize_dtype(d))


def confusion_matrix(
    predicted_labels: jax.typing.ArrayLike,
    labels: jax.typing.ArrayLike,
    num_classes: int,
    *,
    where: jax.typing.ArrayLike | None = None,
    ignore_index: int | None = None,
    dtype: Any = jnp.float32,
    axis_name: str | None = None,
) -> jax.Array:
  r"""Confusion matrix ``M[true, predicted]`` of integer labels, jit-able and accumulable.

  .. math::
    M_{jk} = \sum_i m_i\, [y_i = j]\, [\hat y_i = k]

  with :math:`m_i` = ``where`` and :math:`y_i \ne` ``ignore_index``: masked
  elements and those whose *true* label is ``ignore_index`` are left out, as
  if sliced away. Rows are true classes and columns predictions
  (scikit-learn's convention). Matrices of successive batches add up; with
  ``axis_name`` they are ``psum``-ed over a sharded batch. Labels of any
  integer dtype (or bool) give identical results.

  Counts are returned in ``dtype``, float32 by default: exact up to
  :math:`2^{24}` (16.7 million) per cell and per call. Accumulate a dataset's
  matrices in float64 (NumPy, or JAX under x64), or pass
  ``dtype=jnp.int32`` for exact integer counts.

  Out-of-range labels: an unmasked true label outside ``[0, num_classes)``
  that is not ``ignore_index``, or an unmasked predicted label outside it,
  makes **every cell NaN** in a floating ``dtype``, so the poison reaches
  :func:`iou_per_class`, :func:`dice_per_class` and :func:`mean_iou` and is
  visible without :func:`jaxloss.checked`, as in the losses. With an integer
  ``dtype`` (which cannot hold NaN) such elements are counted in no cell;
  only :func:`jaxloss.checked` reports them then.

  Args:
    predicted_labels: integer predictions (e.g. ``argmax`` of the logits).
    labels: integer true labels, the shape of ``predicted_labels``.
    num_classes: the number of classes ``C`` (static, ``>= 1``).
    where: optional boolean mask of the elements to count.
    ignore_index: optional true label whose elements are left out.
    dtype: dtype of the counts: floating (NaN on invalid labels) or integer.
    axis_name: optional mapped axis to ``psum`` the matrix over.

  Returns:
    ``[C, C]`` counts in ``dtype``, rows true classes, columns predictions.

  Examples:
    >>> import jax.numpy as jnp
    >>> import jaxloss
    >>> jaxloss.confusion_matrix(jnp.array([0, 1, 1, 2]), jnp.array([0, 1, 2, 2]), 3).tolist()
    [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 1.0, 1.0]]
    >>> jaxloss.confusion_matrix(jnp.array([0, 1, 1]), jnp.array([0, 255, 2]), 3,
    ...                          ignore_index=255, dtype=jnp.int32).tolist()
    [[1, 0, 0], [0, 0, 0], [0, 1, 0]]
    >>> jaxloss.confusion_matrix(jnp.array([0, 1]), jnp.array([0, 3]), 3).tolist()[0]
    [nan, nan, nan]
  """
  p = _checks.integer_input("predicted_labels", predicted_labels)
  y = _checks.integer_input("labels", labels)
  if p.shape != y.shape:
    raise ValueError(f"`predicted_labels` has shape {tuple(p.shape)}; expected the shape of "
                     f"`labels` {tuple(y.shape)}.")
  c = _checks.check_num_classes("num_classes", num_classes)
  ignore_index = _checks.check_ignore_index(ignore_index)
  out_dtype = _count_dtype(dtype)
  _, m = _checks.weights_and_mask(None, where, y.shape, jnp.float32)
  if ignore_index is not None:
    keep = y != ignore_index
    m = keep if m is None else m & keep
  _checks.check_labels_in_range("labels", y, c, where=m)
  _checks.check_labels_in_range("predicted_labels", p, c, where=m)
  invalid = _checks.invalid_labels(y, c) | _checks.invalid_labels(p, c)
  counted = ~invalid if m is None else m & ~invalid
  cell = jnp.where(counted, y * c + p, c * c)
  # One extra bin collects the masked and invalid elements, then is dropped.
  counts = jnp.bincount(cell.reshape(-1), length=c * c + 1)
  matrix = counts[:-1].reshape(c, c).astype(out_dtype)
  if jnp.issubdtype(out_dtype, jnp.floating):
    bad = invalid if m is None else m & invalid
    matrix = matrix + jnp.where(jnp.any(bad), jnp.nan, 0).astype(out_dtype)
  return matrix if axis_name is None else lax.psum(matrix, axis_name)


def multilabel_confusion_matrix(
    predictions: jax.typing.ArrayLike,
    labels: jax.typing.ArrayLike,
    *,
    axis: int = -1,
    threshold: float = 0.5,
    where: jax.typing.ArrayLike | None = None,
    dtype: Any = jnp.float32,
    axis_name: str | None = None,
) -> jax.Array:
  r"""One 2x2 confusion matrix per class of multi-hot (multi-label) masks, jit-able.

  Each class :math:`c` along ``axis`` is a binary problem: an element is
  predicted positive when :math:`p_{ic} \ge` ``threshold`` and truly positive
  when :math:`y_{ic} = 1`. With :math:`m_{ic}` = ``where`` and :math:`t` =
  ``threshold``,

  .. math::
    TP_c = \sum_i m_{ic}\, [y_{ic} = 1]\, [p_{ic} \ge t], \qquad
    FP_c = \sum_i m_{ic}\, [y_{ic} = 0]\, [p_{ic} \ge t]

  (:math:`FN_c`, :math:`TN_c` likewise with :math:`p_{ic} < t`), summed over
  every axis but ``axis``, laid out as ``M[c] = [[TN, FP], [FN, TP]]``:
  scikit-learn's ``multilabel_confusion_matrix`` layout (``M[c, true,
  predicted]``, so ``M[:, 1, 1]`` is TP). :func:`iou_per_class`,
  :func:`dice_per_class` and :func:`mean_iou` read it as they read a
  ``[C, C]`` matrix (TN is unused).
  Matrices of successive batches add up; with ``axis_name`` they are
  ``psum``-ed over a sharded batch.

  **Threshold.** The default 0.5 is for probabilities
  (``jax.nn.sigmoid(logits)``); for logits pass ``threshold=0.0``, the same
  decision since :math:`\sigma(x) \ge 0.5 \iff x \ge 0`.

  **Labels** are multi-hot memberships, the shape of ``predictions``: bool,
  0/1 integers or floats in :math:`\{0, 1\}`. An unmasked label that is not
  0 or 1 (a soft 0.7, a 2, NaN), or an unmasked NaN prediction, is never
  silently dropped or counted: it makes **every cell NaN** in a floating
  ``dtype``, the rule of :func:`confusion_matrix`, so the poison reaches
  :func:`iou_per_class` and :func:`mean_iou`. With an integer ``dtype``
  (which cannot hold NaN) such an element is counted in no cell. Masked
  elements (``where=False``) are left out, as if sliced away, whatever they
  hold. Counts are exact in float32 up to :math:`2^{24}` per cell and call
  (``dtype=jnp.int32`` for exact integers).

  Equals ``sklearn.metrics.multilabel_confusion_matrix(y.reshape(-1, C),
  (p >= t).reshape(-1, C))`` with the class axis moved last.

  Args:
    predictions: probabilities (or logits with ``threshold=0.0``), any
      floating dtype, with a class axis.
    labels: multi-hot memberships (bool, 0/1 integers or floats), the shape
      of ``predictions``.
    axis: the class axis.
    threshold: a finite scalar; predicted positive where ``predictions >=
      threshold``.
    where: optional boolean mask, a leading prefix of the shape of
      ``predictions`` (``[B]`` per image, ``[B, H, W]`` per pixel with the
      class axis last, or per element and class).
    dtype: dtype of the counts: floating (NaN on invalid elements) or integer.
    axis_name: optional mapped axis to ``psum`` the matrices over.

  Returns:
    ``[C, 2, 2]`` counts in ``dtype``: ``[[TN, FP], [FN, TP]]`` per class.

  Examples:
    >>> import jax.numpy as jnp
    >>> import jaxloss
    >>> p = jnp.array([[0.9, 0.2], [0.6, 0.7], [0.1, 0.4]])  # 3 pixels, 2 classes
    >>> y = jnp.array([[1, 0], [0, 1], [0, 1]])
    >>> cm = jaxloss.multilabel_confusion_matrix(p, y)
    >>> cm.tolist()
    [[[1.0, 1.0], [0.0, 1.0]], [[1.0, 0.0], [1.0, 1.0]]]
    >>> [round(v, 4) for v in jaxloss.iou_per_class(cm).tolist()]
    [0.5, 0.5]
    >>> jaxloss.multilabel_confusion_matrix(p, y.at[0, 0].set(2))[0].tolist()
    [[nan, nan], [nan, nan]]
  """
  x = _checks.float_input("predictions", predictions)
  y = _checks.real_input("labels", labels)
  if x.ndim == 0:
    raise ValueError("`predictions` needs a class axis; got a scalar.")
  if y.shape != x.shape:
    raise ValueError(f"`labels` has shape {tuple(y.shape)}; expected the shape of "
                     f"`predictions` {tuple(x.shape)} (multi-hot, one membership per class).")
  ax = _checks.normalize_axis("axis", axis, x.ndim)
  _checks.check_axis_size("predictions", x, ax, "class axis")
  _checks.scalar_option("threshold", threshold)
  out_dtype = _count_dtype(dtype)
  dtype = _checks.compute_dtype(x)
  _, m = _checks.weights_and_mask(None, where, x.shape, dtype)
  x = x.astype(dtype)
  t = y.astype(dtype)  # bool/int 1 -> 1.0; anything else that is not 0 or 1 is invalid
  truth, false = t == 1, t == 0
  predicted = x >= jnp.asarray(threshold).astype(dtype)
  invalid = ~(truth | false) | jnp.isnan(x)
  counted = ~invalid if m is None else m & ~invalid
  axes = tuple(i for i in range(x.ndim) if i != ax)

  def count(a, b):
    return jnp.sum(counted & a & b, axis=axes, dtype=jnp.int32)

  tn, fp = count(false, ~predicted), count(false, predicted)
  fn, tp = count(truth, ~predicted), count(truth, predicted)
  matrix = jnp.stack([jnp.stack([tn, fp], -1), jnp.stack([fn, tp], -1)], -2).astype(out_dtype)
  if jnp.issubdtype(out_dtype, jnp.floating):
    bad = invalid if m is None else m & invalid
    matrix = matrix + jnp.where(jnp.any(bad), jnp.nan, 0).astype(out_dtype)
  return matrix if axis_name is None else lax.psum(matrix, axis_name)


def _per_class(cm: jax.typing.ArrayLike, name: str) -> tuple[jax.Array, ...]:
  """``(TP, FP, FN)`` per class of a ``[C, C]`` or a multi-label ``[C, 2, 2]`` matrix."""
  cm = _checks.real_input(name, cm)
  multilabel = cm.ndim == 3 and cm.shape[1:] == (2, 2)
  if not multilabel and (cm.ndim != 2 or cm.shape[0] != cm.shape[1]):
    raise ValueError(f"`{name}` must be a square [C, C] confusion matrix or a [C, 2, 2] "
                     f"multi-label one; got shape {tuple(cm.shape)}.")
  _checks.check_axis_size(name, cm, 0, "class axis")
  cm = cm.astype(_checks.compute_dtype(cm))
  if multilabel:  # [[TN, FP], [FN, TP]] per class (multilabel_confusion_matrix)
    return cm[:, 1, 1], cm[:, 0, 1], cm[:, 1, 0]
  tp = jnp.diagonal(cm)
  return tp, jnp.sum(cm, axis=0) - tp, jnp.sum(cm, axis=1) - tp


def iou_per_class(confusion: jax.typing.ArrayLike) -> jax.Array:
  r"""Per-class IoU ``TP / (TP + FP + FN)`` from a confusion matrix; 0 for absent classes.

  From a ``[C, C]`` matrix, :math:`TP_c = M_{cc}`, :math:`FP_c` and
  :math:`FN_c` the rest of column and row :math:`c`; from a multi-label
  ``[C, 2, 2]`` matrix (rank 3), :math:`TP_c = M_{c11}`, :math:`FP_c =
  M_{c01}`, :math:`FN_c = M_{c10}` (scikit-learn's ``jaccard_score(average=None)``
  on multi-hot masks). A class absent from both predictions and targets has no
  IoU: it is reported as 0 (never NaN) and left out of :func:`mean_iou`. A NaN cell (a matrix
  poisoned by an out-of-range label, see :func:`confusion_matrix`) gives NaN
  in every class whose row or column it lies in: it is never read as absent.

  Args:
    confusion: ``[C, C]`` confusion matrix ``M[true, predicted]`` from
      :func:`confusion_matrix`, or ``[C, 2, 2]`` per-class matrices from
      :func:`multilabel_confusion_matrix` (counts, possibly summed over
      batches); told apart by rank.

  Returns:
    ``[C]`` float32 IoUs (float64 for a float64 matrix under x64).

  Examples:
    >>> import jax.numpy as jnp
    >>> import jaxloss
    >>> cm = jnp.array([[3, 1, 0], [0, 2, 0], [0, 0, 0]])
    >>> [round(v, 4) for v in jaxloss.iou_per_class(cm).tolist()]
    [0.75, 0.6667, 0.0]
  """
  tp, fp, fn = _per_class(confusion, "confusion")
  return safe_div(tp, tp + fp + fn)  # NaN != 0: a NaN denominator passes through


def dice_per_class(confusion: jax.typing.ArrayLike) -> jax.Array:
  r"""Per-class Dice (F1) ``2 TP / (2 TP + FP + FN)``; 0 for classes absent from both.

  TP, FP and FN are read from a ``[C, C]`` or a multi-label ``[C, 2, 2]``
  matrix as in :func:`iou_per_class` (multi-label: scikit-learn's
  ``f1_score(average=None)``). NaN cells (a poisoned matrix) give NaN, as in
  :func:`iou_per_class`.

  Args:
    confusion: ``[C, C]`` confusion matrix ``M[true, predicted]`` from
      :func:`confusion_matrix`, or ``[C, 2, 2]`` per-class matrices from
      :func:`multilabel_confusion_matrix` (counts, possibly summed over
      batches); told apart by rank.

  Returns:
    ``[C]`` float32 Dice scores (float64 for a float64 matrix under x64).

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

  .. math::
    \mathrm{mIoU} = \frac{1}{|P|} \sum_{c \in P} \frac{TP_c}{TP_c + FP_c + FN_c},
    \qquad P = \{c : TP_c + FP_c + FN_c \ne 0\}

  TP, FP and FN are read from a ``[C, C]`` or a multi-label ``[C, 2, 2]``
  matrix as in :func:`iou_per_class`. A NaN cell (a poisoned matrix, see
  :func:`confusion_matrix`) makes the mean NaN: a NaN class is never taken
  for an absent one.

  Args:
    confusion: ``[C, C]`` confusion matrix ``M[true, predicted]`` from
      :func:`confusion_matrix`, or ``[C, 2, 2]`` per-class matrices from
      :func:`multilabel_confusion_matrix` (counts, possibly summed over
      batches); told apart by rank.

  Returns:
    A float32 scalar (float64 for a float64 matrix under x64); 0 when no
    class is present.

  Examples:
    >>> import jax.numpy as jnp
    >>> import jaxloss
    >>> round(float(jaxloss.mean_iou(jnp.array([[3, 1, 0], [0, 2, 0], [0, 0, 0]]))), 4)
    0.7083
  """
  tp, fp, fn = _per_class(confusion, "confusion")
  union = tp + fp + fn
  present = union != 0  # NaN != 0: a NaN class counts as present and poisons the mean
  return safe_div(jnp.sum(jnp.where(present, safe_div(tp, union), 0)),
                  jnp.sum(present, dtype=tp.dtype))
