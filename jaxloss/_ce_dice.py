"""Fused softmax CE + soft Dice for class-id labels: one softmax for both parts.

``softmax_ce_dice_loss`` on integer labels, class axis last, without label
smoothing or a mapped axis, takes this path; the others take the composition of
``softmax_cross_entropy`` and ``dice_terms`` (``_ce_dice_loss.py``), which this
equals in value and gradient (tested). Both parts are linear in their per-pixel
and per-(group, class) losses, so with reduction coefficients that do not depend
on the logits the totals are ``Σ c·nll`` and ``Σ a·(1 − D)``.

The forward pass forms the log-sum-exp pair once and the probabilities ``p``
once, which the backward pass reuses (no second softmax). For class-id labels
the Dice sums need no ``[N, C]`` one-hot map: ``Σ p·t`` of class ``y`` is the sum
of ``p_y = exp(−nll)`` over the pixels labelled ``y``, and ``Σ t`` is their
count, both a scatter-add of one value per pixel into ``[groups, C]``; only
``Σ p`` is a pass over ``p``.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jax import lax

from jaxloss import _checks
from jaxloss._bce_dice import _sum_to, _sum_weighted
from jaxloss._class_inputs import (
    _class_sum,
    _take_label,
    match_vma,
    prepare_class_inputs,
    take_class,
)
from jaxloss._overlap import batch_level_mask, class_and_reduce_axes
from jaxloss._overlap_kernels import _group_ids, _scatter_sums
from jaxloss._reduction import reduction_coefficients, safe_div


@functools.partial(jax.custom_vjp, nondiff_argnums=(8,))
def _fused(x, y, keep, k, cc, a, s, dice_mask, axes):
  return _fused_fwd(x, y, keep, k, cc, a, s, dice_mask, axes)[0]


def _fused_fwd(x, y, keep, k, cc, a, s, dice_mask, axes):
  ax = x.ndim - 1
  c = x.shape[ax]
  m = jnp.max(x, axis=ax)
  ls = jnp.log(_class_sum(jnp.exp(x - jnp.expand_dims(m, ax)), ax))
  # −log p_y = log Σ − (x_y − m): finite at ±3e38; NaN for an invalid label.
  nll = ls - (_take_label(x, y, ax) - m)
  ce = jnp.sum(cc * nll)
  # p, 0 at the pixels that leave the Dice sums (`keep` False). The select is its
  # last operation, so XLA:CPU writes it once (the backward pass's residual too)
  # and sums it in a plain reduction.
  p = jnp.where(jnp.expand_dims(keep, ax),
                jnp.exp((x - jnp.expand_dims(m, ax)) - jnp.expand_dims(ls, ax)),
                jnp.zeros((), x.dtype))
  pred = _sum_weighted(p, axes, k)
  valid = (y >= 0) & (y < c)
  gid, groups = _group_ids(y.shape, axes, y.dtype)
  weight = keep.astype(x.dtype) if k is None else jnp.where(keep, jnp.squeeze(k, ax), 0)
  inter, target = _scatter_sums(y, (jnp.exp(-nll), jnp.ones_like(nll)), weight,
                                None if k is None else keep, valid, gid, groups, c, pred.shape)
  num, den = 2 * inter + s, pred + target + s
  loss = 1 - safe_div(num, den)
  dice = jnp.sum(jnp.where(dice_mask, a * loss, 0) if dice_mask is not None else a * loss)
  return (ce, dice), (p, y, k, keep, cc, nll, a, s, num, den, loss, dice_mask)


def _fused_bwd(axes, res, g):
  del axes
  p, y, k, keep, cc, nll, a, s, num, den, loss, dice_mask = res
  g_ce, g_dice = g
  ax = p.ndim - 1
  onehot = lax.broadcasted_iota(y.dtype, p.shape, ax) == jnp.expand_dims(y, ax)
  if dice_mask is not None:
    a = jnp.where(dice_mask, a, 0)
  ga = (g_dice * a) * safe_div(jnp.ones_like(den), den * den)
  # D = num/den, num = 2 Σ k p t + s, den = Σ k p + Σ k t + s:
  #   ∂(1 − D)/∂p_c = k (num − 2 t_c den) / den² = u_c − v_c t_c,
  # and through the softmax ∂/∂x_c = p_c (∂/∂p_c − Σ_j p_j ∂/∂p_j). At the pixels
  # that leave the sums p = 0, so the Dice term vanishes there.
  u, v = ga * num, 2 * ga * den
  gp = u - jnp.where(onehot, v, 0)
  if k is not None:
    gp = gp * k
  dice_dx = p * (gp - jnp.expand_dims(_class_sum(p * gp, ax), ax))
  # CE: ∂nll/∂x_c = softmax_c − t_c; p is the softmax wherever cc is non-zero.
  dx = jnp.expand_dims(g_ce * cc, ax) * (p - onehot.astype(p.dtype)) + dice_dx
  dcc = g_ce * nll
  da = _sum_to(g_dice * (loss if dice_mask is None else jnp.where(dice_mask, loss, 0)), a.shape)
  ds = jnp.sum(ga * (num - den))
  dk = None
  if k is not None:  # ∂(1 − D)/∂k_i = (num (p_i + t_i) − 2 p_i t_i den) / den², per class
    t = jnp.logical_and(onehot, jnp.expand_dims(keep, ax)).astype(p.dtype)
    dk = _sum_to(ga * (num * (p + t) - 2 * (p * t) * den), k.shape)
  return (dx, None, None, match_vma(dk, k), match_vma(dcc, cc), match_vma(da, a),
          match_vma(ds, s), None)


_fused.defvjp(_fused_fwd, _fused_bwd)


def ce_dice_totals(logits, labels, *, axis, class_weights, ignore_index, reduce_axes,
                   include_background, smooth, weights, where,
                   reduction) -> tuple[jax.Array, jax.Array] | None:
  """The reduced ``(ce, dice)`` of the fused path, or None where it does not apply.

  It applies to class-id labels with the class axis last and a non-empty batch;
  the caller has checked the options, ``reduce_axes`` and the channel count.
  """
  x_in, y_in = jnp.asarray(logits), jnp.asarray(labels)
  ax = _checks.normalize_axis("axis", axis, x_in.ndim)
  if (ax != x_in.ndim - 1 or x_in.size == 0 or not _checks.is_class_ids(y_in)
      or (y_in.dtype == jnp.bool_ and y_in.shape == x_in.shape)):
    return None
  t = prepare_class_inputs(x_in, y_in, axis=ax, class_weights=class_weights, weights=weights,
                           where=where, ignore_index=ignore_index, reduction=reduction)
  dtype, c = t.dtype, t.num_classes
  x, y = t.logits.astype(dtype), t.labels
  elem_shape = y.shape
  ndim = x.ndim
  _, axes = class_and_reduce_axes(ndim, ax, reduce_axes)
  # CE: Σ c_i nll_i with c = reduction_coefficients(w_i cw_{y_i}, m_i) (NaN for an
  # invalid label: its class weight is NaN, as in softmax_cross_entropy).
  cw_y = None if t.class_weights is None else take_class(t.class_weights, y)
  w_ce = t.weights if cw_y is None else (cw_y if t.weights is None else t.weights * cw_y)
  cc = jnp.broadcast_to(reduction_coefficients(w_ce, t.where, elem_shape, dtype, reduction),
                        elem_shape)
  keep = jnp.ones(elem_shape, bool) if t.where is None else jnp.broadcast_to(t.where, elem_shape)
  # Dice: per (group, class) losses, the masks and weights per image (a scalar or [B]).
  w_img, m_img = _checks.weights_and_mask(weights, where, x.shape[:1], dtype, what="per-image")

  def per_image(v):
    return None if v is None else v.reshape(v.shape + (1,) * (ndim - 1))

  w_in, m_in = per_image(w_img), per_image(m_img)
  cw = None
  if t.class_weights is not None:
    cw = t.class_weights.reshape((1,) * (ndim - 1) + (c,))
  sums_shape = tuple(1 if i in axes else n for i, n in enumerate(x.shape))
  bg = None
  if not include_background:
    bg = lax.broadcasted_iota(jnp.int32, (1,) * (ndim - 1) + (c,), ndim - 1) != 0
  k = None
  if 0 in axes:
    # One loss per class over the batch: the images' weights and mask act in the sums.
    present = m_img
    if w_in is not None:
      k, present = w_in, w_img != 0
    elif m_in is not None:
      k = m_in.astype(dtype)
    mask = _and(batch_level_mask(present, x.shape[0], ndim, None), bg)
    a = reduction_coefficients(cw, mask, sums_shape, dtype, reduction, None)
  else:
    mask = _and(m_in, bg)
    w = w_in if cw is None else (cw if w_in is None else w_in * cw)
    a = reduction_coefficients(w, mask, sums_shape, dtype, reduction, None)
  return _fused(x, y, keep, k, cc, a, jnp.asarray(smooth).astype(dtype), mask, axes)


def _and(a, b):
  if a is None:
    return b
  return a if b is None else jnp.logical_and(a, b)
