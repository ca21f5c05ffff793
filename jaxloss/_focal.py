"""Focal losses (Lin et al. 2017), softmax and sigmoid, computed in log space."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxloss import _checks
from jaxloss._binary import _per_class, prepare_multilabel_inputs
from jaxloss._classification import _reduce, prepare_class_inputs
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

  Example:
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
  x, ax = t.logits.astype(t.dtype), t.axis
  log_p, log1m_p = _log_softmax_and_log1m(x, ax)
  per_class = -jnp.exp(gamma * log1m_p) * log_p
  if alpha is not None:
    a = _checks.real_input("alpha", alpha).astype(t.dtype)
    if a.ndim == 1:
      if a.shape != (t.num_classes,):
        raise ValueError(f"`alpha` has shape {tuple(a.shape)}; expected a scalar or "
                         f"({t.num_classes},), one value per class along axis {ax}.")
      a = _per_class(a, x.ndim, ax)
    elif a.ndim != 0:
      raise ValueError(f"`alpha` has shape {tuple(a.shape)}; expected a scalar or "
                       f"({t.num_classes},).")
    per_class = a * per_class
  if t.is_int:
    valid = (t.labels >= 0) & (t.labels < t.num_classes)
    onehot = jax.nn.one_hot(jnp.where(valid, t.labels, 0), t.num_classes, axis=ax,
                            dtype=t.dtype)
    loss = jnp.where(valid, jnp.sum(onehot * per_class, axis=ax), jnp.nan)
  else:
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
  ``None``, and :math:`\log(1-p_t) = \mathrm{logaddexp}(\log\sigma(x) +
  \log(1-y),\ \log\sigma(-x) + \log y)`, exact for soft labels and finite at
  ±1e4 logits. Reduced over all elements by :func:`jaxloss.reduce_loss`.

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

  Example:
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
  log_p, log_1mp = jax.nn.log_sigmoid(x), jax.nn.log_sigmoid(-x)
  bce = -(y * log_p + (1 - y) * log_1mp)
  # log(1 − p_t) = log(p(1−y) + (1−p)y), a log-sum-exp of two log terms; log(0) = −inf is
  # handled by logaddexp for hard labels.
  log_1m_pt = jnp.logaddexp(log_p + jnp.log1p(-y), log_1mp + jnp.log(y))
  loss = jnp.exp(gamma * log_1m_pt) * bce
  if alpha is not None:
    loss = (alpha * y + (1 - alpha) * (1 - y)) * loss
  wl = loss if w is None else w * loss
  return reduce_weighted(wl, w, m, reduction, axis_name)
