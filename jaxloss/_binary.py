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
  _checks.check_axis_size("logits", x, ax, "class axis")
  dtype = _checks.compute_dtype(x, y)
  w, m = _checks.weights_and_mask(weights, where, x.shape, dtype)
  per_class = {}
  for name, v in class_arrays.items():
    if v is None:
      per_class[name] = None
      continue
    v = _checks.per_class_vector(name, v, x.shape[ax], dtype,
                                 f" of `logits` {tuple(x.shape)} along axis {ax}")
    per_class[name] = _per_class(v, x.ndim, ax)
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
  :math:`-\log(1-\sigma(x)) = \mathrm{softplus}(x)`, with
  :math:`\mathrm{softplus}(\pm x) = \max(\pm x, 0) + \mathrm{log1p}(e^{-|x|})`
  and :math:`1 - y' = (1-\varepsilon)(1-y) + \varepsilon/2`. Every term is
  non-negative, so nothing cancels: each element is accurate to a few ulps
  (also for confidently correct logits, where the loss is tiny), exact at
  :math:`y \in \{0, 1\}`, and finite for any finite logit (±3e38 included)
  whenever the true loss is representable. The gradient
  :math:`\partial l/\partial x = -q_c y' \sigma(-x) + (1-y') \sigma(x)` uses a
  stable :math:`\sigma` (1/2 at 0, not a subgradient). The reduction is
  :func:`jaxloss.reduce_loss` over all elements.

  Equals:

  * ``torch.nn.functional.binary_cross_entropy_with_logits(x, y,
    pos_weight=q, weight=c, reduction=r)`` with ``class_weights=c`` and the
    same ``r`` (torch's ``"mean"`` divides by the element count, our
    ``"mean"``; our ``"weighted_mean"`` divides by the total weight instead);
  * ``tf.nn.weighted_cross_entropy_with_logits(y, x, pos_weight=q)`` per
    element;
  * ``optax.sigmoid_binary_cross_entropy(x, y)`` per element (value and
    gradient) without weights.
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
  _checks.scalar_option("label_smoothing", label_smoothing, low=0.0, high=1.0)
  x, y, pc, w, m, _, dtype = prepare_multilabel_inputs(
      logits, labels, axis=axis, class_arrays={"pos_weight": pos_weight,
                                               "class_weights": class_weights},
      weights=weights, where=where, reduction=reduction)
  y, y_bar = smoothed_labels(y, label_smoothing, dtype)
  loss = bce_terms(x, y, y_bar, pc["pos_weight"])
  cw = pc["class_weights"]
  if cw is not None:
    w = cw if w is None else w * cw
  wl = loss if w is None else w * loss
  return reduce_weighted(wl, w, m, reduction, axis_name)


def smoothed_labels(y: jax.Array, eps, dtype) -> tuple[jax.Array, jax.Array]:
  """``(y', 1 − y')`` with ``y' = (1 − ε) y + ε/2``, each formed without cancellation.

  ``1 − y'`` is ``(1 − ε)(1 − y) + ε/2``, not ``1 − y'``: at ``y = 1`` and a
  small ``ε`` the subtraction would lose the digits of ``ε/2``. ``1 − y`` is
  exact for ``y ∈ {0, 1}`` (and for ``y ≥ 1/2``).
  """
  y_bar = 1 - y
  try:
    if float(eps) == 0.0:
      return y, y_bar
  except (jax.errors.ConcretizationTypeError, jax.errors.TracerArrayConversionError):
    pass  # a traced ε: apply the formula, which is exact at ε = 0 too
  eps = jnp.asarray(eps, dtype)
  keep, half = 1 - eps, eps / 2
  return keep * y + half, keep * y_bar + half


@jax.custom_jvp
def sigmoid_parts(x: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array]:
  """``(σ(x), σ(−x), softplus(x), softplus(−x))``, each to a few ulps, finite for any x.

  With ``e = exp(−|x|) ∈ (0, 1]`` and ``L = log1p(e)``: ``softplus(±x) =
  max(±x, 0) + L`` (two non-negative terms, so relatively accurate even where
  it is tiny), ``σ(|x|) = 1/(1 + e)`` and ``σ(−|x|) = e/(1 + e)`` (no ``1 − σ``).
  One ``exp`` and one ``log1p`` per element. At ±3e38 ``e = 0``: σ is 0 or 1 and
  softplus is ``max(±x, 0)``.

  The derivatives are written by hand (``σ' = σ(x) σ(−x)``, ``softplus' = σ``):
  autodiff of the ``max``/``abs`` form would pick inconsistent subgradients at
  ``x = 0`` (``abs'(0) = 0``) and return e.g. ``softplus'(0) = 0`` instead of 1/2.
  They are expressed through ``sigmoid_parts`` itself, so every order is exact.
  """
  e = jnp.exp(-jnp.abs(x))
  log_term = jnp.log1p(e)
  nonneg = x >= 0
  r = 1 / (1 + e)
  er = e * r
  p, p_neg = jnp.where(nonneg, r, er), jnp.where(nonneg, er, r)
  return p, p_neg, jnp.maximum(x, 0) + log_term, jnp.maximum(-x, 0) + log_term


@sigmoid_parts.defjvp
def _sigmoid_parts_jvp(primals, tangents):
  (x,), (dx,) = primals, tangents
  p, p_neg, sp_pos, sp_neg = sigmoid_parts(x)
  dp = p * p_neg * dx
  return (p, p_neg, sp_pos, sp_neg), (dp, -dp, p * dx, -p_neg * dx)


def softplus(x: jax.Array) -> jax.Array:
  """``log(1 + e^x)``, accurate and finite for any x, with ``softplus'(0) = 1/2`` exactly."""
  return sigmoid_parts(x)[2]


def bce_terms(x: jax.Array, y: jax.Array, y_bar: jax.Array,
              q: jax.Array | None = None) -> jax.Array:
  """``q·y·softplus(−x) + y_bar·softplus(x)`` per element (``q = 1`` if None).

  Two non-negative terms (``y, y_bar ∈ [0, 1]``, ``q ≥ 0``): no cancellation,
  exact at ``y ∈ {0, 1}``, finite at ±3e38 when the true value is. Its
  derivative in ``x`` is ``−q·y·σ(−x) + y_bar·σ(x)`` (through ``sigmoid_parts``).
  """
  _, _, sp_pos, sp_neg = sigmoid_parts(x)
  qy = y if q is None else q * y
  return qy * sp_neg + y_bar * sp_pos
