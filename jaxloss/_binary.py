"""Multi-label sigmoid binary cross-entropy with per-class weights."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxloss import _checks
from jaxloss._reduction import reduce_weighted


def _per_class(v: jax.Array, ndim: int, axis: int) -> jax.Array:
  """A ``[C]`` vector shaped to broadcast along ``axis`` of a rank-``ndim`` array."""
  return jnp.expand_dims(v, tuple(i for i in range(ndim) if i != axis))


def prepare_multilabel_inputs(logits, labels, *, axis, class_arrays, weights, where, reduction):
  """Front of the sigmoid (multi-label) losses: elementwise over logits' full shape.

  Returns ``(x, y, per_class, w, m, ax, dtype)``; ``per_class`` holds each
  ``[C]`` option (e.g. ``pos_weight``) shaped to broadcast along ``axis``.
  ``weights`` and ``where`` act on the full element shape (prefix rule), so
  per-example ``[B]`` weights broadcast over pixels and classes.
  """
  x = _checks.float_input("logits", logits)
  y = _checks.real_input("labels", labels)
  _checks.check_reduction(reduction)
  if y.shape != x.shape:
    raise ValueError(
        f"`labels` has shape {tuple(y.shape)}; expected the shape of `logits` "
        f"{tuple(x.shape)} (multi-hot or probability targets per class)."
    )
  if x.ndim == 0:
    raise ValueError("`logits` must have a class axis; got a scalar.")
  ax = _checks.normalize_axis("axis", axis, x.ndim)
  dtype = _checks.compute_dtype(x, y)
  w, m = _checks.weights_and_mask(weights, where, x.shape, dtype)
  per_class = {}
  for name, v in class_arrays.items():
    if v is None:
      per_class[name] = None
      continue
    v = _checks.real_input(name, v)
    if v.shape != (x.shape[ax],):
      raise ValueError(
          f"`{name}` has shape {tuple(v.shape)}; expected ({x.shape[ax]},), one value per "
          f"class of `logits` {tuple(x.shape)} along axis {ax}."
      )
    _checks.check_nonnegative(name, v)
    per_class[name] = _per_class(v.astype(dtype), x.ndim, ax)
  x, y = x.astype(dtype), y.astype(dtype)
  _checks.check_finite("logits", x, where=m)
  _checks.check_finite("labels", y, where=m)
  if m is not None:
    zero = jnp.zeros((), dtype)
    x, y = jnp.where(m, x, zero), jnp.where(m, y, zero)
  return x, y, per_class, w, m, ax, dtype


def sigmoid_binary_cross_entropy(
    logits: jax.typing.ArrayLike,
    labels: jax.typing.ArrayLike,
    *,
    axis: int = -1,
    pos_weight: jax.typing.ArrayLike | None = None,
    class_weights: jax.typing.ArrayLike | None = None,
    weights: jax.typing.ArrayLike | None = None,
    where: jax.typing.ArrayLike | None = None,
    label_smoothing: float = 0.0,
    reduction: str = "mean",
    axis_name: str | None = None,
) -> jax.Array:
  r"""Multi-label sigmoid binary cross-entropy with per-class positive and class weights.

  Per element (every pixel and class), with :math:`y' = (1-\varepsilon) y +
  \varepsilon/2`, positive weight :math:`q_c` and class weight :math:`c_c`:

  .. math::
    l = q_c\, y'\, \mathrm{softplus}(-x) + (1 - y')\, \mathrm{softplus}(x),
    \qquad w = \mathrm{weights} \cdot c_c

  using :math:`-\log\sigma(x) = \mathrm{softplus}(-x)` and
  :math:`-\log(1-\sigma(x)) = \mathrm{softplus}(x)`, finite for any logit.
  The reduction is :func:`jaxloss.reduce_loss` over all elements.

  Equals:

  * ``torch.nn.functional.binary_cross_entropy_with_logits(x, y,
    pos_weight=q, weight=c, reduction=r)`` with ``class_weights=c`` and the
    same ``r`` (torch's ``"mean"`` divides by the element count, our
    ``"mean"``; our ``"weighted_mean"`` divides by the total weight instead);
  * ``tf.nn.weighted_cross_entropy_with_logits(y, x, pos_weight=q)`` per
    element;
  * ``optax.sigmoid_binary_cross_entropy(x, y)`` per element without weights.
  * Keras ``BinaryCrossentropy(from_logits=True, label_smoothing=ε)`` uses the
    same smoothing :math:`y(1-\varepsilon) + \varepsilon/2`.

  Args:
    logits: logits, one per class along ``axis``.
    labels: multi-hot or probability targets, the shape of ``logits``.
    axis: the class axis (where ``pos_weight`` and ``class_weights`` apply).
    pos_weight: optional ``[C]`` weight of the positive term.
    class_weights: optional ``[C]`` weight of each class's elements.
    weights: optional weights over elements (prefix rule of ``reduce_loss``).
    where: optional boolean mask over elements.
    label_smoothing: :math:`\varepsilon \in [0, 1]`.
    reduction: see :func:`jaxloss.reduce_loss`.
    axis_name: optional mapped axis name to ``psum`` the reduction over.

  Returns:
    The reduced loss, or per-element weighted losses for ``"none"``.

  Examples:
    >>> import jax.numpy as jnp
    >>> import jaxloss
    >>> logits = jnp.array([[3.0, -2.0], [0.0, 1e4]])
    >>> labels = jnp.array([[1.0, 0.0], [1.0, 1.0]])
    >>> losses = jaxloss.sigmoid_binary_cross_entropy(logits, labels, reduction="none")
    >>> [[round(v, 4) for v in row] for row in losses.tolist()]
    [[0.0486, 0.1269], [0.6931, 0.0]]
  """
  if not 0.0 <= label_smoothing <= 1.0:
    raise ValueError(f"`label_smoothing` must lie in [0, 1]; got {label_smoothing!r}.")
  x, y, pc, w, m, _, _ = prepare_multilabel_inputs(
      logits, labels, axis=axis, class_arrays={"pos_weight": pos_weight,
                                               "class_weights": class_weights},
      weights=weights, where=where, reduction=reduction)
  if label_smoothing:
    y = (1 - label_smoothing) * y + 0.5 * label_smoothing
  q = pc["pos_weight"]
  loss = _bce(x, y, jnp.ones((), x.dtype) if q is None else q)
  cw = pc["class_weights"]
  if cw is not None:
    w = cw if w is None else w * cw
  wl = loss if w is None else w * loss
  return reduce_weighted(wl, w, m, reduction, axis_name)


@jax.custom_jvp
def softplus(x: jax.Array) -> jax.Array:
  # softplus(x) = log(1 + e^x) = max(x, 0) + log1p(e^−|x|): no overflow at ±1e4.
  return jnp.maximum(x, 0) + jnp.log1p(jnp.exp(-jnp.abs(x)))


@softplus.defjvp
def _softplus_jvp(primals, tangents):
  # softplus' = σ(x) = exp(x − softplus(x)). Autodiff of the max/abs form would pick
  # inconsistent subgradients at x = 0 (max: 1/2, abs: ±1) and return 0 instead of 1/2.
  (x,), (dx,) = primals, tangents
  sp = softplus(x)
  return sp, jnp.exp(x - sp) * dx


@jax.custom_jvp
def _bce(x: jax.Array, y: jax.Array, q: jax.Array) -> jax.Array:
  """q·y·softplus(−x) + (1 − y)·softplus(x), per element.

  With softplus(−x) = softplus(x) − x this is (q y + 1 − y)·softplus(x) − q y x:
  one softplus per element, finite for any logit.
  """
  qy = q * y
  return (qy + 1 - y) * softplus(x) - qy * x


@_bce.defjvp
def _bce_jvp(primals, tangents):
  # ∂l/∂x = (q y + 1 − y)·σ(x) − q y, with σ(x) = exp(x − softplus(x));
  # ∂l/∂y = q·(softplus(x) − x) − softplus(x);  ∂l/∂q = y·(softplus(x) − x).
  # Written by hand so XLA computes value and gradient from x alone, saving nothing.
  (x, y, q), (dx, dy, dq) = primals, tangents
  sp = softplus(x)
  qy = q * y
  value = (qy + 1 - y) * sp - qy * x
  grad_x = (qy + 1 - y) * jnp.exp(x - sp) - qy
  return value, grad_x * dx + (q * (sp - x) - sp) * dy + y * (sp - x) * dq
