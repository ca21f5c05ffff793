"""Focal losses (Lin et al. 2017), softmax and sigmoid, computed in log space."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jax import lax

from jaxloss import _checks
from jaxloss._binary import _per_class, prepare_multilabel_inputs, softplus
from jaxloss._classification import (
    _class_reduce,
    _class_sum,
    _reduce,
    _take_label,
    prepare_class_inputs,
)
from jaxloss._reduction import reduce_weighted


def _log_softmax_and_log1m(x: jax.Array, axis: int) -> tuple[jax.Array, jax.Array]:
  """``log p`` and ``log(1 - p)`` for ``p = softmax(x)``, both finite at ±1e4 logits.

  ``1 - p_c = Σ_{k≠c} e_k / Σ_k e_k`` with ``e = exp(x - max x)``. For every
  class but the arg-max, ``s - e_c ≥ 1`` is well conditioned; for the arg-max
  the sum over the others is taken directly, so no ``1 - p`` is ever formed by
  cancellation. It is clamped at the smallest normal float, where
  ``(1 - p)^γ`` has underflowed to 0 anyway, to keep the gradient finite.
  """
  m = jnp.max(x, axis=axis, keepdims=True)
  e = jnp.exp(x - m)
  s = jnp.sum(e, axis=axis, keepdims=True)
  log_s = jnp.log(s)
  is_max = jax.nn.one_hot(jnp.argmax(x, axis=axis), x.shape[axis], axis=axis, dtype=bool)
  others_of_max = jnp.sum(jnp.where(is_max, 0, e), axis=axis, keepdims=True)
  excl = jnp.where(is_max, others_of_max, s - e)
  tiny = jnp.finfo(x.dtype).tiny
  log1m_p = jnp.log(jnp.maximum(excl, tiny)) - log_s
  return x - m - log_s, log1m_p


def softmax_focal_loss(
    logits: jax.typing.ArrayLike,
    labels: jax.typing.ArrayLike,
    *,
    axis: int = -1,
    gamma: float = 2.0,
    alpha: jax.typing.ArrayLike | None = None,
    weights: jax.typing.ArrayLike | None = None,
    where: jax.typing.ArrayLike | None = None,
    ignore_index: int | None = None,
    reduction: str = "mean",
    axis_name: str | None = None,
) -> jax.Array:
  r"""Multi-class focal loss on softmax probabilities.

  .. math::
    l_i = -\sum_c \alpha_c\, y_{ic}\, (1 - p_{ic})^{\gamma} \log p_{ic},
    \qquad p = \mathrm{softmax}(x)

  with :math:`(1-p)^\gamma = \exp(\gamma \log(1-p))` evaluated in log space
  (see ``_log_softmax_and_log1m``). ``alpha`` (a scalar or ``[C]``, 1 if
  absent) is part of the loss, not of the reduction's denominators, as in
  Keras and MONAI. Labels are integer ids or probabilities as in
  :func:`jaxloss.softmax_cross_entropy`, with the same masking rules
  (``ignore_index``, all-zero rows). ``gamma=0`` and no ``alpha`` give the
  cross-entropy.

  Equals:

  * Keras ``CategoricalFocalCrossentropy(alpha=a, gamma=g, from_logits=True)``
    with ``alpha=a`` (a scalar) on one-hot labels: Keras sums over classes per
    example, then averages over examples, which is our ``"mean"``;
  * MONAI ``FocalLoss(use_softmax=True, gamma=g, alpha=a, reduction="mean")``
    on ``[B, C, ...]`` with ``alpha=[1-a, a, ..., a]`` and ``reduction="sum"``
    divided by the element count times ``C`` (MONAI averages over the class
    axis too); MONAI's ``"sum"`` is our ``"sum"``.

  Args:
    logits: unnormalised scores with a class axis.
    labels: integer ids or probability labels (see ``softmax_cross_entropy``).
    axis: the class axis.
    gamma: the focusing parameter :math:`\gamma \ge 0`.
    alpha: optional scalar or ``[C]`` class balance factor.
    weights: optional per-element weights.
    where: optional boolean mask over elements.
    ignore_index: integer label to leave out.
    reduction: see :func:`jaxloss.reduce_loss`.
    axis_name: optional mapped axis name to ``psum`` the reduction over.

  Returns:
    The reduced loss.

  Examples:
    >>> import jax.numpy as jnp
    >>> import jaxloss
    >>> logits = jnp.array([[4.0, 0.0, 0.0], [0.0, 0.0, 0.0]])
    >>> losses = jaxloss.softmax_focal_loss(logits, jnp.array([0, 1]), reduction="none")
    >>> [round(v, 4) for v in losses.tolist()]
    [0.0, 0.4883]
  """
  if gamma < 0:
    raise ValueError(f"`gamma` must be >= 0; got {gamma!r}.")
  t = prepare_class_inputs(
      logits, labels, axis=axis, class_weights=None, weights=weights, where=where,
      ignore_index=ignore_index, reduction=reduction)
  ax = t.axis
  a = None
  if alpha is not None:
    a = _checks.real_input("alpha", alpha).astype(t.dtype)
    if a.ndim > 1 or (a.ndim == 1 and a.shape != (t.num_classes,)):
      raise ValueError(f"`alpha` has shape {tuple(a.shape)}; expected a scalar or "
                       f"({t.num_classes},), one value per class along axis {ax}.")
  if t.is_int:
    alpha_y = None
    if a is not None:
      alpha_y = (jnp.take(a, t.labels, mode="fill", fill_value=jnp.nan) if a.ndim
                 else jnp.broadcast_to(a, t.labels.shape))
    loss = _focal_int(t.logits, t.labels, alpha_y, ax, float(gamma), t.dtype)
  else:
    x = t.logits.astype(t.dtype)
    log_p, log1m_p = _log_softmax_and_log1m(x, ax)
    per_class = -jnp.exp(gamma * log1m_p) * log_p
    if a is not None:
      per_class = (_per_class(a, x.ndim, ax) if a.ndim else a) * per_class
    loss = jnp.sum(t.labels * per_class, axis=ax)
  return _reduce(loss, None, t, reduction, axis_name)


def sigmoid_focal_loss(
    logits: jax.typing.ArrayLike,
    labels: jax.typing.ArrayLike,
    *,
    axis: int = -1,
    gamma: float = 2.0,
    alpha: float | None = 0.25,
    weights: jax.typing.ArrayLike | None = None,
    where: jax.typing.ArrayLike | None = None,
    reduction: str = "mean",
    axis_name: str | None = None,
) -> jax.Array:
  r"""Multi-label sigmoid focal loss (RetinaNet).

  .. math::
    l = \alpha_t\, (1 - p_t)^{\gamma}\, \mathrm{BCE}(x, y), \quad
    p_t = p y + (1-p)(1-y), \quad \alpha_t = \alpha y + (1-\alpha)(1-y)

  with :math:`p = \sigma(x)`, no :math:`\alpha_t` factor when ``alpha`` is
  ``None``, and :math:`1 - p_t = \sigma(x)(1-y) + \sigma(-x)\,y` evaluated
  from one softplus, exact for soft labels and finite at ±1e4 logits. Where
  :math:`1 - p_t` underflows to 0 the factor and its gradient are 0. Reduced
  over all elements by :func:`jaxloss.reduce_loss`.

  Equals ``optax.sigmoid_focal_loss(x, y, alpha=alpha, gamma=gamma)`` element
  for element, ``torchvision.ops.sigmoid_focal_loss`` (same defaults) and
  MONAI ``FocalLoss(use_softmax=False, gamma=g, alpha=a)`` with our
  ``reduction="mean"`` (MONAI's mean runs over every element).

  Args:
    logits: logits, any shape.
    labels: binary or soft targets, the shape of ``logits``.
    axis: the class axis (only used for shape messages; the loss is elementwise).
    gamma: focusing parameter :math:`\gamma \ge 0`.
    alpha: balance of positives in ``[0, 1]``, or ``None``.
    weights: optional weights over elements.
    where: optional boolean mask over elements.
    reduction: see :func:`jaxloss.reduce_loss`.
    axis_name: optional mapped axis name to ``psum`` the reduction over.

  Returns:
    The reduced loss.

  Examples:
    >>> import jax.numpy as jnp
    >>> import jaxloss
    >>> losses = jaxloss.sigmoid_focal_loss(jnp.array([2.0, -1.0]), jnp.array([1.0, 1.0]),
    ...                                     reduction="none")
    >>> [round(v, 4) for v in losses.tolist()]
    [0.0005, 0.1755]
  """
  if gamma < 0:
    raise ValueError(f"`gamma` must be >= 0; got {gamma!r}.")
  if alpha is not None and not 0.0 <= alpha <= 1.0:
    raise ValueError(f"`alpha` must lie in [0, 1] or be None; got {alpha!r}.")
  x, y, _, w, m, _, _ = prepare_multilabel_inputs(
      logits, labels, axis=axis, class_arrays={}, weights=weights, where=where,
      reduction=reduction)
  # With sp = softplus(x): BCE = sp − y·x, σ(x) = exp(x − sp), σ(−x) = exp(−sp), and
  # 1 − p_t = σ(x)(1 − y) + σ(−x)·y, a sum of two non-negative terms: exact for soft
  # labels, no cancellation, finite at ±1e4.
  sp = softplus(x)
  bce = sp - y * x
  one_minus_pt = jnp.exp(x - sp) * (1 - y) + jnp.exp(-sp) * y
  loss = _safe_pow(one_minus_pt, gamma) * bce
  if alpha is not None:
    loss = (alpha * y + (1 - alpha) * (1 - y)) * loss
  wl = loss if w is None else w * loss
  return reduce_weighted(wl, w, m, reduction, axis_name)


def _safe_pow(base: jax.Array, gamma: float) -> jax.Array:
  """``base ** gamma`` for ``base >= 0``, with value and gradient 0 at ``base == 0``.

  The inner ``where`` keeps ``0 ** (gamma − 1)`` (inf for gamma < 1) out of the
  backward pass.
  """
  if gamma == 0:
    return jnp.ones_like(base)
  positive = base > 0
  safe = jnp.where(positive, base, 1)
  return jnp.where(positive, safe**gamma, 0)


# Integer labels: l_i = −α_y (1 − p)^γ log p with p = p_{i,y_i}. With
# dp/dx_k = p([k = y] − p_k):
#   ∂l_i/∂x_ik = C_i ([k = y_i] − p_ik),  C_i = α_y [γ (1 − p)^(γ−1) p log p − (1 − p)^γ],
# the cross-entropy gradient scaled per element. Residuals: lse and C_i per element.


@functools.partial(jax.custom_vjp, nondiff_argnums=(3, 4, 5))
def _focal_int(x, labels, alpha_y, axis, gamma, dtype):
  return _focal_int_fwd(x, labels, alpha_y, axis, gamma, dtype)[0]


def _focal_int_fwd(x_in, labels, alpha_y, axis, gamma, dtype):
  x = x_in.astype(dtype)
  c = x.shape[axis]
  m = _class_reduce(jnp.maximum, x, axis)
  e = jnp.exp(x - jnp.expand_dims(m, axis))
  s = _class_sum(e, axis)
  # Σ_{k≠y} e_k summed directly, never as s − e_y: log(1 − p) stays exact when p → 1.
  if c > 32:
    others = jnp.sum(jnp.where(_label_mask(labels, x.shape, axis), 0, e), axis=axis)
  else:
    others = functools.reduce(jnp.add, [
        jnp.where(labels == k, 0, lax.index_in_dim(e, k, axis, keepdims=False))
        for k in range(c)])
  log_s = jnp.log(s)
  lse = m + log_s
  log_p = _take_label(x, labels, axis) - lse
  # Clamped at the smallest normal float, where (1 − p)^γ has underflowed anyway.
  log1m = jnp.log(jnp.maximum(others, jnp.finfo(dtype).tiny)) - log_s
  focal = jnp.exp(gamma * log1m)
  base = -focal * log_p
  coef = gamma * jnp.exp((gamma - 1) * log1m + log_p) * log_p - focal if gamma else -focal
  if alpha_y is not None:
    coef = alpha_y * coef
  loss = base if alpha_y is None else alpha_y * base
  return loss, (x_in, labels, lse, coef, base, alpha_y)


def _label_mask(labels, shape, axis):
  return lax.broadcasted_iota(labels.dtype, shape, axis) == jnp.expand_dims(labels, axis)


def _focal_int_bwd(axis, gamma, dtype, res, g):
  x_in, labels, lse, coef, base, alpha_y = res
  x = x_in.astype(dtype)
  onehot = _label_mask(labels, x.shape, axis)
  p = jnp.exp(x - jnp.expand_dims(lse, axis))
  dx = jnp.expand_dims(g * coef, axis) * (onehot.astype(dtype) - p)
  return dx.astype(x_in.dtype), None, None if alpha_y is None else g * base


_focal_int.defvjp(_focal_int_fwd, _focal_int_bwd)
