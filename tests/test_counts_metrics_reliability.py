"""Issue 12 regressions: label dtypes, ignore_index, poison and sizes in counts and metrics."""

from __future__ import annotations

import contextlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxloss

LABEL_DTYPES = [np.bool_, np.uint8, np.uint16, np.int8, np.int16, np.int32, np.int64]


# Shared jitted entry points: one compilation per shape and dtype instead of one per op.
_cm = jax.jit(jaxloss.confusion_matrix, static_argnums=2,
              static_argnames=("ignore_index", "dtype"))
_counts = jax.jit(jaxloss.class_pixel_counts, static_argnums=1, static_argnames="ignore_index")
_accuracy = jax.jit(jaxloss.accuracy, static_argnames="ignore_index")


def _x64_for(dtype):
  return jax.enable_x64(True) if dtype == np.int64 else contextlib.nullcontext()


# --------------------------------------------------------------------------- label dtypes


def test_uint8_labels_count_high_classes_in_their_own_cells():
  p = np.array([19, 18, 3], np.uint8)
  y = np.array([19, 19, 3], np.uint8)
  want = np.zeros((20, 20))
  want[19, 19] = want[19, 18] = want[3, 3] = 1
  np.testing.assert_array_equal(_cm(p, y, 20), want)
  np.testing.assert_array_equal(_cm(p.astype(np.int32), y.astype(np.int32),
                                                         20), want)


@pytest.mark.parametrize("dtype", [np.int8, np.int16, np.uint16])
def test_narrow_label_dtypes_do_not_overflow_in_index_arithmetic(dtype):
  # 19 * 20 + 19 = 399 overflows int8; -1 == uint8 label would raise OverflowError.
  p = np.array([19, 18, 3, 0], dtype)
  y = np.array([19, 19, 3, 5], dtype)
  want = _cm(p.astype(np.int32), y.astype(np.int32), 20)
  np.testing.assert_array_equal(_cm(p, y, 20), want)
  np.testing.assert_array_equal(_cm(p, y, 20, ignore_index=-1), want)
  counts = _counts(y[None], 20, ignore_index=-100)
  np.testing.assert_array_equal(counts.class_pixels,
                                _counts(y[None].astype(np.int32), 20)[0])


@jax.jit
def _binary_results(y):
  """Every label-taking function of this suite on 0/1 labels ``y`` [2, 3]."""
  rng = np.random.default_rng(0)
  x = rng.normal(size=(2, 3, 2)).astype(np.float32)
  return {
      "class_pixel_counts": tuple(jaxloss.class_pixel_counts(y, 2)),
      "confusion_matrix": jaxloss.confusion_matrix(y[::-1], y, 2),
      "accuracy": jaxloss.accuracy(x, y),
      "lovasz_softmax_loss": jaxloss.lovasz_softmax_loss(x, y, activation="softmax",
                                                         per_image=True, reduction="none"),
      "lovasz_hinge_loss": jaxloss.lovasz_hinge_loss(x[..., 0], y, reduction="none"),
  }


@jax.jit
def _multiclass_results(y):
  rng = np.random.default_rng(1)
  x = rng.normal(size=(2, 3, 5)).astype(np.float32)
  return {
      "class_pixel_counts": tuple(jaxloss.class_pixel_counts(y, 5, ignore_index=4)),
      "confusion_matrix": jaxloss.confusion_matrix(y[::-1], y, 5, ignore_index=4),
      "accuracy": jaxloss.accuracy(x, y, ignore_index=4),
      "lovasz_softmax_loss": jaxloss.lovasz_softmax_loss(x, y, activation="softmax",
                                                         ignore_index=4, per_image=True,
                                                         reduction="none"),
  }


