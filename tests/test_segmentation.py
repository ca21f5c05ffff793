"""Segmentation: class weights (SegNet definition), Dice family vs MONAI, compositions."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxloss

# Fixture of the recorded MONAI values: NHWC logits, C = 3, class 2 absent in image 1.
X = np.array([
    [[[0.068, 2.719, 2.449], [-1.021, -0.596, -1.055], [1.139, -0.112, 1.494],
      [-3.695, 3.133, -0.193]],
     [[1.361, -0.273, -0.758], [0.926, 1.649, -0.405], [-0.306, 1.371, -1.741],
      [-3.029, 0.79, -1.341]],
     [[-3.841, -1.628, -0.935], [-2.386, -2.985, 0.073], [1.794, -0.466, -1.487],
      [0.77, 1.434, -0.6]],
     [[1.089, 2.086, -0.414], [-1.627, 0.695, 0.495], [2.198, -2.569, -1.323],
      [-1.676, -3.468, 0.253]]],
    [[[1.056, -1.478, 2.771], [1.644, 1.255, 0.803], [1.911, -2.664, 1.228],
      [1.206, -3.535, 0.694]],
     [[-0.501, 1.563, -0.878], [-0.036, 0.686, -1.753], [1.197, -0.21, 0.985],
      [-1.044, 2.172, 1.21]],
     [[-0.356, 1.264, 2.52], [3.582, -3.147, 1.766], [0.93, -0.188, -2.013],
      [2.514, -2.523, 1.134]],
     [[2.604, -3.199, -0.605], [-2.618, 0.488, 3.029], [4.047, -3.556, -1.15],
      [1.407, 3.159, 0.842]]]])
Y = np.array([[[1, 2, 1, 0], [1, 1, 0, 0], [1, 1, 1, 2], [2, 2, 0, 2]],
              [[1, 0, 0, 1], [1, 0, 1, 0], [0, 0, 0, 0], [0, 1, 0, 0]]])
S = 0.5  # smooth_nr = smooth_dr

# Recorded with MONAI 1.6.1 (torch 2.13.0+cpu) on the channel-first copies of X and
# one-hot Y, smooth_nr = smooth_dr = 0.5 unless stated.
MONAI = {
    "dice_softmax_image": [[0.696134347109369, 0.7032536944529744, 0.6137610492260506],
                           [0.338845562974172, 0.7283012943056798, 0.9039720697676625]],
    "dice_softmax_batch": [0.4636292914232093, 0.7285457278621857, 0.7367882332485369],
    "dice_sigmoid_image": [[0.7179737722155732, 0.5600809120916734, 0.5977156718054627],
                           [0.24609895144720373, 0.6193056718022852, 0.9519786909220698]],
    "dice_softmax_squared_nobg_mean": 0.6725092329183862,
    "jaccard_softmax_image_s1": [[0.7951424787797446, 0.8091788922752504, 0.7379537900452215],
                                 [0.4963411839857408, 0.8177471145925803, 0.9039720697676625]],
    "tversky_a07_b03": [[0.6684753091385274, 0.6778725884145476, 0.5778596061247843],
                        [0.27537943608441917, 0.6780253336976185, 0.8682398103670079]],
    "tversky_a07_b03_batch_mean": 0.6264420778139699,
    "gdl_square": [0.49864575491363305, 0.4309964812210635],
    "gdl_simple": [0.6513358897514913, 0.5915700864460394],
    "gdl_uniform": [0.695165694828259, 0.5529941874622861],
    "gdl_square_batch_mean": 0.4520206503735882,
    # DiceCELoss(softmax=True, weight=[0.5, 2, 1], lambda_dice=0.7, lambda_ce=1.3)
    "dicece": 3.5389101221813455, "dicece_dice": 0.8163888419254652,
    "dicece_ce": 2.282644563718092,
}


@pytest.fixture(autouse=True)
def _x64():
  with jax.enable_x64(True):
    yield


def test_dice_equals_monai_per_image_and_per_batch():
  kw = {"activation": "softmax", "smooth": S, "reduction": "none"}
  np.testing.assert_allclose(jaxloss.dice_loss(X, Y, **kw), MONAI["dice_softmax_image"],
                             rtol=1e-12)
  np.testing.assert_allclose(jaxloss.dice_loss(X, Y, reduce_axes=(0, 1, 2), **kw),
                             MONAI["dice_softmax_batch"], rtol=1e-12)
  np.testing.assert_allclose(
      jaxloss.dice_loss(X, np.eye(3)[Y], activation="sigmoid", smooth=S, reduction="none"),
      MONAI["dice_sigmoid_image"], rtol=1e-12)
  np.testing.assert_allclose(
      jaxloss.dice_loss(X, Y, activation="softmax", squared=True, include_background=False,
                        smooth=S), MONAI["dice_softmax_squared_nobg_mean"], rtol=1e-12)
  nchw = jaxloss.dice_loss(np.moveaxis(X, -1, 1), Y, axis=1, **kw)
  np.testing.assert_allclose(nchw, MONAI["dice_softmax_image"], rtol=1e-12)


def test_jaccard_tversky_generalized_dice_equal_monai():
  # MONAI jaccard with smooth s' equals ours with smooth s = s' / 2.
  np.testing.assert_allclose(
      jaxloss.jaccard_loss(X, Y, activation="softmax", smooth=0.5, reduction="none"),
      MONAI["jaccard_softmax_image_s1"], rtol=1e-12)
  kw = {"activation": "softmax", "alpha": 0.7, "beta": 0.3, "smooth": S}
  np.testing.assert_allclose(jaxloss.tversky_loss(X, Y, reduction="none", **kw),
                             MONAI["tversky_a07_b03"], rtol=1e-12)
  np.testing.assert_allclose(jaxloss.tversky_loss(X, Y, reduce_axes=(0, 1, 2), **kw),
                             MONAI["tversky_a07_b03_batch_mean"], rtol=1e-12)
  for wt in ("square", "simple", "uniform"):
    got = jaxloss.generalized_dice_loss(X, Y, activation="softmax", weight_type=wt, smooth=S,
                                        reduction="none")
    # MONAI's generalized Dice rounds somewhere through float32 (about 1e-8 relative).
    np.testing.assert_allclose(got, MONAI[f"gdl_{wt}"], rtol=1e-7, err_msg=wt)
  np.testing.assert_allclose(
      jaxloss.generalized_dice_loss(X, Y, activation="softmax", smooth=S, reduce_axes=(0, 1, 2)),
      MONAI["gdl_square_batch_mean"], rtol=1e-7)


def test_softmax_ce_dice_equals_monai_dice_ce():
  total, parts = jaxloss.softmax_ce_dice_loss(
      X, Y, class_weights=np.array([0.5, 2.0, 1.0]), ce_weight=1.3, dice_weight=0.7, smooth=S,
      return_components=True)
  np.testing.assert_allclose(parts["dice"], MONAI["dicece_dice"], rtol=1e-12)
  np.testing.assert_allclose(parts["ce"], MONAI["dicece_ce"], rtol=1e-12)
  np.testing.assert_allclose(total, MONAI["dicece"], rtol=1e-12)


def test_sigmoid_bce_dice_is_the_sum_of_its_parts():
  y = np.eye(3)[Y]
  total, parts = jaxloss.sigmoid_bce_dice_loss(X, y, bce_weight=0.3, dice_weight=2.0,
                                               smooth=S, return_components=True)
  np.testing.assert_allclose(parts["bce"], jaxloss.sigmoid_binary_cross_entropy(X, y),
                             rtol=1e-12)
  np.testing.assert_allclose(parts["dice"], np.mean(MONAI["dice_sigmoid_image"]), rtol=1e-12)
  np.testing.assert_allclose(total, 0.3 * parts["bce"] + 2.0 * parts["dice"], rtol=1e-12)


def test_per_class_breakdown_shows_the_failing_class():
  # Four classes fit perfectly, the fifth is missed: the mean hides it, "none" shows it.
  y = np.zeros((2, 8, 5))
  y[:, :, :4] = np.eye(4)[np.arange(8) % 4]
  y[:, 0, 4] = 1.0
  p = np.where(y[..., :4] > 0, 0.99, 0.01)
  p = np.concatenate([p, np.full((2, 8, 1), 0.01)], -1)
  per_class = jaxloss.dice_loss(p, y, smooth=0.0, reduce_axes=(0, 1), reduction="none")
  assert per_class[4] > 0.8 and np.all(per_class[:4] < 0.05)


def test_ignore_index_and_out_of_range_labels():
  y = Y.copy()
  y[0, 0, 0] = 255
  a = jaxloss.dice_loss(X, y, activation="softmax", ignore_index=255, reduction="none")
  assert np.all(np.isfinite(a))
  y[0, 0, 1] = 7
  b = jaxloss.dice_loss(X, y, activation="softmax", ignore_index=255, reduction="none")
  assert np.all(np.isnan(b[0])) and np.all(np.isfinite(b[1]))


def test_jit_with_traced_everything():
  # optax's dice_loss branches in Python on a traced value and fails under jit.
  f = jax.jit(lambda x, y, s: jaxloss.dice_loss(x, y, activation="softmax", smooth=s))
  np.testing.assert_allclose(f(X, Y, 0.5), np.mean(MONAI["dice_softmax_image"]), rtol=1e-12)


def _segnet_median_frequency(labels, num_classes):
  """float64 NumPy transcription of the SegNet definition."""
  class_pixels = np.zeros(num_classes)
  image_pixels = np.zeros(num_classes)
  for image in labels:
    for c in range(num_classes):
      n = np.sum(image == c)
      if n:
        class_pixels[c] += n
        image_pixels[c] += image.size
  present = class_pixels > 0
  f = np.where(present, class_pixels / np.where(present, image_pixels, 1), np.nan)
  median = np.nanmedian(f)
  return np.where(present, median / np.where(present, f, 1), 0.0)


def test_median_frequency_weights_match_segnet_definition_and_accumulate():
  rng = np.random.default_rng(0)
  labels = rng.choice(12, p=np.r_[[0.3, 0.21, 0.01, 0.2, 0.05, 0.1, 0.004, 0.03, 0.06, 0.016,
                                    0.02], 0.0], size=(6, 16, 16))
  want = _segnet_median_frequency(labels, 12)
  with jax.enable_x64(False):
    counts = jaxloss.class_pixel_counts(labels[:3].astype(np.int32), 12)
    counts = counts + jaxloss.class_pixel_counts(labels[3:].astype(np.int32), 12)
    got = jaxloss.median_frequency_weights(counts)
  np.testing.assert_allclose(got, want, rtol=1e-6)
  assert got[11] == 0.0  # the void class never appears: weight 0, no inf/NaN


def test_class_weights_ignore_index_and_other_estimators():
  labels = np.array([[0, 0, 255, 1], [2, 2, 2, 255]], np.int32)
  with jax.enable_x64(False):
    counts = jaxloss.class_pixel_counts(labels, 3, ignore_index=255)
    np.testing.assert_allclose(counts.class_pixels, [2, 1, 3])
    np.testing.assert_allclose(counts.image_pixels, [3, 3, 3])
    inv = jaxloss.inverse_frequency_weights(counts)
    np.testing.assert_allclose(inv, 6 / (3 * np.array([2, 1, 3])), rtol=1e-6)
    eff = jaxloss.effective_number_weights(counts, beta=0.9)
    e = (1 - 0.9 ** np.array([2, 1, 3])) / 0.1
    np.testing.assert_allclose(eff, 3 * (1 / e) / np.sum(1 / e), rtol=1e-5)
    bad = jaxloss.class_pixel_counts(np.array([[0, 5]], np.int32), 3)
    assert np.all(np.isnan(bad.class_pixels))


def test_gradients_at_exactly_zero_logits():
  # Autodiff of max(x, 0) + log1p(exp(-|x|)) picks inconsistent subgradients at 0;
  # softplus has a hand-written derivative σ(x) instead (found by the bench check).
  x = np.zeros((1, 2, 2, 3))
  y = np.eye(3)[np.array([[[0, 1], [2, 0]]])]
  ours = jax.jit(jax.grad(lambda x: jaxloss.sigmoid_bce_dice_loss(x, y, smooth=S)))(x)

  def naive(x):
    p = jax.nn.sigmoid(x)
    bce = jnp.mean(jax.nn.softplus(x) - x * y)
    inter = jnp.sum(p * y, axis=(1, 2))
    dice = 1 - (2 * inter + S) / (jnp.sum(p, axis=(1, 2)) + jnp.sum(y, axis=(1, 2)) + S)
    return bce + jnp.mean(dice)

  np.testing.assert_allclose(ours, jax.jit(jax.grad(naive))(x), rtol=1e-12, atol=1e-15)
  import optax
  focal = jax.jit(jax.grad(lambda x: jaxloss.sigmoid_focal_loss(x, y, reduction="sum")))(x)
  ref = jax.jit(jax.grad(
      lambda x: jnp.sum(optax.sigmoid_focal_loss(x, y, alpha=0.25, gamma=2.0))))(x)
  np.testing.assert_allclose(focal, ref, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("reduction", ["sum", "mean", "weighted_mean", "sum_by_nonzero_weights"])
@pytest.mark.parametrize("per_batch", [False, True])
def test_fused_bce_dice_equals_its_public_parts(reduction, per_batch):
  rng = np.random.default_rng(9)
  x = rng.normal(size=(3, 4, 5, 3)) * 3
  y = (rng.uniform(size=x.shape) < 0.4).astype(float)
  y[0, ..., 2] = 0.0  # an empty class
  pos_weight = np.array([1.0, 2.5, 0.5])
  cw = np.array([0.5, 2.0, 1.0])
  weights = np.array([1.0, 0.0, 2.0]) if not per_batch else None
  where = np.array([True, True, False]) if not per_batch else None
  axes = (0, 1, 2) if per_batch else None
  kw = {"class_weights": cw, "weights": weights, "where": where, "reduction": reduction}

  def fused(x, y):
    return jaxloss.sigmoid_bce_dice_loss(x, y, pos_weight=pos_weight, reduce_axes=axes,
                                         bce_weight=0.7, dice_weight=1.3, smooth=0.1, **kw)

  def parts(x, y):
    bce = jaxloss.sigmoid_binary_cross_entropy(x, y, pos_weight=pos_weight, **kw)
    dice = jaxloss.dice_loss(x, y, activation="sigmoid", reduce_axes=axes, smooth=0.1, **kw)
    return 0.7 * bce + 1.3 * dice

  def nchw(x, y):
    return jaxloss.sigmoid_bce_dice_loss(
        jnp.moveaxis(x, -1, 1), jnp.moveaxis(y, -1, 1), axis=1, pos_weight=pos_weight,
        reduce_axes=None if axes is None else (0, 2, 3), bce_weight=0.7, dice_weight=1.3,
        smooth=0.1, **kw)

  # One compiled program for every call (eager dispatch compiles each primitive).
  (got, got_g), (want, want_g), moved = jax.jit(lambda x, y: (
      jax.value_and_grad(fused, (0, 1))(x, y), jax.value_and_grad(parts, (0, 1))(x, y),
      nchw(x, y)))(x, y)
  np.testing.assert_allclose(got, want, rtol=1e-12)
  for a, b in zip(got_g, want_g, strict=True):
    np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-14)
  np.testing.assert_allclose(moved, want, rtol=1e-12)
