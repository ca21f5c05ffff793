"""Masked metrics that share the losses' label and masking rules."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxloss._classification import prepare_class_inputs
from jaxloss._reduction import reduce_elements


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

  Example:
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