@pytest.mark.parametrize("dtype", LABEL_DTYPES, ids=lambda d: np.dtype(d).name)
def test_every_label_dtype_gives_identical_results(dtype):
  binary = np.array([[0, 1, 1], [1, 0, 0]])
  multi = np.array([[0, 3, 4], [2, 2, 1]])
  want_b = _binary_results(binary.astype(np.int32))
  want_m = _multiclass_results(multi.astype(np.int32))
  with _x64_for(dtype):
    got_b = _binary_results(binary.astype(dtype))
    got_m = {} if dtype == np.bool_ else _multiclass_results(multi.astype(dtype))
  for want, got in ((want_b, got_b), (want_m, got_m)):
    for name, value in got.items():
      np.testing.assert_array_equal(np.asarray(value, np.float32), want[name], err_msg=name)


# --------------------------------------------------------------------------- class_pixel_counts


def _counts_by_slicing(labels, c, ignore_index):
  """float64 reference: drop the ignored pixels of each image, then count."""
  class_pixels = np.zeros(c)
  image_pixels = np.zeros(c)
  for image in labels:
    kept = image[image != ignore_index]
    for k in np.unique(kept):
      class_pixels[k] += np.sum(kept == k)
      image_pixels[k] += kept.size
  return class_pixels, image_pixels


def test_class_pixel_counts_ignore_index_inside_class_range_equals_slicing():
  got = _counts(np.array([[0, 0, 1, 1]]), 3, ignore_index=0)
  np.testing.assert_array_equal(got.class_pixels, [0, 2, 0])
  np.testing.assert_array_equal(got.image_pixels, [0, 2, 0])  # 2 labelled pixels, not 4
  rng = np.random.default_rng(2)
  labels = rng.integers(0, 4, size=(5, 3, 3)).astype(np.int32)
  for ignore in (0, 2, 3):
    got = _counts(labels, 4, ignore_index=ignore)
    want = _counts_by_slicing(labels, 4, ignore)
    np.testing.assert_array_equal(got.class_pixels, want[0])
    np.testing.assert_array_equal(got.image_pixels, want[1])


def test_class_pixel_counts_empty_batch_is_zero():
  counts = _counts(np.zeros((0, 4, 4), np.int32), 3)
  np.testing.assert_array_equal(counts.class_pixels, np.zeros(3))
  np.testing.assert_array_equal(counts.image_pixels, np.zeros(3))


# --------------------------------------------------------------------------- class weights


ESTIMATORS = {
    "median_frequency_weights": jaxloss.median_frequency_weights,
    "median_frequency_weights[global]": lambda c: jaxloss.median_frequency_weights(
        c, frequency="global"),
    "inverse_frequency_weights": jaxloss.inverse_frequency_weights,
    "effective_number_weights": jaxloss.effective_number_weights,
    "effective_number_weights[beta=0]": lambda c: jaxloss.effective_number_weights(c, beta=0.0),
}


@pytest.mark.parametrize("name", ESTIMATORS)
def test_nan_counts_give_nan_weights_not_zero(name):
  counts = _counts(np.array([[0, 0, 1, 7]], np.int32), 3)
  assert np.all(np.isnan(counts.class_pixels))
  assert np.all(np.isnan(ESTIMATORS[name](counts)))
  one_nan = jaxloss.ClassCounts(jnp.array([1.0, jnp.nan, 2.0]), jnp.array([4.0, 4.0, 4.0]))
  assert np.all(np.isnan(ESTIMATORS[name](one_nan)))


def test_bad_label_poisons_weighted_cross_entropy_through_class_weights():
  labels = np.array([[0, 0, 1, 9]], np.int32)  # 9 is outside [0, 3)
  weights = jaxloss.median_frequency_weights(_counts(labels, 3))
  logits = jnp.asarray(np.random.default_rng(3).normal(size=(1, 4, 3)), jnp.float32)
  clean = np.array([[0, 0, 1, 2]], np.int32)  # the weights poison even a clean batch
  for reduction in ("mean", "weighted_mean", "sum"):
    loss = jaxloss.softmax_cross_entropy(logits, clean, class_weights=weights,
                                         reduction=reduction)
    assert np.isnan(loss), reduction


