"""Lovász losses against a NumPy transcription of the authors' code; segmentation metrics."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxloss


def _lovasz_grad(gt_sorted):
  gts = gt_sorted.sum()
  intersection = gts - np.cumsum(gt_sorted)
  union = gts + np.cumsum(1 - gt_sorted)
  jaccard = 1.0 - intersection / union
  jaccard[1:] = jaccard[1:] - jaccard[:-1]
  return jaccard


def _reference_softmax_flat(probas, labels, classes="present"):
  """float64 transcription of lovasz_softmax_flat (Berman et al., lovasz_losses.py)."""
  losses = []
  for c in range(probas.shape[1]):
    fg = (labels == c).astype(float)
    if classes == "present" and fg.sum() == 0:
      continue
    errors = np.abs(fg - probas[:, c])
    perm = np.argsort(-errors, kind="stable")
    losses.append(np.dot(errors[perm], _lovasz_grad(fg[perm])))
  return np.mean(losses) if losses else 0.0


def _reference_hinge_flat(logits, labels):
  errors = 1.0 - logits * (2.0 * labels - 1.0)
  perm = np.argsort(-errors, kind="stable")
  return np.dot(np.maximum(errors[perm], 0), _lovasz_grad(labels[perm].astype(float)))


@pytest.fixture(autouse=True)
def _x64():
  with jax.enable_x64(True):
    yield


@pytest.mark.parametrize("per_image", [False, True])
@pytest.mark.parametrize("classes", ["present", "all"])
def test_lovasz_softmax_equals_reference(per_image, classes):
  rng = np.random.default_rng(0)
  probas = rng.dirichlet(np.ones(4), size=(3, 5, 5))
  labels = rng.integers(0, 4, size=(3, 5, 5))
  labels[1][labels[1] == 3] = 0  # class 3 absent in image 1
  labels[2, 0, :2] = 255  # ignored pixels
  got = jaxloss.lovasz_softmax_loss(probas, labels, per_image=per_image, classes=classes,
                                    ignore_index=255, reduction="none")

  def flat(p, y):
    keep = (y != 255).reshape(-1)
    return _reference_softmax_flat(p.reshape(-1, 4)[keep], y.reshape(-1)[keep], classes)

  want = [flat(probas[i], labels[i]) for i in range(3)] if per_image else [flat(probas, labels)]
  np.testing.assert_allclose(got, want, rtol=1e-12)


def test_lovasz_hinge_equals_reference_and_gradient_is_finite():
  rng = np.random.default_rng(1)
  logits = rng.normal(size=(3, 6, 6)) * 2
  labels = (rng.uniform(size=(3, 6, 6)) < 0.4).astype(np.int32)
  got = jaxloss.lovasz_hinge_loss(logits, labels, reduction="none")
  want = [_reference_hinge_flat(logits[i].reshape(-1), labels[i].reshape(-1)) for i in range(3)]
  np.testing.assert_allclose(got, want, rtol=1e-12)
  batch = jaxloss.lovasz_hinge_loss(logits, labels, per_image=False)
  np.testing.assert_allclose(batch, _reference_hinge_flat(logits.reshape(-1),
                                                          labels.reshape(-1)), rtol=1e-12)
  g = jax.grad(lambda x: jaxloss.lovasz_hinge_loss(x, labels))(logits)
  assert np.all(np.isfinite(g))


def test_lovasz_is_jittable_with_static_shapes():
  rng = np.random.default_rng(2)
  x = rng.normal(size=(2, 4, 4, 3))
  y = rng.integers(0, 3, size=(2, 4, 4))
  f = jax.jit(lambda x, y: jaxloss.lovasz_softmax_loss(x, y, activation="softmax"))
  np.testing.assert_allclose(f(x, y), jaxloss.lovasz_softmax_loss(x, y, activation="softmax"))


def test_confusion_matrix_and_iou_against_numpy():
  rng = np.random.default_rng(3)
  y = rng.integers(0, 4, size=(2, 8, 8))
  pred = np.where(rng.uniform(size=y.shape) < 0.7, y, rng.integers(0, 4, size=y.shape))
  pred[pred == 3] = 0  # class 3 never predicted
  where = rng.uniform(size=y.shape) < 0.9
  with jax.enable_x64(False):
    cm = jaxloss.confusion_matrix(pred.astype(np.int32), y.astype(np.int32), 5, where=where)
  want = np.zeros((5, 5), int)
  np.add.at(want, (y[where], pred[where]), 1)
  np.testing.assert_array_equal(cm, want)
  tp = np.diag(want)
  fp, fn = want.sum(0) - tp, want.sum(1) - tp
  denom = tp + fp + fn
  iou = np.where(denom > 0, tp / np.maximum(denom, 1), 0)
  np.testing.assert_allclose(jaxloss.iou_per_class(cm), iou, rtol=1e-6)
  np.testing.assert_allclose(jaxloss.mean_iou(cm), iou[denom > 0].mean(), rtol=1e-6)
  dice = np.where(denom > 0, 2 * tp / np.maximum(2 * tp + fp + fn, 1), 0)
  np.testing.assert_allclose(jaxloss.dice_per_class(cm), dice, rtol=1e-6)
  assert jaxloss.iou_per_class(cm)[4] == 0.0  # class 4 absent from both: 0, not NaN


def test_confusion_matrix_accumulates_and_shards():
  with jax.enable_x64(False):
    rng = np.random.default_rng(4)
    y = rng.integers(0, 3, size=(16, 5)).astype(np.int32)
    p = rng.integers(0, 3, size=(16, 5)).astype(np.int32)
    whole = jaxloss.confusion_matrix(p, y, 3)
    halves = jaxloss.confusion_matrix(p[:8], y[:8], 3) + jaxloss.confusion_matrix(p[8:], y[8:], 3)
    np.testing.assert_array_equal(whole, halves)
    mesh = jax.make_mesh((8,), ("data",), axis_types=(jax.sharding.AxisType.Auto,))
    spec = jax.sharding.PartitionSpec
    sharded = jax.jit(jax.shard_map(
        lambda p, y: jaxloss.confusion_matrix(p, y, 3, axis_name="data"), mesh=mesh,
        in_specs=spec("data"), out_specs=spec()))
    np.testing.assert_array_equal(sharded(p, y), whole)
    specs = [jax.ShapeDtypeStruct(a.shape, a.dtype) for a in (p, y)]
    exported = jax.export.export(jax.jit(lambda p, y: jaxloss.confusion_matrix(p, y, 3)),
                                 platforms=("cpu", "cuda", "tpu"))(*specs)
    np.testing.assert_array_equal(exported.call(p, y), whole)


def test_metric_errors_name_arguments():
  with pytest.raises(ValueError, match=r"`predicted_labels` has shape \(3,\)"):
    jaxloss.confusion_matrix(jnp.zeros(3, jnp.int32), jnp.zeros(4, jnp.int32), 2)
  with pytest.raises(ValueError, match="square"):
    jaxloss.iou_per_class(jnp.zeros((2, 3)))


# --------------------------------------------------------------------------- issue 12 regressions


# Shared jitted entry points (options static): one compilation per shape, not one per op.
_softmax = jax.jit(jaxloss.lovasz_softmax_loss, static_argnames=(
    "axis", "activation", "per_image", "classes", "ignore_index", "reduction", "axis_name"))
_hinge = jax.jit(jaxloss.lovasz_hinge_loss, static_argnames=(
    "per_image", "ignore_index", "reduction", "axis_name"))


def _softmax_none(x, y):
  return _softmax(x, y, per_image=True, reduction="none")


def _softmax_batch(x, y):
  return _softmax(x, y, reduction="none")


def _hinge_none(x, y):
  return _hinge(x, y, reduction="none")


@pytest.mark.parametrize("bad", [-1, 2, 255])
def test_lovasz_softmax_image_with_only_invalid_labels_is_nan_not_zero(bad):
  p = np.full((2, 3, 2), 0.5)
  y = np.array([[bad] * 3, [0, 1, 1]], np.int32)
  got = _softmax_none(p, y)
  assert np.isnan(got[0]) and np.isfinite(got[1])
  np.testing.assert_allclose(got[1], _reference_softmax_flat(p[1], y[1]), rtol=1e-12)
  assert np.isnan(_softmax_batch(p, y)[0])  # one group: the batch
  for classes in ("present", "all"):
    assert np.isnan(_softmax(p, y, classes=classes, per_image=True))
  # ignored or masked, the same label is left out
  np.testing.assert_allclose(
      _softmax(p, y, per_image=True, ignore_index=bad, reduction="none"),
      [0.0, got[1]], rtol=1e-12)
  np.testing.assert_allclose(
      _softmax(p, y, per_image=True, where=np.array([False, True]),
                                  reduction="none"), [0.0, got[1]], rtol=1e-12)


def test_lovasz_softmax_negative_label_never_wraps_with_many_classes():
  rng = np.random.default_rng(5)
  p = rng.dirichlet(np.ones(40), size=(2, 3))
  y = np.array([[-1, 0, 1], [39, 2, 3]], np.int32)
  got = _softmax_none(p, y)
  assert np.isnan(got[0]) and np.isfinite(got[1])


@pytest.mark.parametrize("labels", [[[2, 0, 1]], [[-1, 0, 1]], [[0.5, 0.0, 1.0]],
                                    [[np.nan, 0.0, 1.0]]], ids=["2", "-1", "0.5", "nan"])
def test_lovasz_hinge_non_binary_label_is_nan(labels):
  y = np.concatenate([np.asarray(labels), [[0, 1, 1]]]).astype(
      np.int32 if np.asarray(labels).dtype.kind == "i" else np.float64)
  x = np.array([[0.5, -1.0, 2.0], [1.0, -0.5, 0.3]])
  got = _hinge(x, y, reduction="none")
  assert np.isnan(got[0])
  np.testing.assert_allclose(got[1], _reference_hinge_flat(x[1], y[1].astype(float)),
                             rtol=1e-12)
  assert np.isnan(_hinge(x, y, per_image=False))
  masked = _hinge(x, y, where=np.array([False, True]), reduction="none")
  np.testing.assert_allclose(masked, [0.0, got[1]], rtol=1e-12)


@pytest.mark.parametrize("dtype", [np.bool_, np.uint8, np.int8, np.float32])
def test_lovasz_hinge_label_dtypes_agree(dtype):
  rng = np.random.default_rng(6)
  x = rng.normal(size=(2, 5))
  y = rng.uniform(size=(2, 5)) < 0.5
  np.testing.assert_array_equal(_hinge_none(x, y.astype(dtype)), _hinge_none(x, y.astype(np.int32)))


@pytest.mark.parametrize("per_image", [True, False])
@pytest.mark.parametrize("reduction", ["mean", "sum", "weighted_mean"])
def test_lovasz_empty_batch_is_zero_with_zero_gradient(per_image, reduction):
  x = np.zeros((0, 3, 3, 2))
  y = np.zeros((0, 3, 3), np.int32)
  kw = {"weights": np.zeros(0)} if per_image and reduction == "weighted_mean" else {}

  def softmax(x):
    return _softmax(x, y, per_image=per_image, reduction=reduction, **kw)

  def hinge(x):
    return _hinge(x[..., 0], y, per_image=per_image, reduction=reduction,
                                     **kw)

  for f in (softmax, hinge):
    value, grad = jax.jit(jax.value_and_grad(f))(x)
    assert float(value) == 0.0 and grad.shape == x.shape
  assert _softmax(x, y, per_image=True, reduction="none").shape == (0,)


def test_lovasz_empty_class_axis_raises_naming_it():
  with pytest.raises(ValueError, match=r"`predictions`.*class axis"):
    _softmax(np.zeros((2, 3, 0)), np.zeros((2, 3), np.int32))


def test_lovasz_masked_nan_inputs_have_zero_gradient():
  rng = np.random.default_rng(7)
  x = rng.normal(size=(2, 4, 3))
  x[0] = np.nan
  y = rng.integers(0, 3, size=(2, 4)).astype(np.int32)
  y[0] = 9  # the masked image's labels are invalid too: left out, not poison
  where = np.array([False, True])
  for f in (lambda x: _softmax(x, y, activation="softmax", per_image=True,
                                                  where=where),
            lambda x: _hinge(x[..., 0], (y == 1).astype(np.int32),
                                                where=where)):
    value, grad = jax.jit(jax.value_and_grad(f))(x)
    assert np.isfinite(value)
    assert np.all(grad[0] == 0) and np.all(np.isfinite(grad))


def test_checked_reports_lovasz_nan_inputs_and_invalid_labels():
  p = np.full((1, 2, 2), 0.5)
  y = np.zeros((1, 2), np.int32)
  soft = jaxloss.checked(jax.jit(lambda p, y: jaxloss.lovasz_softmax_loss(p, y)))
  hinge = jaxloss.checked(jax.jit(lambda x, y: jaxloss.lovasz_hinge_loss(x, y)))
  with pytest.raises(ValueError, match="`predictions` contains NaN"):
    soft(np.where([[[True, False], [False, False]]], np.nan, p), y)
  with pytest.raises(ValueError, match="`labels` holds a label outside"):
    soft(p, np.array([[0, 7]], np.int32))
  with pytest.raises(ValueError, match="`logits` contains NaN"):
    hinge(np.array([[np.nan, 0.0]]), y)
  with pytest.raises(ValueError, match="`labels` holds a label outside"):
    hinge(np.zeros((1, 2)), np.array([[0, 2]], np.int32))
  with pytest.raises(ValueError, match="`labels` must be binary"):
    hinge(np.zeros((1, 2)), np.array([[0.0, 0.5]]))
  # ignored and masked inputs are not reported
  jaxloss.checked(jax.jit(
      lambda p, y: jaxloss.lovasz_softmax_loss(p, y, ignore_index=255)))(
      np.where([[[False, False], [True, True]]], np.nan, p), np.array([[0, 255]], np.int32))
  jaxloss.checked(jax.jit(
      lambda x, y: jaxloss.lovasz_hinge_loss(x, y, where=np.array([False]))))(
      np.array([[np.nan, 0.0]]), np.array([[2, 0]], np.int32))
