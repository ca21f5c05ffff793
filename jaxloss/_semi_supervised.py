"""Missing labels, multi-head objectives and FixMatch/UDA pseudo-label cross-entropy.

The consistency and entropy-minimisation losses live in ``_consistency.py``.
"""

from __future__ import annotations

from collections.abc import Mapping

import jax
import jax.numpy as jnp
from jax import lax

from jaxloss import _checks
from jaxloss._class_inputs import _class_reduce, _class_sum, first_argmax
from jaxloss._classification import softmax_cross_entropy
from jaxloss._reduction import reduce_elements, reduce_weighted


def labeled_mask(
    labels: jax.typing.ArrayLike, *, axis: int = -1, ignore_index: int | None = None
) -> jax.Array:
  r"""The boolean mask of the elements that carry a label, for ``where=``.

  .. math::
    m_i = \bigvee_k y_{ik} \ne 0 \ \text{(one-hot rows)}, \qquad
    m_i = y_i \ne \mathrm{ignore\_index} \ \text{(integer labels)}

  A missing label is an all-zero one-hot (or probability) row, or an integer
  label equal to ``ignore_index``. Integer labels of every width (int8 to
  int64, uint8 to uint32) are widened first, so e.g. uint8 labels with
  ``ignore_index=-1`` or int8 labels with ``ignore_index=255`` compare by
  value, never wrap; bool labels are one-hot (multi-hot) rows. The shape is
  static (``labels.shape`` without ``axis`` for one-hot rows, ``labels.shape``
  for integer labels), so the mask works under :func:`jax.jit` where boolean
  indexing would not. With integer labels and no ``ignore_index`` every
  element is labeled. The same rule is applied inside
  :func:`jaxloss.softmax_cross_entropy` and :func:`jaxloss.accuracy`.

  Args:
    labels: integer class ids, or one-hot/probability rows (floating or bool).
    axis: the class axis of one-hot labels (unused for integer labels).
    ignore_index: the integer label that marks a missing label.

  Returns:
    A bool array; True where the element is labeled.

  Examples:
    >>> import jax.numpy as jnp
    >>> import jaxloss
    >>> jaxloss.labeled_mask(jnp.array([[0.0, 1.0], [0.0, 0.0], [1.0, 0.0]])).tolist()
    [True, False, True]
    >>> jaxloss.labeled_mask(jnp.array([2, -1, 0]), ignore_index=-1).tolist()
    [True, False, True]
  """
  y = _checks.real_input("labels", labels)
  ignore_index = _checks.check_ignore_index(ignore_index)
  if jnp.issubdtype(y.dtype, jnp.integer):
    if ignore_index is None:
      return jnp.ones(y.shape, jnp.bool_)
    y = _checks.widen_labels(y)
    # A Python int compares by value against the widened labels (no cast, no wrap).
    return y != ignore_index
  if ignore_index is not None:
    raise ValueError("`ignore_index` only applies to integer labels.")
  if y.ndim == 0:
    raise ValueError("one-hot `labels` must have a class axis; got a scalar.")
  ax = _checks.normalize_axis("axis", axis, y.ndim)
  return jnp.any(y != jnp.zeros((), y.dtype), axis=ax)


