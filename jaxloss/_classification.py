"""Softmax cross-entropy with class weights that follow the ground truth.

Class weights follow the **ground-truth** label. Scaling logits by a weight
changes the softmax temperature; it is not class weighting. The value and
gradient kernels are in ``_ce_kernels.py``, the shared input checks in
``_class_inputs.py``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxloss import _checks
from jaxloss._ce_kernels import _ce_int, _ce_prob
from jaxloss._class_inputs import ClassTargets, _class_sum, prepare_class_inputs, take_class
from jaxloss._reduction import reduce_weighted


def softmax_cross_entropy(
    logits: jax.typing.ArrayLike,
    labels: jax.typing.ArrayLike,
    *,
    axis: int = -1,
    class_weights: jax.typing.ArrayLike | None = None,
    weights: jax.typing.ArrayLike | None = None,
    where: jax.typing.ArrayLike | None = None,
    ignore_index: int | None = None,
    label_smoothing: float = 0.0,
    reduction: str = "mean",
    axis_name: str | None = None,
) -> jax.Array:
  r"""Softmax cross-entropy with class weights that follow the ground truth.

  With :math:`p = \mathrm{softmax}(x)` along ``axis``, class weights
  :math:`c_k` (1 if absent), smoothed targets
  :math:`y'_{ik} = (1-\varepsilon) y_{ik} + \varepsilon / C`:

  .. math::
    l_i = \sum_k c_k\, y'_{ik}\, (-\log p_{ik}), \qquad
    w_i = \mathrm{weights}_i \sum_k c_k\, y_{ik}

  and the reduction of :func:`jaxloss.reduce_loss` uses :math:`w_i l_i` as
  numerators and :math:`w_i` (built from the *unsmoothed* label) in the
  ``"weighted_mean"`` and ``"sum_by_nonzero_weights"`` denominators. Integer
  labels :math:`y_i` are one-hot rows, so integer and one-hot labels give
  identical results in every reduction (PyTorch does not: with probability
  targets its ``"mean"`` ignores ``weight``, issue 107680).

  Masking: ``where=False``, ``labels == ignore_index`` and all-zero probability
  rows (how a missing label is usually encoded) remove an element from every
  numerator and denominator. With :math:`\varepsilon > 0` a pixel whose true
  class has weight 0 still has a non-zero loss under ``reduction="none"``,
  exactly as in torch.

  Integer labels outside ``[0, C)`` that are not ``ignore_index`` give NaN, so
  they are never silently ignored; :func:`jaxloss.checked` names them.

  Equals:

  * ``torch.nn.functional.cross_entropy(x_nchw, y, weight=c, ignore_index=k,
    label_smoothing=ε, reduction="mean")`` with ``reduction="weighted_mean"``
    (for ``"sum"``/``"none"``: the same names);
  * ``optax.softmax_cross_entropy_with_integer_labels(x, y).mean()`` with no
    weights and ``reduction="mean"``; ``optax.softmax_cross_entropy(x, y)``
    for probability labels.

  The value and gradient are a hand-written ``custom_vjp``: the backward pass is
  :math:`g_i (A_i p_i - a_i)` with :math:`a_{ik} = c_k y'_{ik}`,
  :math:`A_i = \sum_k a_{ik}`, and keeps the log-sum-exp per element (inputs of
  at most :math:`2^{17}` logits in the compute dtype, with integer labels, also keep
  :math:`e^{x - \max x}`, which is faster on CPU there than recomputing it).
  Forward mode on the loss itself is not available (a hand-written
  ``custom_vjp``): ``jax.jvp`` and ``jax.jacfwd`` raise JAX's ``TypeError``.
  Second derivatives work, because the backward pass is plain JAX:
  ``jax.hessian`` (forward over reverse) and ``jax.jacrev(jax.jacrev(f))``.

  Labels: integer class ids of any integer dtype, or bool (ids 0 and 1), are
  widened before any index arithmetic, so uint8 label maps give exactly the
  int32 result. Every term :math:`a (\mathrm{lse} - x)` is formed as
  :math:`2\,a\,(\mathrm{lse}/2 - x/2)`, so logits at the float32 range limit
  (±3e38) give finite values wherever the result is representable, and a zero
  target probability never meets an overflowed difference.

  Args:
    logits: unnormalised scores with a class axis.
    labels: integer (or bool) class ids (shape of ``logits`` without ``axis``)
      or probabilities/one-hot (shape of ``logits``).
    axis: the class axis of ``logits``.
    class_weights: optional ``[C]`` non-negative weights, e.g.
      :func:`jaxloss.median_frequency_weights`.
    weights: optional per-element weights (see :func:`jaxloss.reduce_loss`).
    where: optional boolean mask over elements.
    ignore_index: integer label to leave out (e.g. 255 for void pixels).
    label_smoothing: :math:`\varepsilon \in [0, 1]`.
    reduction: see :func:`jaxloss.reduce_loss`.
    axis_name: optional mapped axis name to ``psum`` the reduction over.

  Returns:
    The reduced loss, or per-element losses ``w_i l_i`` for ``"none"``.

  Examples:
    >>> import jax.numpy as jnp
    >>> import jaxloss
    >>> logits = jnp.array([[2.0, 0.0, -1.0], [0.0, 1.0, 0.0]])
    >>> labels = jnp.array([0, 2])
    >>> cw = jnp.array([1.0, 1.0, 4.0])
    >>> round(float(jaxloss.softmax_cross_entropy(
    ...     logits, labels, class_weights=cw, reduction="weighted_mean")), 4)
    1.2751
  """
  _checks.scalar_option("label_smoothing", label_smoothing, low=0.0, high=1.0)
  t = prepare_class_inputs(
      logits, labels, axis=axis, class_weights=class_weights, weights=weights, where=where,
      ignore_index=ignore_index, reduction=reduction)
  eps = float(label_smoothing)
  if t.is_int:
    # Out-of-range labels that are not ignore_index are an error, never dropped: their
    # gathered logit and class weight are NaN (mode="fill"), so the loss is NaN.
    cw_y = None
    if t.class_weights is not None:
      cw_y = take_class(t.class_weights, t.labels)
    loss = _ce_int(t.logits, t.labels, cw_y, t.class_weights, t.axis, eps, t.dtype)
    label_weight = cw_y
  else:
    loss = _ce_prob(t.logits, t.labels, t.class_weights, t.axis, eps, t.dtype)
    label_weight = None
    if t.class_weights is not None:
      cwb = jnp.expand_dims(t.class_weights,
                            tuple(i for i in range(t.logits.ndim) if i != t.axis))
      label_weight = _class_sum(cwb * t.labels, t.axis)
  return _reduce(loss, label_weight, t, reduction, axis_name)


def _reduce(loss, label_weight, t: ClassTargets, reduction, axis_name):
  """Numerators weights·loss, denominators weights·label_weight (both may be absent)."""
  w = t.weights
  if label_weight is not None:
    w = label_weight if w is None else w * label_weight
  wl = loss if t.weights is None else t.weights * loss
  return reduce_weighted(wl, w, t.where, reduction, axis_name)