def test_effective_number_weights_beta_edges():
  counts = _counts(np.array([[0, 0, 0, 1]], np.int32), 3)
  np.testing.assert_allclose(jaxloss.effective_number_weights(counts, beta=0.0), [1, 1, 0])
  # β → 1 is inverse frequency; 1 − 1e-9 is 1.0 in float32, log β is taken in float64.
  np.testing.assert_allclose(jaxloss.effective_number_weights(counts, beta=1 - 1e-9),
                             [0.5, 1.5, 0.0], rtol=1e-5)
  traced = jax.jit(lambda b: jaxloss.effective_number_weights(counts, beta=b))(0.5)
  np.testing.assert_allclose(traced, jaxloss.effective_number_weights(counts, beta=0.5),
                             rtol=1e-6)
  for bad in (1.0, -0.1, float("nan"), np.array([0.5, 0.9])):
    with pytest.raises(ValueError, match="`beta`"):
      jaxloss.effective_number_weights(counts, beta=bad)


# --------------------------------------------------------------------------- confusion matrix


def test_confusion_matrix_is_float32_by_default_and_exact_in_int32():
  p, y = np.array([0, 1, 1, 2]), np.array([0, 1, 2, 2])
  cm = _cm(p, y, 3)
  assert cm.dtype == jnp.float32
  exact = _cm(p, y, 3, dtype=jnp.int32)
  assert exact.dtype == jnp.int32
  np.testing.assert_array_equal(cm, exact)
  with pytest.raises(TypeError, match="`dtype`"):
    _cm(p, y, 3, dtype=jnp.bool_)


@pytest.mark.parametrize("which", ["labels", "predicted_labels"])
@pytest.mark.parametrize("value", [-1, 3, 255])
def test_out_of_range_label_poisons_every_cell_of_the_float_confusion_matrix(which, value):
  p, y = np.array([0, 1, 2, 2], np.int32), np.array([0, 1, 2, 1], np.int32)
  bad = {"predicted_labels": p.copy(), "labels": y.copy()}
  bad[which][1] = value
  cm = _cm(bad["predicted_labels"], bad["labels"], 3)
  assert np.all(np.isnan(cm))
  for metric in (jaxloss.iou_per_class, jaxloss.dice_per_class, jaxloss.mean_iou):
    assert np.all(np.isnan(metric(cm))), metric.__name__
  # Masked, it is left out; in an integer dtype it is counted in no cell.
  where = np.array([True, False, True, True])
  np.testing.assert_array_equal(
      _cm(bad["predicted_labels"], bad["labels"], 3, where=where),
      _cm(p[where], y[where], 3))
  np.testing.assert_array_equal(
      _cm(bad["predicted_labels"], bad["labels"], 3, dtype=jnp.int32),
      _cm(p[where], y[where], 3, dtype=jnp.int32))


def test_confusion_matrix_poison_reaches_a_psum_over_shards():
  y = np.zeros((8, 2), np.int32)
  p = y.copy()
  y[5, 1] = 3
  mesh = jax.make_mesh((8,), ("data",), axis_types=(jax.sharding.AxisType.Auto,))
  spec = jax.sharding.PartitionSpec
  sharded = jax.jit(jax.shard_map(
      lambda p, y: jaxloss.confusion_matrix(p, y, 3, axis_name="data"), mesh=mesh,
      in_specs=spec("data"), out_specs=spec()))
  assert np.all(np.isnan(sharded(p, y)))


def test_confusion_matrix_ignore_index_drops_true_labels_equal_to_slicing():
  rng = np.random.default_rng(4)
  y = rng.integers(0, 4, size=(3, 5)).astype(np.int32)
  p = rng.integers(0, 4, size=(3, 5)).astype(np.int32)
  y[0, :2] = 255
  p[0, 0] = 255  # the prediction of an ignored element is never read
  for ignore in (255, 0, 2):
    kept = y != ignore
    got = _cm(p, y, 4, ignore_index=ignore)
    sliced = _cm(p[kept], y[kept], 4)
    if ignore != 255:
      assert np.all(np.isnan(got))  # 255 is then an invalid true label
    else:
      np.testing.assert_array_equal(got, sliced)
      want = np.zeros((4, 4))
      np.add.at(want, (y[kept], p[kept]), 1)
      np.testing.assert_array_equal(got, want)


