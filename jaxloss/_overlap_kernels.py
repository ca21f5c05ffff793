"""The overlap sums of softmax probabilities against class ids: a hand-written custom_vjp.

``overlap_sums`` takes this path for ``activation="softmax"`` with integer labels
and no per-class mask or per-image weights inside the sums (ignore_index and
per-image masks are per-pixel masks, which it takes); the other cases take the
generic maps of ``_overlap.overlap_maps``, which this equals in value and gradient
(tested). Used by ``dice_loss``, ``jaccard_loss``, ``tversky_loss`` and
``generalized_dice_loss``.

Per (group, class) with the pixel mask ``u`` (kept pixels), ``t_c = [y = c]`` and
``k`` = 2 for ``squared`` (else 1):

  I = Σ u p_c t_c,   P = Σ u p_c^k,   T = Σ u t_c.

With the loss's cotangents ``g_I``, ``g_P`` (``T`` does not depend on the logits),
``∂L/∂p_c = u (g_I t_c + g_P k p_c^{k-1})`` and through the softmax
``∂L/∂x_c = p_c (∂L/∂p_c − r)`` with ``r = Σ_j p_j ∂L/∂p_j = u (Σ_j p_j g_P k
p_j^{k-1} + p_y g_I[y])``. The class reductions are the CE kernels' unrolled
per-class slices and ``g_I[y]`` is a per-class select, so no kernel reduces the
small minor class axis row by row and no ``[N, C]`` one-hot map of cotangents is
written: value and gradient of the Dice workload ``[8, 256, 256, 12]`` take about
0.55x the time of autodiff through ``jax.nn.softmax`` and the generic sums on
2 CPU cores (23 against 42 ms). The backward pass recomputes ``p`` from the
log-sum-exp pair.

An invalid id (outside ``[0, C)`` and not ``ignore_index``) at a kept pixel makes
``I`` and ``T`` of every class of its group NaN, as the generic one-hot map does.
Reverse mode only, like the other hand-written rules.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jax import lax

from jaxloss import _checks
from jaxloss._ce_kernels import _logsumexp, _softmax
from jaxloss._class_inputs import _class_sum, _iota_eq, _take_label


def _group_ids(shape: tuple[int, ...], axes: tuple[int, ...],
               dtype: jnp.dtype) -> tuple[jax.Array, int]:
  """Each pixel's Dice group (row-major over the kept pixel axes) and the group count."""
  kept = [i for i in range(len(shape)) if i not in axes]
  gid = jnp.zeros(shape, dtype)
  stride = 1
  for i in reversed(kept):
    gid = gid + stride * lax.broadcasted_iota(dtype, shape, i)
    stride *= shape[i]
  return gid, stride


def _scatter_sums(y, values, weight, keep, valid, gid, groups, c, sums_shape):
  """``Σ weight·value·[y = j]`` per (group, class j) for each of ``values``, as ``sums_shape``.

  The last ``values`` entry must be ones (the counts). A pixel outside ``keep``
  has weight 0 (``keep`` None: ``weight`` is the kept pixels' 0/1 mask). A kept
  pixel with an invalid label (``valid`` False) is never dropped: it goes to an
  extra column ``C`` of its group, whose count then makes every sum of the
  group NaN, as the composition's NaN one-hot row does.
  """
  ids = (gid * (c + 1) + jnp.where(valid, y, c)).reshape(-1)
  out = [jnp.zeros((groups * (c + 1),), v.dtype).at[ids].add((v * weight).reshape(-1))
         .reshape(groups, c + 1) for v in values]
  counts = out[-1]
  if keep is not None:  # the counts are weighted: count the kept pixels themselves
    counts = jnp.zeros((groups * (c + 1),), weight.dtype).at[ids].add(
        keep.astype(weight.dtype).reshape(-1)).reshape(groups, c + 1)
  bad = counts[:, c:] > 0
  return [jnp.where(bad, jnp.nan, o[:, :c]).reshape(sums_shape) for o in out]