def multi_head_loss(
    losses: Mapping[str, jax.typing.ArrayLike],
    *,
    loss_weights: Mapping[str, jax.typing.ArrayLike] | None = None,
    wheres: Mapping[str, jax.typing.ArrayLike] | None = None,
    weights: Mapping[str, jax.typing.ArrayLike] | None = None,
    reduction: str = "mean",
    axis_name: str | None = None,
) -> tuple[jax.Array, dict[str, jax.Array]]:
  r"""Combines per-element losses of several heads, each reduced over its own labels.

  .. math::
    L = \sum_h \lambda_h L_h, \qquad
    L_h = \mathrm{reduce}(l_h;\ w_h, m_h)

  Each head :math:`h` (classifier, reconstruction, ...) is reduced by
  :func:`jaxloss.reduce_loss` with its own mask ``wheres[h]`` and weights
  ``weights[h]``, so ``"mean"`` divides a head by *its* labeled elements, not
  by the batch size. A head with no labeled element in the batch gives
  :math:`L_h = 0` with zero gradient, never NaN. Heads missing from
  ``loss_weights`` get :math:`\lambda_h = 1`; ``loss_weights`` may be traced
  (a ramp-up schedule).

  Pass per-element losses computed with ``reduction="none"`` and the same
  ``where``: the losses then keep masked (e.g. NaN) inputs out of their own
  arithmetic. Masked elements contribute neither value nor gradient, with
  respect to the losses and to the weights, even when a masked loss or weight
  is NaN or inf. :func:`jaxloss.checked` reports unmasked NaN or inf losses
  and weights, and negative weights.

  Equals Keras ``compile(loss={...}, loss_weights={...})`` with a 0/1
  ``sample_weight`` per output and losses built with
  ``reduction="mean_with_sample_weight"``; Keras' default
  ``"sum_over_batch_size"`` still divides by the full batch.

  Args:
    losses: head name -> per-element losses (any floating dtype and shape).
    loss_weights: head name -> scalar :math:`\lambda_h \ge 0` (1 if absent);
      a concrete NaN, inf or negative value raises ``ValueError``.
    wheres: head name -> boolean mask over that head's elements, e.g.
      :func:`jaxloss.labeled_mask` of its labels ([B] aligns with [B, ...]).
    weights: head name -> non-negative per-element weights.
    reduction: ``"sum"``, ``"mean"``, ``"weighted_mean"`` or
      ``"sum_by_nonzero_weights"`` (see :func:`jaxloss.reduce_loss`), per head.
    axis_name: optional mapped axis name to ``psum`` each head's reduction over.

  Returns:
    ``(total, per_head)``: the weighted scalar total and a dict of each head's
    reduced loss :math:`L_h` (before :math:`\lambda_h`) for logging, all
    float32 (float64 when a head is float64 under x64).

  Examples:
    >>> import jax.numpy as jnp
    >>> import jaxloss
    >>> cls = jnp.array([0.5, 0.0, 1.5, 0.0])       # rows 1 and 3 are unlabeled
    >>> rec = jnp.array([[0.1, 0.3], [0.2, 0.2], [0.0, 0.4], [0.3, 0.5]])
    >>> total, heads = jaxloss.multi_head_loss(
    ...     {"cls": cls, "rec": rec}, loss_weights={"rec": 0.5},
    ...     wheres={"cls": jnp.array([True, False, True, False])})
    >>> round(float(total), 4), {k: round(float(v), 4) for k, v in heads.items()}
    (1.125, {'cls': 1.0, 'rec': 0.25})
  """
  _checks.check_reduction(reduction)
  if reduction == "none":
    raise ValueError("`reduction` must be a scalar reduction for multi_head_loss (heads may "
                     "have different shapes); got 'none'.")
  if not losses:
    raise ValueError("`losses` must map at least one head name to its per-element losses.")
  options = {"loss_weights": loss_weights or {}, "wheres": wheres or {},
             "weights": weights or {}}
  for arg, mapping in options.items():
    unknown = sorted(set(mapping) - set(losses))
    if unknown:
      raise ValueError(f"`{arg}` has keys {unknown} that are not heads of `losses` "
                       f"{sorted(losses)}.")
  ls = {h: _checks.float_input(f"losses[{h!r}]", l) for h, l in losses.items()}
  dtype = _checks.compute_dtype(*ls.values())
  per_head, total = {}, jnp.zeros((), dtype)
  for h, l in ls.items():
    w, m = _head_weights_and_mask(h, options["weights"].get(h), options["wheres"].get(h),
                                  l.shape, dtype)
    _checks.check_finite(f"losses[{h!r}]", l, where=m)
    # reduce_elements selects masked losses away before they meet the weights.
    per_head[h] = reduce_elements(l.astype(dtype), w, m, reduction, axis_name)
    name = f"loss_weights[{h!r}]"
    lam = options["loss_weights"].get(h, 1.0)
    _checks.scalar_option(name, lam, low=0.0)
    lam = _checks.real_input(name, lam)
    _checks.check_finite(name, lam)
    _checks.check_nonnegative(name, lam)
    total = total + lam.astype(dtype) * per_head[h]
  return total, per_head