def test_confusion_matrix_ignore_index_inside_class_range_equals_slicing():
  y = np.array([[0, 0, 1, 2], [1, 1, 0, 2]], np.int32)
  p = np.array([[1, 0, 1, 2], [0, 1, 0, 0]], np.int32)
  kept = y != 1
  np.testing.assert_array_equal(_cm(p, y, 3, ignore_index=1),
                                _cm(p[kept], y[kept], 3))


def test_safe_div_passes_a_nan_denominator_through():
  cm = jnp.array([[2.0, 1.0, 0.0], [0.0, jnp.nan, 0.0], [0.0, 0.0, 0.0]])
  iou = jaxloss.iou_per_class(cm)
  assert np.isnan(iou[1]) and iou[0] == pytest.approx(2 / 3) and iou[2] == 0.0
  assert np.isnan(jaxloss.dice_per_class(cm)[1])
  assert np.isnan(jaxloss.mean_iou(cm))  # a NaN class is never taken for an absent one
  assert float(jaxloss.mean_iou(jnp.zeros((3, 3)))) == 0.0


# --------------------------------------------------------------------------- accuracy


def test_accuracy_is_nan_for_an_unmasked_out_of_range_label():
  logits = jnp.asarray(np.random.default_rng(5).normal(size=(4, 3)), jnp.float32)
  for value in (-1, 3, 40):
    y = np.array([0, value, 2, 1], np.int32)
    assert np.isnan(_accuracy(logits, y))
    keep = np.array([True, False, True, True])
    masked = _accuracy(logits, y, where=keep)
    np.testing.assert_allclose(masked, _accuracy(logits[keep], y[keep]))
    ignored = _accuracy(logits, y, ignore_index=value)
    np.testing.assert_allclose(ignored, masked)


# --------------------------------------------------------------------------- sizes


@pytest.mark.parametrize("bad", [0, -1, 2.0, True, None])
@pytest.mark.parametrize("fn", ["class_pixel_counts", "confusion_matrix"])
def test_num_classes_must_be_a_positive_int(fn, bad):
  y = np.zeros((1, 2), np.int32)
  call = {"class_pixel_counts": lambda: jaxloss.class_pixel_counts(y, bad),
          "confusion_matrix": lambda: jaxloss.confusion_matrix(y, y, bad)}[fn]
  with pytest.raises((ValueError, TypeError), match="`num_classes`"):
    call()


def test_empty_class_axis_raises_naming_the_axis():
  with pytest.raises(ValueError, match=r"`logits`.*class axis"):
    jaxloss.accuracy(np.zeros((3, 0), np.float32), np.zeros(3, np.int32))
  with pytest.raises(ValueError, match=r"`confusion`.*class axis"):
    jaxloss.iou_per_class(np.zeros((0, 0), np.float32))
  with pytest.raises(ValueError, match=r"`counts.class_pixels`.*class axis"):
    jaxloss.median_frequency_weights(jaxloss.ClassCounts(jnp.zeros(0), jnp.zeros(0)))


# --------------------------------------------------------------------------- checked


def test_checked_reports_invalid_metric_labels():
  y = np.array([[0, 5]], np.int32)
  with pytest.raises(ValueError, match="`labels` holds a label outside"):
    jaxloss.checked(jax.jit(lambda y: jaxloss.class_pixel_counts(y, 3)))(y)
  with pytest.raises(ValueError, match="`predicted_labels` holds a label outside"):
    jaxloss.checked(jax.jit(lambda p: jaxloss.confusion_matrix(p, np.zeros_like(y), 3)))(y)
  with pytest.raises(ValueError, match="`labels` holds a label outside"):
    jaxloss.checked(jax.jit(lambda y: jaxloss.accuracy(jnp.zeros((1, 2, 3)), y)))(y)
  # ignore_index and where are not reported
  jaxloss.checked(jax.jit(lambda y: jaxloss.confusion_matrix(y, y, 3, where=y < 3)))(y)
  jaxloss.checked(jax.jit(lambda y: jaxloss.class_pixel_counts(y, 3, ignore_index=5)))(y)
