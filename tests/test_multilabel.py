"""Multi-label segmentation: the compositions' per-class components and the multi-label metrics.

References are float64 NumPy transcriptions of the formulas (and scikit-learn's
``multilabel_confusion_matrix`` / ``jaccard_score`` / ``f1_score`` when it is
importable).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import PartitionSpec as P

import jaxloss

B, H, W, C = 8, 6, 6, 4


def _multilabel_case(seed: int = 0, shape=(B, H, W, C)):
  rng = np.random.default_rng([16, 1, seed])
  logits = rng.normal(size=shape).astype(np.float32)
  labels = rng.uniform(size=shape) < np.array([0.4, 0.3, 0.05, 0.3])[: shape[-1]]
  return logits, labels


def _softmax_case(seed: int = 0):
  rng = np.random.default_rng([16, 2, seed])
  logits = rng.normal(size=(B, H, W, C)).astype(np.float32)
  labels = rng.integers(0, C, size=(B, H, W)).astype(np.int32)
  return logits, labels


PER_IMAGE = {"weights": np.linspace(0.5, 2.0, B).astype(np.float32),
             "where": np.arange(B) % 3 != 1}


# ------------------------------------------------------------------ compositions: components

@functools.partial(jax.jit, static_argnames=("reduce_axes", "with_options"))
def _bce_dice(x, y, reduce_axes=None, with_options=True):
  opts = dict(pos_weight=jnp.array([1.0, 2.0, 3.0, 0.5]),
              class_weights=jnp.array([1.0, 0.5, 2.0, 1.0]), **PER_IMAGE) if with_options else {}
  return jaxloss.sigmoid_bce_dice_loss(x, y, reduce_axes=reduce_axes, return_components=True,
                                       **opts)


def test_bce_dice_components_equal_their_public_parts():
  x, y = _multilabel_case()
  pw, cw = jnp.array([1.0, 2.0, 3.0, 0.5]), jnp.array([1.0, 0.5, 2.0, 1.0])
  total, parts = _bce_dice(x, y)
  assert sorted(parts) == ["bce", "bce_per_class", "dice", "dice_per_class"]
  assert parts["bce_per_class"].shape == (C,) and parts["dice_per_class"].shape == (B, C)
  per = jaxloss.sigmoid_binary_cross_entropy(x, y, pos_weight=pw, class_weights=cw,
                                             reduction="none", **PER_IMAGE)
  np.testing.assert_allclose(
      parts["bce_per_class"],
      jaxloss.class_breakdown(per, y, C, axis=-1, members="all", where=PER_IMAGE["where"]),
      rtol=1e-6)
  np.testing.assert_allclose(
      parts["dice_per_class"],
      jaxloss.dice_loss(x, y, activation="sigmoid", class_weights=cw, reduction="none",
                        **PER_IMAGE), rtol=1e-5, atol=1e-7)
  # The scalar total and the reduced parts are those of return_components=False.
  plain = jaxloss.sigmoid_bce_dice_loss(x, y, pos_weight=pw, class_weights=cw, **PER_IMAGE)
  np.testing.assert_allclose(total, plain, rtol=1e-6)
  np.testing.assert_allclose(parts["bce"] + parts["dice"], total, rtol=1e-6)


def test_bce_per_class_mean_over_classes_equals_the_bce_part():
  x, y = _multilabel_case(1)
  _, parts = _bce_dice(x, y)
  np.testing.assert_allclose(jnp.mean(parts["bce_per_class"]), parts["bce"], rtol=1e-6)
  # ... and by hand in float64: the mean over the kept pixels of each weighted column.
  pw, cw = np.array([1.0, 2.0, 3.0, 0.5]), np.array([1.0, 0.5, 2.0, 1.0])
  x64, y64 = x.astype(np.float64), y.astype(np.float64)
  sp = np.logaddexp(0, -x64), np.logaddexp(0, x64)
  element = (pw * y64 * sp[0] + (1 - y64) * sp[1]) * cw
  element = element * PER_IMAGE["weights"].astype(np.float64)[:, None, None, None]
  want = element[PER_IMAGE["where"]].mean((0, 1, 2))
  np.testing.assert_allclose(parts["bce_per_class"], want, rtol=1e-5)


def test_dice_part_is_the_mean_of_the_unmasked_dice_per_class():
  x, y = _multilabel_case(2)
  keep = PER_IMAGE["where"]
  _, parts = _bce_dice(x, y)
  per = np.asarray(parts["dice_per_class"])
  assert np.all(per[~keep] == 0)
  np.testing.assert_allclose(per[keep].mean(), parts["dice"], rtol=1e-5)
  # Batch-level Dice: [C] per-class losses, the public dice_loss's reduction="none".
  _, batch = _bce_dice(x, y, reduce_axes=(0, 1, 2), with_options=False)
  assert batch["dice_per_class"].shape == (C,)
  np.testing.assert_allclose(
      batch["dice_per_class"],
      jaxloss.dice_loss(x, y, activation="sigmoid", reduce_axes=(0, 1, 2), reduction="none"),
      rtol=1e-5)
  np.testing.assert_allclose(jnp.mean(batch["dice_per_class"]), batch["dice"], rtol=1e-5)


def test_bce_dice_components_accept_integer_memberships():
  x, y = _multilabel_case(3)
  _, want = _bce_dice(x, y, with_options=False)
  for labels in (y.astype(np.uint8), y.astype(np.int32), y.astype(np.float32)):
    _, got = jaxloss.sigmoid_bce_dice_loss(x, labels, return_components=True)
    for k in want:
      np.testing.assert_allclose(got[k], want[k], rtol=1e-6, err_msg=k)


def test_per_class_terms_are_not_formed_without_return_components(monkeypatch):
  def refuse(*args, **kwargs):
    raise AssertionError("a per-class term was formed")

  monkeypatch.setattr("jaxloss._compositions.class_breakdown", refuse)
  x, y = _multilabel_case(4)
  jaxloss.sigmoid_bce_dice_loss(x, y)
  xs, ys = _softmax_case(4)
  jaxloss.softmax_ce_dice_loss(xs, ys)
  with pytest.raises(AssertionError, match="per-class term"):
    jaxloss.softmax_ce_dice_loss(xs, ys, return_components=True)


def test_masked_image_leaves_the_components_finite_with_zero_gradient():
  x, y = _multilabel_case(4)
  x[1] = np.nan  # image 1 is masked by PER_IMAGE["where"]
  total, parts = _bce_dice(x, y)
  assert all(np.all(np.isfinite(v)) for v in (total, *parts.values()))

  def objective(x):
    total, parts = jaxloss.sigmoid_bce_dice_loss(x, y, return_components=True, **PER_IMAGE)
    return total + parts["bce_per_class"].sum() + parts["dice_per_class"].sum()

  grad = jax.jit(jax.grad(objective))(x)
  assert np.all(np.asarray(grad)[1] == 0) and np.all(np.isfinite(grad))


def test_bce_dice_gradient_of_the_total_is_unchanged_by_components():
  x, y = _multilabel_case(4)

  def total(x, components):
    out = jaxloss.sigmoid_bce_dice_loss(x, y, return_components=components, **PER_IMAGE)
    return out[0] if components else out

  grad = jax.jit(jax.grad(total), static_argnums=1)
  np.testing.assert_allclose(grad(x, True), grad(x, False), rtol=1e-6)


@functools.partial(jax.jit, static_argnames=("ignore_index", "include_background"))
def _ce_dice(x, y, ignore_index=None, include_background=True):
  return jaxloss.softmax_ce_dice_loss(
      x, y, class_weights=jnp.array([0.5, 1.0, 2.0, 1.0]), ignore_index=ignore_index,
      include_background=include_background, return_components=True, **PER_IMAGE)


def test_ce_dice_components_equal_their_public_parts():
  x, y = _softmax_case()
  y = np.where(np.arange(H)[None, :, None] == 0, -1, y).astype(np.int32)  # a row ignored
  cw = jnp.array([0.5, 1.0, 2.0, 1.0])
  total, parts = _ce_dice(x, y, ignore_index=-1, include_background=False)
  assert sorted(parts) == ["ce", "ce_per_class", "dice", "dice_per_class"]
  per = jaxloss.softmax_cross_entropy(x, y, class_weights=cw, ignore_index=-1,
                                      reduction="none", **PER_IMAGE)
  np.testing.assert_allclose(
      parts["ce_per_class"],
      jaxloss.class_breakdown(per, y, C, where=PER_IMAGE["where"], ignore_index=-1), rtol=1e-6)
  np.testing.assert_allclose(
      parts["dice_per_class"],
      jaxloss.dice_loss(x, y, activation="softmax", class_weights=cw, ignore_index=-1,
                        include_background=False, reduction="none", **PER_IMAGE),
      rtol=1e-5, atol=1e-7)
  assert np.all(np.asarray(parts["dice_per_class"])[:, 0] == 0)
  plain = jaxloss.softmax_ce_dice_loss(x, y, class_weights=cw, ignore_index=-1,
                                       include_background=False, **PER_IMAGE)
  np.testing.assert_allclose(total, plain, rtol=1e-6)


def test_ce_part_is_the_pixel_count_weighted_mean_of_ce_per_class():
  x, y = _softmax_case(1)
  _, parts = _ce_dice(x, y)
  kept = y[PER_IMAGE["where"]]
  counts = np.bincount(kept.reshape(-1), minlength=C).astype(np.float64)
  np.testing.assert_allclose(np.sum(counts * parts["ce_per_class"]) / counts.sum(), parts["ce"],
                             rtol=1e-5)


def test_ce_per_class_of_one_hot_labels_equals_that_of_class_ids():
  x, y = _softmax_case(2)
  _, ids = _ce_dice(x, y)
  _, one_hot = _ce_dice(x, jax.nn.one_hot(y, C))
  for k in ids:
    np.testing.assert_allclose(one_hot[k], ids[k], rtol=1e-5, atol=1e-7, err_msg=k)


def test_ce_per_class_poisons_for_an_out_of_range_label():
  x, y = _softmax_case(3)
  y = y.copy()
  y[0, 0, 0] = C
  _, parts = _ce_dice(x, y)
  assert np.all(np.isnan(parts["ce_per_class"]))
  y[1, 0, 0] = C  # image 1 is masked by PER_IMAGE["where"]: no poison from it alone
  y[0, 0, 0] = 0
  _, parts = _ce_dice(x, y)
  assert np.all(np.isfinite(parts["ce_per_class"]))


# ------------------------------------------------------------------------ multi-label metrics

def _reference_matrix(p, y, threshold=0.5, keep=None):
  """float64 transcription: [C, 2, 2] = [[TN, FP], [FN, TP]], class axis last."""
  pred = np.asarray(p, np.float64) >= threshold
  t = np.asarray(y, np.float64) == 1
  k = np.ones(t.shape, bool) if keep is None else np.broadcast_to(keep, t.shape)
  axes = tuple(range(t.ndim - 1))
  cells = [[~t & ~pred, ~t & pred], [t & ~pred, t & pred]]
  return np.stack([np.stack([(c & k).sum(axes) for c in row], -1) for row in cells], -2
                  ).astype(np.float64)


def _reference_scores(cm):
  tp, fp, fn = cm[:, 1, 1], cm[:, 0, 1], cm[:, 1, 0]
  union = tp + fp + fn
  iou = np.where(union > 0, tp / np.maximum(union, 1), 0.0)
  dice = np.where(union > 0, 2 * tp / np.maximum(2 * tp + fp + fn, 1), 0.0)
  present = union > 0
  return iou, dice, iou[present].mean() if present.any() else 0.0


def _probabilities(seed=0, shape=(B, H, W, C)):
  x, y = _multilabel_case(seed, shape)
  p = np.array(jax.nn.sigmoid(x), np.float32)
  p[..., 3] = 0.1  # class 3 never predicted
  y[..., 2] = False  # class 2 absent from the targets (and mostly predicted absent)
  p[..., 2] = 0.2
  return p, y


_mcm = jax.jit(jaxloss.multilabel_confusion_matrix,
               static_argnames=("axis", "dtype", "axis_name"))


def test_multilabel_confusion_matrix_and_scores_equal_the_float64_transcription():
  p, y = _probabilities()
  cm = _mcm(p, y)
  want = _reference_matrix(p, y)
  np.testing.assert_array_equal(cm, want)
  iou, dice, miou = _reference_scores(want)
  np.testing.assert_allclose(jaxloss.iou_per_class(cm), iou, rtol=1e-6)
  np.testing.assert_allclose(jaxloss.dice_per_class(cm), dice, rtol=1e-6)
  np.testing.assert_allclose(jaxloss.mean_iou(cm), miou, rtol=1e-6)
  assert float(jaxloss.iou_per_class(cm)[2]) == 0.0  # absent class: 0, left out of the mean
  np.testing.assert_allclose(jaxloss.mean_iou(cm), iou[[0, 1, 3]].mean(), rtol=1e-6)


def test_multilabel_metrics_equal_scikit_learn():
  metrics = pytest.importorskip("sklearn.metrics")
  p, y = _probabilities(1)
  flat_y, flat_p = y.reshape(-1, C), (p >= 0.5).reshape(-1, C)
  cm = _mcm(p, y)
  np.testing.assert_array_equal(cm, metrics.multilabel_confusion_matrix(flat_y, flat_p))
  np.testing.assert_allclose(
      jaxloss.iou_per_class(cm),
      metrics.jaccard_score(flat_y, flat_p, average=None, zero_division=0), rtol=1e-6)
  np.testing.assert_allclose(
      jaxloss.dice_per_class(cm),
      metrics.f1_score(flat_y, flat_p, average=None, zero_division=0), rtol=1e-6)


def test_multilabel_threshold_zero_on_logits_equals_half_on_probabilities():
  x, y = _multilabel_case(5)
  x[0, 0, 0, 0] = 0.0  # sigmoid(0) = 0.5 exactly: positive on both sides
  on_logits = jaxloss.multilabel_confusion_matrix(x, y, threshold=0.0)
  np.testing.assert_array_equal(on_logits,
                                jaxloss.multilabel_confusion_matrix(jax.nn.sigmoid(x), y))
  np.testing.assert_array_equal(on_logits, _reference_matrix(x, y, threshold=0.0))
  np.testing.assert_array_equal(jaxloss.multilabel_confusion_matrix(x, y, threshold=0.7),
                                _reference_matrix(x, y, threshold=0.7))


def test_multilabel_label_dtypes_give_identical_matrices():
  p, y = _probabilities(2)
  want = _mcm(p, y)
  for labels in (y.astype(np.uint8), y.astype(np.int32), y.astype(np.float32)):
    np.testing.assert_array_equal(_mcm(p, labels), want)
  np.testing.assert_array_equal(_mcm(p, y, dtype=jnp.int32), want.astype(np.int32))
  np.testing.assert_array_equal(_mcm(p.astype(jnp.bfloat16), y),
                                _reference_matrix(p.astype(jnp.bfloat16).astype(np.float32), y))


def test_multilabel_class_axis_may_be_anywhere():
  p, y = _probabilities(3)
  moved = _mcm(np.moveaxis(p, -1, 1), np.moveaxis(y, -1, 1), axis=1)
  np.testing.assert_array_equal(moved, _mcm(p, y))


@pytest.mark.parametrize("mask", ["image", "pixel", "element"])
def test_multilabel_where_equals_slicing(mask):
  p, y = _probabilities(4)
  rng = np.random.default_rng(7)
  keep = {"image": np.arange(B) % 3 != 0,
          "pixel": rng.uniform(size=(B, H, W)) < 0.7,
          "element": rng.uniform(size=(B, H, W, C)) < 0.7}[mask]
  p, y = p.copy(), y.astype(np.float32)
  full = np.broadcast_to(keep.reshape(keep.shape + (1,) * (4 - keep.ndim)), p.shape)
  p[~full], y[~full] = np.nan, 7.0  # masked elements may hold anything
  got = _mcm(p, y, where=keep)
  if mask == "image":
    np.testing.assert_array_equal(got, _mcm(p[keep], y[keep]))
  np.testing.assert_array_equal(got, _reference_matrix(np.where(full, p, 0), np.where(full, y, 0),
                                                       keep=full))


@pytest.mark.parametrize("bad", ["soft label", "label 2", "NaN label", "NaN prediction"])
def test_multilabel_invalid_unmasked_element_poisons_every_cell(bad):
  p, y = _probabilities(5)
  p, y = p.copy(), y.astype(np.float32)
  target = (p, np.nan) if bad == "NaN prediction" else (y, {"soft label": 0.5, "label 2": 2.0,
                                                         "NaN label": np.nan}[bad])
  target[0][1, 2, 3, 1] = target[1]
  cm = _mcm(p, y)
  assert np.all(np.isnan(cm))
  assert np.all(np.isnan(jaxloss.iou_per_class(cm))) and np.isnan(jaxloss.mean_iou(cm))
  # Masked, it is left out; integer counts cannot hold NaN: it is counted in no cell.
  keep = np.arange(B) != 1
  np.testing.assert_array_equal(_mcm(p, y, where=keep), _mcm(p[keep], y[keep]))
  counted = _mcm(p, y, dtype=jnp.int32)
  assert int(counted[1].sum()) == B * H * W - 1 and int(counted[0].sum()) == B * H * W


def test_per_class_scores_dispatch_on_the_matrix_rank():
  # Two classes: a [2, 2] multi-class matrix and a [2, 2, 2] multi-label one differ.
  multiclass = jnp.array([[3.0, 1.0], [2.0, 4.0]])
  np.testing.assert_allclose(jaxloss.iou_per_class(multiclass), [3 / 6, 4 / 7], rtol=1e-6)
  multilabel = jnp.array([[[5.0, 1.0], [2.0, 3.0]], [[9.0, 0.0], [0.0, 0.0]]])
  np.testing.assert_allclose(jaxloss.iou_per_class(multilabel), [0.5, 0.0], rtol=1e-6)
  np.testing.assert_allclose(jaxloss.dice_per_class(multilabel), [6 / 9, 0.0], rtol=1e-6)
  np.testing.assert_allclose(jaxloss.mean_iou(multilabel), 0.5, rtol=1e-6)
  with pytest.raises(ValueError, match=r"\[C, 2, 2\] multi-label one; got shape \(2, 3, 2\)"):
    jaxloss.iou_per_class(jnp.zeros((2, 3, 2)))


def test_multilabel_confusion_matrix_errors_name_the_argument():
  p, y = _probabilities(6)
  with pytest.raises(ValueError, match="`labels` has shape"):
    jaxloss.multilabel_confusion_matrix(p, y[..., :2])
  with pytest.raises(ValueError, match="`threshold`"):
    jaxloss.multilabel_confusion_matrix(p, y, threshold=np.nan)
  with pytest.raises(ValueError, match="`threshold` must be a scalar"):
    jaxloss.multilabel_confusion_matrix(p, y, threshold=np.full((C,), 0.5))
  with pytest.raises(TypeError, match="`dtype`"):
    jaxloss.multilabel_confusion_matrix(p, y, dtype=jnp.bool_)
  with pytest.raises(ValueError, match="class axis"):
    jaxloss.multilabel_confusion_matrix(p[..., :0], y[..., :0])


def test_multilabel_confusion_matrix_under_jit_equals_eager_and_accumulates():
  p, y = _probabilities(7)
  eager = jaxloss.multilabel_confusion_matrix(p, y)
  np.testing.assert_array_equal(_mcm(p, y), eager)
  np.testing.assert_array_equal(_mcm(p[:3], y[:3]) + _mcm(p[3:], y[3:]), eager)


# ----------------------------------------------------------------------- shard_map, axis_name

@pytest.fixture(scope="module")
def mesh():
  assert jax.device_count() == 8, "conftest.py should give 8 virtual CPU devices"
  return jax.make_mesh((8,), ("data",), axis_types=(jax.sharding.AxisType.Auto,))


def _sharded(fn, mesh, out_specs):
  return jax.jit(jax.shard_map(fn, mesh=mesh, in_specs=(P("data"), P("data")),
                               out_specs=out_specs))


def test_multilabel_confusion_matrix_shard_map_with_axis_name_equals_unsharded(mesh):
  p, y = _probabilities(8)
  got = _sharded(lambda p, y: jaxloss.multilabel_confusion_matrix(p, y, axis_name="data"),
                 mesh, P())(p, y)
  np.testing.assert_array_equal(got, _mcm(p, y))


def test_components_shard_map_with_axis_name_equal_unsharded(mesh):
  x, y = _multilabel_case(9)

  def bce_dice(x, y, axis_name=None):
    return jaxloss.sigmoid_bce_dice_loss(x, y, reduce_axes=(0, 1, 2), return_components=True,
                                         axis_name=axis_name)

  got = _sharded(functools.partial(bce_dice, axis_name="data"), mesh, P())(x, y)
  want = bce_dice(x, y)
  for g, w in zip(jax.tree.leaves(got), jax.tree.leaves(want), strict=True):
    np.testing.assert_allclose(g, w, rtol=2e-5, atol=1e-7)

  xs, ys = _softmax_case(9)

  def ce_dice(x, y, axis_name=None):
    return jaxloss.softmax_ce_dice_loss(x, y, return_components=True, axis_name=axis_name)

  out_specs = (P(), {"ce": P(), "dice": P(), "ce_per_class": P(), "dice_per_class": P("data")})
  got = _sharded(functools.partial(ce_dice, axis_name="data"), mesh, out_specs)(xs, ys)
  want = ce_dice(xs, ys)
  for g, w in zip(jax.tree.leaves(got), jax.tree.leaves(want), strict=True):
    np.testing.assert_allclose(g, w, rtol=2e-5, atol=1e-7)