@functools.partial(jax.custom_vjp, nondiff_argnums=(3, 4, 5, 6))
def softmax_id_sums(x, y, used, ax, axes, squared, ignore_index):
  """``(I, P, T, T)`` over ``axes`` (the generic sums' order); ``x``: logits, class axis ``ax``.

  Invalid ids are not handled here (see :func:`softmax_id_sums_checked`).
  """
  return _fwd(x, y, used, ax, axes, squared, ignore_index)[0]


def softmax_id_sums_checked(x, y, used, ax, axes, squared, ignore_index):
  """:func:`softmax_id_sums` with ``I`` and ``T`` of a group holding an invalid id NaN.

  Outside the rule, as a float count over the ids: selected into the ``[N, C]``
  sums, or counted with ``jnp.any`` (a reduce-window on XLA:CPU), it cost 1.3-1.5x.
  """
  inter, pred, target, _ = softmax_id_sums(x, y, used, ax, axes, squared, ignore_index)
  bad = jnp.expand_dims(_checks.invalid_labels(y, x.shape[ax], ignore_index), ax)
  if used is not None:
    bad = bad & used
  poisoned = jnp.sum(bad.astype(x.dtype), axis=axes) > 0
  nan = jnp.asarray(jnp.nan, x.dtype)
  inter, target = jnp.where(poisoned, nan, inter), jnp.where(poisoned, nan, target)
  return inter, pred, target, target


def _fwd(x, y, used, ax, axes, squared, ignore_index):
  lse = _logsumexp(x, ax, x.dtype)
  p = _softmax(x, lse, ax)
  t = _iota_eq(y, x.shape, ax)
  zero = jnp.zeros((), x.dtype)
  pu = p if used is None else jnp.where(used, p, zero)
  pred = jnp.sum(pu * pu if squared else pu, axis=axes)
  # p_y, kept for the backward pass (NaN at an invalid id: _take_label).
  py = jnp.exp((_take_label(x, y, ax) - lse[0]) - lse[1])
  tu = t if used is None else t & used
  inter = jnp.sum(jnp.where(tu, pu, zero), axis=axes)
  target = jnp.sum(tu.astype(x.dtype), axis=axes)
  return (inter, pred, target, target), (x, y, used, lse, py)


def _materialized(v: jax.Array) -> jax.Array:
  """``v`` (a small ``[groups, C]`` cotangent) as the output of a matmul with the identity.

  XLA:CPU otherwise fuses the loss's gradient chain (slices, selects, divisions)
  into the ``[N, C]`` backward kernel and evaluates it again per element and per
  class slice (value and gradient of Dice at ``[8, 256, 256, 12]``: 41 against
  22 ms); ``lax.optimization_barrier`` does not survive its pipeline, a dot does.
  Exact at ``HIGHEST`` precision for finite ``v``: every product is ``v·1`` or ``v·0``.
  A NaN or inf cotangent of one class spreads NaN to its group's other classes
  (``inf·0``); the losses give such a cotangent only where the group is already NaN.
  """
  c = v.shape[-1]
  eye = (lax.broadcasted_iota(jnp.int32, (c, c), 0)
         == lax.broadcasted_iota(jnp.int32, (c, c), 1)).astype(v.dtype)
  return jnp.matmul(v, eye, precision=lax.Precision.HIGHEST)


def _bwd(ax, axes, squared, ignore_index, res, g):
  x, y, used, lse, py = res
  p = _softmax(x, lse, ax)  # recomputed: as fast as keeping it, [N, C] less memory
  g_i, g_p = (jnp.expand_dims(_materialized(v), axes) for v in g[:2])
  # T has no gradient.
  dp = g_p * (2 * p) if squared else g_p  # ∂L/∂p_c without the t_c term
  # p_y g_I[y] (NaN at an invalid id, which poisons only that pixel).
  py_gi = py * _take_label(jnp.broadcast_to(g_i, x.shape), y, ax)
  r = _class_sum(p * dp, ax) + py_gi
  zero = jnp.zeros((), x.dtype)
  dx = p * (dp - jnp.expand_dims(r, ax)) + jnp.where(_iota_eq(y, x.shape, ax),
                                                     jnp.expand_dims(py_gi, ax), zero)
  if used is not None:  # a select: NaN at a dropped pixel never reaches its gradient
    dx = jnp.where(used, dx, zero)
  return dx, None, None


softmax_id_sums.defvjp(_fwd, _bwd)