def _head_weights_and_mask(head, weights, where, shape, dtype):
  """``weights_and_mask`` for one head, naming ``weights[head]`` / ``wheres[head]``."""
  w = m = None
  if where is not None:
    name = f"wheres[{head!r}]"
    m = _checks.align_to_loss(name, _checks.bool_input(name, where), shape, f"loss of {head!r}")
  if weights is not None:
    name = f"weights[{head!r}]"
    w = _checks.align_to_loss(name, _checks.real_input(name, weights), shape,
                              f"loss of {head!r}").astype(dtype)
    _checks.check_finite(name, w, where=m)
    _checks.check_nonnegative(name, w, where=m)
    if m is not None:
      # As in _checks.weights_and_mask: a NaN/inf weight under the mask leaves here
      # (double where), so it has zero value and zero gradient.
      w = jnp.where(m, w, jnp.zeros((), dtype))
  return w, m


def _class_logits(names, arrays, axis, weights, where, reduction):
  """Checks same-shape logits with a class axis, casts them, zeroes masked rows.

  ``w``/``m`` are aligned to the per-element shape (no class axis).
  """
  xs = [_checks.float_input(n, a) for n, a in zip(names, arrays, strict=True)]
  _checks.check_reduction(reduction)
  if xs[0].ndim == 0:
    raise ValueError(f"`{names[0]}` must have a class axis; got a scalar.")
  for n, x in zip(names[1:], xs[1:], strict=True):
    if x.shape != xs[0].shape:
      raise ValueError(f"`{n}` has shape {tuple(x.shape)}; expected the shape of "
                       f"`{names[0]}` {tuple(xs[0].shape)}.")
  ax = _checks.normalize_axis("axis", axis, xs[0].ndim)
  _checks.check_axis_size(names[0], xs[0], ax, "class axis")
  elem_shape = xs[0].shape[:ax] + xs[0].shape[ax + 1:]
  dtype = _checks.compute_dtype(*xs)
  w, m = _checks.weights_and_mask(weights, where, elem_shape, dtype)
  mc = None if m is None else jnp.expand_dims(m, ax)
  for n, x in zip(names, xs, strict=True):
    _checks.check_finite(n, x, where=mc)
  xs = [x.astype(dtype) for x in xs]
  if mc is not None:  # double-where: masked rows never reach the arithmetic
    xs = [jnp.where(mc, x, jnp.zeros((), dtype)) for x in xs]
  return xs, ax, w, m, dtype


def _log_softmax_tempered(x: jax.Array, temperature, axis: int) -> jax.Array:
  """``log softmax(x / T)`` from ``(x − max x) / T`` (<= 0, max 0): ``x / T`` itself
  overflows at 3e38 for T < 1."""
  m = lax.stop_gradient(jnp.expand_dims(_class_reduce(jnp.maximum, x, axis), axis))
  u = (x - m) / jnp.asarray(temperature, x.dtype)
  return u - jnp.expand_dims(jnp.log(_class_sum(jnp.exp(u), axis)), axis)


