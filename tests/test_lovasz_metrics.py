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