def pseudo_label_cross_entropy(
    logits: jax.typing.ArrayLike,
    teacher_logits: jax.typing.ArrayLike,
    *,
    threshold: float = 0.95,
    temperature: float = 1.0,
    hard: bool = True,
    axis: int = -1,
    weights: jax.typing.ArrayLike | None = None,
    where: jax.typing.ArrayLike | None = None,
    reduction: str = "mean",
    axis_name: str | None = None,
) -> tuple[jax.Array, jax.Array]:
  r"""Confidence-masked pseudo-label cross-entropy (FixMatch, Sohn et al. 2020).

  With teacher probabilities :math:`q = \mathrm{softmax}(t)`, confidence
  :math:`c_i = [\max_k q_{ik} \ge \tau]` and targets
  :math:`\hat y_i = \arg\max_k t_{ik}` (``hard=True``) or
  :math:`\hat y_i = \mathrm{softmax}(t_i / T)` (``hard=False``), both under
  ``stop_gradient``:

  .. math::
    l_i = c_i\, \mathrm{CE}(x_i, \hat y_i), \qquad
    \text{"mean"}: \frac{\sum_i w_i m_i l_i}{\sum_i m_i}, \qquad
    \text{"weighted\_mean"}: \frac{\sum_i w_i m_i l_i}{\sum_i w_i c_i m_i}

  so ``"mean"`` divides by all the unlabeled examples given (unmasked by
  ``where``), as FixMatch does, and ``"weighted_mean"`` (and
  ``"sum_by_nonzero_weights"``) only by the confident ones. The confidence is
  that of the *unsharpened* teacher, as in UDA; ``temperature`` only
  sharpens soft targets (ignored when ``hard``). The CE is
  :func:`jaxloss.softmax_cross_entropy`.

  Equals FixMatch's unlabeled loss ``mean(CE(strong, argmax(q)) * (max(q) >=
  tau))`` with ``logits`` the strongly and ``teacher_logits`` the weakly
  augmented predictions, ``reduction="mean"``; UDA's confidence-masked loss
  with ``hard=False``, ``temperature=uda_softmax_temp`` (UDA uses KL, which
  differs from this CE by the target's entropy, a constant in ``logits``).

  Args:
    logits: student logits (differentiated), with a class axis.
    teacher_logits: teacher logits, the shape of ``logits`` (never differentiated).
    threshold: confidence threshold :math:`\tau \in [0, 1]`, a scalar (may be
      traced; a concrete NaN or out-of-range value raises ``ValueError``).
    temperature: :math:`T > 0` for the soft targets, a finite scalar.
    hard: argmax targets if True, sharpened probabilities if False.
    axis: the class axis.
    weights: optional per-example weights.
    where: optional boolean mask, e.g. ``~jaxloss.labeled_mask(labels)`` to
      use the unlabeled rows only.
    reduction: see :func:`jaxloss.reduce_loss`.
    axis_name: optional mapped axis name to ``psum`` the reduction over.

  Returns:
    ``(loss, confident_fraction)``: the reduced loss (per-element
    :math:`w_i m_i l_i` for ``"none"``), and the fraction of the unmasked
    examples whose teacher is confident, for logging (0 when none is given).

  Examples:
    >>> import jax.numpy as jnp
    >>> import jaxloss
    >>> teacher = jnp.array([[4.0, 0.0], [0.1, 0.0]])   # confident, not confident
    >>> loss, frac = jaxloss.pseudo_label_cross_entropy(
    ...     jnp.array([[1.0, 0.0], [0.0, 2.0]]), teacher, threshold=0.9)
    >>> round(float(loss), 4), float(frac)               # CE(row 0, class 0) / 2
    (0.1566, 0.5)
  """
  _checks.scalar_option("threshold", threshold, low=0.0, high=1.0)  # traced: a schedule
  _checks.check_static_positive("temperature", temperature)
  (x, t), ax, w, m, dtype = _class_logits(
      ("logits", "teacher_logits"), (logits, teacher_logits), axis, weights, where, reduction)
  t = lax.stop_gradient(t)
  t_max = jnp.expand_dims(_class_reduce(jnp.maximum, t, ax), ax)
  e = jnp.exp(t - t_max)
  # max_k softmax(t)_k = 1 / Σ_k exp(t_k − max t): the sum is ≥ 1, no overflow.
  confident = 1 / _class_sum(e, ax) >= jnp.asarray(threshold, dtype)
  if hard:
    targets = first_argmax(t, t_max, ax)
  else:
    targets = jnp.exp(_log_softmax_tempered(t, temperature, ax))
  ce = softmax_cross_entropy(x, targets, axis=ax, where=m, reduction="none")
  c = confident.astype(dtype)
  w_eff = c if w is None else c * w
  # Selected, not multiplied: an inf CE of an unconfident example stays out.
  wl = jnp.where(confident, ce if w is None else w * ce, jnp.zeros((), dtype))
  loss = reduce_weighted(wl, w_eff, m, reduction, axis_name)
  fraction = reduce_weighted(c, None, m, "mean", axis_name)
  return loss, fraction
