"""Cross-entropy family: float64 formulas, peer equalities, label handling."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jaxloss

# Fixture shared with the recorded peer values (NHWC, C = 4; torch got NCHW).
_rng = np.random.default_rng(7)
X = np.round(_rng.normal(size=(2, 3, 2, 4)) * 2, 3)
Y = _rng.integers(0, 4, size=(2, 3, 2))
Y[0, 0, 0] = 255
Y[1, 2, 1] = 255
CW = np.array([0.2595, 0.1826, 4.5640, 0.0])

# torch 2.13.0+cpu: F.cross_entropy(X_nchw, Y, weight=CW, ignore_index=255,
# label_smoothing=eps, reduction=r).
TORCH_CE = {
    (0.0, "mean"): 2.1990378155085923, (0.0, "sum"): 52.12643218637877,
    (0.1, "mean"): 2.1286628208117038, (0.1, "sum"): 50.45824923708478,
}
TORCH_CE_NONE_EPS01 = [
    [[0.0, 0.35021876340415564], [2.988923251085425, 0.8549003517657481],
     [13.668701764668693, 14.521958929426754]],
    [[0.8153443830867532, 0.713267659434126], [0.3081204114198334, 0.4336177899940845],
     [15.803195932799207, 0.0]]]

# BCE fixture; torch 2.13.0+cpu F.binary_cross_entropy_with_logits(Z, T, pos_weight=PW,
# weight=BW, reduction=r); TF 2.21.0 tf.nn.weighted_cross_entropy_with_logits(T, Z, PW).
Z = np.array([[[-0.566, 2.049, -0.2, 2.002], [4.316, -2.027, 0.609, -1.39],
               [0.382, -3.562, -1.738, -0.589]],
              [[2.696, 3.436, -3.971, -2.384], [1.941, -5.977, -1.39, -0.292],
               [3.771, 2.068, -0.982, -1.106]]])
T = np.array([[[1.0, 1.0, 0.0, 0.0], [1.0, 0.0, 0.0, 0.0], [1.0, 0.0, 1.0, 1.0]],
              [[0.0, 0.0, 0.0, 1.0], [0.0, 1.0, 1.0, 1.0], [1.0, 0.0, 0.0, 0.0]]])
PW = np.array([1.0, 3.0, 0.5, 2.0])
BW = np.array([0.5, 2.0, 0.0, 1.25])
TORCH_BCE = {"mean": 2.733277816669745, "sum": 65.59866760007388}
TF_WEIGHTED_CE_ROW0 = [1.0156683051606092, 0.36363466237368053, 0.5981388693815919,
                       2.128689815079508]

# Keras 3.15.1: CategoricalFocalCrossentropy(alpha=0.25, gamma=2, from_logits=True) on
# X.reshape(-1, 4) with one-hot labels (void -> class 0); BinaryFocalCrossentropy(
# apply_class_balancing=True, alpha=0.25, gamma=2, from_logits=True)(T, Z).
KERAS_CATEGORICAL_FOCAL = 0.3069312572479248
KERAS_BINARY_FOCAL = 0.4728008806705475
# MONAI 1.6.1 FocalLoss(gamma=2, alpha=0.25) on channel-first tensors.
MONAI_SOFTMAX_FOCAL = {"mean": 0.08965916186571121, "sum": 0.7172732949256897}
MONAI_SIGMOID_FOCAL = {"mean": 0.4728008806705475, "sum": 3.782407283782959}


@pytest.fixture(autouse=True)
def _x64():
  with jax.enable_x64(True):
    yield


@pytest.mark.parametrize("eps", [0.0, 0.1])
def test_softmax_ce_equals_torch(eps):
  kw = {"class_weights": CW, "ignore_index": 255, "label_smoothing": eps}
  got = jaxloss.softmax_cross_entropy(X, Y, reduction="weighted_mean", **kw)
  np.testing.assert_allclose(got, TORCH_CE[(eps, "mean")], rtol=1e-12)
  got = jaxloss.softmax_cross_entropy(X, Y, reduction="sum", **kw)
  np.testing.assert_allclose(got, TORCH_CE[(eps, "sum")], rtol=1e-12)
  nchw = jaxloss.softmax_cross_entropy(np.moveaxis(X, -1, 1), Y, axis=1,
                                       reduction="weighted_mean", **kw)
  np.testing.assert_allclose(nchw, TORCH_CE[(eps, "mean")], rtol=1e-12)


def test_softmax_ce_none_equals_torch_with_zero_weight_class():
  # With smoothing, a pixel of a zero-weight class (3) still has a non-zero loss.
  got = jaxloss.softmax_cross_entropy(X, Y, class_weights=CW, ignore_index=255,
                                      label_smoothing=0.1, reduction="none")
  np.testing.assert_allclose(got, TORCH_CE_NONE_EPS01, rtol=1e-12, atol=1e-15)


def test_softmax_ce_equals_optax():
  y = np.where(Y == 255, 0, Y)
  np.testing.assert_allclose(jaxloss.softmax_cross_entropy(X, y),
                             optax.softmax_cross_entropy_with_integer_labels(X, y).mean(),
                             rtol=1e-12)
  p = jax.nn.softmax(np.cos(X))
  np.testing.assert_allclose(jaxloss.softmax_cross_entropy(X, p, reduction="sum"),
                             optax.softmax_cross_entropy(X, p).sum(), rtol=1e-12)


def _float64_reference(x, y, cw, eps, weights):
  """Σ_i weights_i Σ_c cw_c y'_ic (−log p_ic) / Σ_i weights_i cw_{y_i}, from the formula."""
  c = x.shape[-1]
  logp = x - np.log(np.exp(x).sum(-1, keepdims=True))
  onehot = np.eye(c)[y]
  smoothed = (1 - eps) * onehot + eps / c
  per = -(cw * smoothed * logp).sum(-1)
  return (weights * per).sum() / (weights * cw[y]).sum()


@pytest.mark.parametrize("eps", [0.0, 0.2])
def test_softmax_ce_float64_formula_and_one_hot_equality(eps):
  rng = np.random.default_rng(3)
  x = rng.normal(size=(5, 7, 6)) * 3
  y = rng.integers(0, 6, size=(5, 7))
  cw = rng.uniform(0, 3, size=6)
  w = rng.uniform(0, 2, size=5)
  want = _float64_reference(x, y, cw, eps, w[:, None])
  kw = {"class_weights": cw, "weights": w, "label_smoothing": eps,
        "reduction": "weighted_mean"}
  np.testing.assert_allclose(jaxloss.softmax_cross_entropy(x, y, **kw), want, rtol=1e-12)
  onehot = np.eye(6)[y]
  for r in ("none", "sum", "mean", "weighted_mean", "sum_by_nonzero_weights"):
    kw["reduction"] = r
    np.testing.assert_allclose(jaxloss.softmax_cross_entropy(x, onehot, **kw),
                               jaxloss.softmax_cross_entropy(x, y, **kw), rtol=1e-12,
                               err_msg=r)
  g_int = jax.grad(lambda x: jaxloss.softmax_cross_entropy(x, y, **kw))(x)
  g_hot = jax.grad(lambda x: jaxloss.softmax_cross_entropy(x, onehot, **kw))(x)
  np.testing.assert_allclose(g_int, g_hot, rtol=1e-10, atol=1e-14)


def test_softmax_ce_custom_vjp_matches_autodiff_of_formula():
  rng = np.random.default_rng(4)
  x = rng.normal(size=(4, 5)) * 2
  y = rng.integers(0, 5, size=4)
  cw = rng.uniform(0.1, 2, size=5)
  ours = jax.grad(lambda x, cw: jaxloss.softmax_cross_entropy(
      x, y, class_weights=cw, label_smoothing=0.1, reduction="weighted_mean"), (0, 1))(x, cw)

  def naive(x, cw):
    logp = jax.nn.log_softmax(x)
    smoothed = 0.9 * jax.nn.one_hot(y, 5) + 0.02
    return -(cw[None, :] * smoothed * logp).sum() / cw[y].sum()

  want = jax.grad(naive, (0, 1))(x, cw)
  np.testing.assert_allclose(ours[0], want[0], rtol=1e-10, atol=1e-14)
  np.testing.assert_allclose(ours[1], want[1], rtol=1e-10, atol=1e-14)


def test_softmax_ce_large_and_small_input_kernels_agree():
  # Up to 2**17 logits the kernel keeps exp(x - max) for the backward pass; beyond, it
  # recomputes it. A 132000-logit batch and its two halves take the two paths.
  rng = np.random.default_rng(9)
  x = jnp.asarray(rng.normal(size=(11000, 12)).astype(np.float32) * 3)
  y = jnp.asarray(rng.integers(0, 12, size=11000))
  cw = jnp.asarray(rng.uniform(0.1, 2, size=12).astype(np.float32))

  @jax.jit
  def value_and_grad(x, y):
    return jax.value_and_grad(lambda x, cw: jaxloss.softmax_cross_entropy(
        x, y, class_weights=cw, label_smoothing=0.1, reduction="sum"), (0, 1))(x, cw)

  v, (gx, gcw) = value_and_grad(x, y)
  halves = [value_and_grad(x[i:i + 5500], y[i:i + 5500]) for i in (0, 5500)]
  np.testing.assert_allclose(v, halves[0][0] + halves[1][0], rtol=1e-5)
  np.testing.assert_allclose(gx, jnp.concatenate([h[1][0] for h in halves]), rtol=1e-5,
                             atol=1e-6)
  np.testing.assert_allclose(gcw, halves[0][1][1] + halves[1][1][1], rtol=1e-5)


def test_softmax_ce_many_classes_keeps_exp_at_every_size_and_equals_float64_formula():
  # From 33 classes the kernel keeps exp(x - max) however large the input (132000 logits
  # here): value and both gradients equal the float64 formula; a row at the float32 limit
  # (its label's logit at the maximum) stays finite.
  rng = np.random.default_rng(10)
  x = rng.normal(size=(3300, 40)).astype(np.float32) * 3
  x[0, :2] = [3e38, -3e38]
  y = rng.integers(0, 40, size=3300)
  y[0] = 0  # the label at the row's maximum: a representable loss
  cw = rng.uniform(0.1, 2, size=40).astype(np.float32)

  def loss(x, cw, y):
    return jaxloss.softmax_cross_entropy(x, y, class_weights=cw, label_smoothing=0.1,
                                         reduction="weighted_mean")

  v, (gx, gcw) = jax.jit(jax.value_and_grad(loss, (0, 1)))(x, cw, y)
  assert np.isfinite(v) and np.all(np.isfinite(gx)) and np.all(np.isfinite(gcw))
  with jax.enable_x64(True):
    x64, cw64 = x[1:].astype(np.float64), cw.astype(np.float64)

    def naive(x, cw):
      logp = jax.nn.log_softmax(x)
      smoothed = 0.9 * jax.nn.one_hot(y[1:], 40, dtype=x.dtype) + 0.1 / 40
      return -(cw[None, :] * smoothed * logp).sum() / cw[y[1:]].sum()

    want_v, (want_gx, want_gcw) = jax.value_and_grad(naive, (0, 1))(x64, cw64)
    got_v, (got_gx, got_gcw) = jax.jit(jax.value_and_grad(loss, (0, 1)))(x[1:], cw, y[1:])
  np.testing.assert_allclose(got_v, want_v, rtol=1e-5)
  np.testing.assert_allclose(got_gx, want_gx, rtol=1e-4, atol=1e-9)
  np.testing.assert_allclose(got_gcw, want_gcw, rtol=1e-4, atol=1e-8)


def test_out_of_range_labels_are_nan_and_named_by_value_checks():
  y = np.array([0, 3, 7])
  x = np.zeros((3, 4))
  assert np.isnan(jaxloss.softmax_cross_entropy(x, y))
  assert np.isfinite(jaxloss.softmax_cross_entropy(x, y, ignore_index=7))
  check = jaxloss.checked(jax.jit(jaxloss.softmax_cross_entropy))
  with pytest.raises(ValueError, match=r"`labels` holds a label outside \[0, 4\)"):
    check(x, y)


def test_all_zero_probability_rows_are_unlabeled():
  x = np.array([[1.0, 2.0, 0.5], [3.0, 0.0, 0.0], [0.0, 0.0, 9.0]])
  y = np.array([[0.0, 1.0, 0.0], [0.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
  np.testing.assert_allclose(jaxloss.softmax_cross_entropy(x, y),
                             jaxloss.softmax_cross_entropy(x[[0, 2]], y[[0, 2]]), rtol=1e-12)


def test_wrong_class_weight_length_and_label_shape_are_named():
  with pytest.raises(ValueError, match=r"`class_weights` has shape \(3,\); expected \(4,\)"):
    jaxloss.softmax_cross_entropy(X, np.where(Y == 255, 0, Y), class_weights=np.ones(3))
  with pytest.raises(ValueError, match=r"integer `labels` has shape \(2, 3\); expected "
                                       r"\(2, 3, 2\)"):
    jaxloss.softmax_cross_entropy(X, np.zeros((2, 3), np.int32))


def test_class_weights_follow_the_label_not_the_prediction():
  # Scaling logits by the weight of the predicted class is a temperature change.
  x = np.array([[2.0, 0.0], [0.0, 1.0]])
  y = np.array([1, 1])
  cw = np.array([1.0, 10.0])
  got = jaxloss.softmax_cross_entropy(x, y, class_weights=cw, reduction="sum")
  nll = -jax.nn.log_softmax(x)[np.arange(2), y]
  np.testing.assert_allclose(got, 10 * nll.sum(), rtol=1e-12)


@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_sigmoid_bce_equals_torch_and_tf(reduction):
  got = jaxloss.sigmoid_binary_cross_entropy(Z, T, pos_weight=PW, class_weights=BW,
                                             reduction=reduction)
  np.testing.assert_allclose(got, TORCH_BCE[reduction], rtol=1e-12)
  per = jaxloss.sigmoid_binary_cross_entropy(Z, T, pos_weight=PW, reduction="none")
  np.testing.assert_allclose(per[0, 0], TF_WEIGHTED_CE_ROW0, rtol=1e-12)
  np.testing.assert_allclose(
      jaxloss.sigmoid_binary_cross_entropy(Z, T, reduction="none"),
      optax.sigmoid_binary_cross_entropy(Z, T), rtol=1e-12)


def test_sigmoid_bce_is_finite_and_exact_at_huge_logits():
  x = jnp.array([1e4, -1e4, 1e4, -1e4])
  y = jnp.array([1.0, 0.0, 0.0, 1.0])
  value = jaxloss.sigmoid_binary_cross_entropy(x, y, reduction="none")
  np.testing.assert_allclose(value, [0.0, 0.0, 1e4, 1e4])
  grad = jax.grad(lambda x: jaxloss.sigmoid_binary_cross_entropy(x, y, reduction="sum"))(x)
  np.testing.assert_allclose(grad, [0.0, 0.0, 1.0, -1.0])


def test_focal_losses_equal_keras_and_monai():
  y = np.where(Y == 255, 0, Y)
  onehot = np.eye(4)[y]
  np.testing.assert_allclose(
      jaxloss.softmax_focal_loss(X, onehot, gamma=2.0, alpha=0.25), KERAS_CATEGORICAL_FOCAL,
      rtol=2e-6)  # Keras clips probabilities at 1e-7
  alpha = np.array([0.75, 0.25, 0.25, 0.25])  # MONAI: 1 - alpha for the background
  ours = jaxloss.softmax_focal_loss(X, y, gamma=2.0, alpha=alpha, reduction="sum")
  np.testing.assert_allclose(ours / (y.size * 4), MONAI_SOFTMAX_FOCAL["mean"], rtol=1e-6)
  # MONAI's "sum" averages over the spatial axes first: ours / (H·W), H·W = 3·2.
  np.testing.assert_allclose(ours / 6, MONAI_SOFTMAX_FOCAL["sum"], rtol=1e-6)
  np.testing.assert_allclose(jaxloss.sigmoid_focal_loss(Z, T, gamma=2.0, alpha=0.25),
                             MONAI_SIGMOID_FOCAL["mean"], rtol=1e-6)
  ours = jaxloss.sigmoid_focal_loss(Z, T, gamma=2.0, alpha=0.25, reduction="sum")
  np.testing.assert_allclose(ours / 3, MONAI_SIGMOID_FOCAL["sum"], rtol=1e-6)  # spatial 3
  np.testing.assert_allclose(jaxloss.sigmoid_focal_loss(Z, T, gamma=2.0, alpha=0.25),
                             KERAS_BINARY_FOCAL, rtol=1e-6)


def test_focal_losses_equal_optax_and_reduce_to_ce():
  np.testing.assert_allclose(
      jaxloss.sigmoid_focal_loss(Z, T, gamma=2.0, alpha=0.25, reduction="none"),
      optax.sigmoid_focal_loss(Z, T, alpha=0.25, gamma=2.0), rtol=1e-10)
  # The defaults differ: ours alpha=0.25 (torchvision), optax's alpha=None.
  np.testing.assert_allclose(
      jaxloss.sigmoid_focal_loss(Z, T, alpha=None, reduction="none"),
      optax.sigmoid_focal_loss(Z, T), rtol=1e-10)
  assert not np.allclose(jaxloss.sigmoid_focal_loss(Z, T, reduction="none"),
                         optax.sigmoid_focal_loss(Z, T))
  y = np.where(Y == 255, 0, Y)
  np.testing.assert_allclose(jaxloss.softmax_focal_loss(X, y, gamma=0.0),
                             jaxloss.softmax_cross_entropy(X, y), rtol=1e-12)


@pytest.mark.parametrize("gamma", [0.0, 0.5, 2.0])
def test_softmax_focal_integer_kernel_equals_one_hot_autodiff(gamma):
  rng = np.random.default_rng(5)
  x = rng.normal(size=(6, 5)) * 3
  y = rng.integers(0, 5, size=6)
  alpha = rng.uniform(0.2, 1.0, size=5)
  onehot = np.eye(5)[y]

  def f(x, a, labels):
    return jaxloss.softmax_focal_loss(x, labels, gamma=gamma, alpha=a, reduction="sum")

  v_int, g_int = jax.value_and_grad(f, (0, 1))(x, alpha, y)
  v_hot, g_hot = jax.value_and_grad(f, (0, 1))(x, alpha, onehot)
  np.testing.assert_allclose(v_int, v_hot, rtol=1e-12)
  np.testing.assert_allclose(g_int[0], g_hot[0], rtol=1e-9, atol=1e-12)
  np.testing.assert_allclose(g_int[1], g_hot[1], rtol=1e-9, atol=1e-12)


def test_softmax_focal_gradient_is_finite_when_confident():
  with jax.enable_x64(False):
    x = jnp.array([[1e4, 0.0, -1e4], [40.0, 0.0, 0.0]], jnp.float32)
    y = jnp.array([0, 0], jnp.int32)
    g = jax.grad(lambda x: jaxloss.softmax_focal_loss(x, y))(x)
  assert np.all(np.isfinite(g))


def test_class_breakdown_shows_the_failing_class():
  losses = np.array([0.01, 0.02, 0.03, 3.0, 0.01, 0.02])
  labels = np.array([0, 0, 1, 2, 1, 3])
  where = np.array([True, True, True, True, True, False])
  got = jaxloss.class_breakdown(losses, labels, 4, where=where)
  np.testing.assert_allclose(got, [0.015, 0.02, 3.0, 0.0], rtol=1e-12)
  assert float(jaxloss.reduce_loss(losses, where=where)) < 0.7


def test_class_breakdown_is_jittable_exportable_and_shardable():
  with jax.enable_x64(False):
    rng = np.random.default_rng(8)
    losses = rng.uniform(size=(16, 3)).astype(np.float32)
    labels = rng.integers(0, 4, size=(16, 3)).astype(np.int32)
    where = rng.uniform(size=(16, 3)) > 0.2
    eager = jaxloss.class_breakdown(losses, labels, 4, where=where)
    f = jax.jit(lambda l, y, m: jaxloss.class_breakdown(l, y, 4, where=m))
    np.testing.assert_allclose(f(losses, labels, where), eager, rtol=1e-6)
    specs = [jax.ShapeDtypeStruct(a.shape, a.dtype) for a in (losses, labels, where)]
    exported = jax.export.export(f, platforms=("cpu", "cuda", "tpu"))(*specs)
    np.testing.assert_allclose(exported.call(losses, labels, where), eager, rtol=1e-6)
    mesh = jax.make_mesh((8,), ("data",), axis_types=(jax.sharding.AxisType.Auto,))
    sharded = jax.shard_map(
        lambda l, y, m: jaxloss.class_breakdown(l, y, 4, where=m, axis_name="data"),
        mesh=mesh, in_specs=jax.sharding.PartitionSpec("data"),
        out_specs=jax.sharding.PartitionSpec())
    np.testing.assert_allclose(jax.jit(sharded)(losses, labels, where), eager, rtol=1e-6)


from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402


@settings(deadline=None)
@given(seed=st.integers(0, 2**31 - 1), shift=st.floats(-50, 50), eps=st.floats(0, 0.5),
       classes=st.sampled_from([2, 3, 7, 32, 33, 40]))
def test_property_shift_invariance_and_one_hot_equality(seed, shift, eps, classes):
  # Crosses the unrolled (<= 32 classes) and reduce (> 32) code paths and both edges;
  # a few class counts, so that examples share their compiled programs.
  rng = np.random.default_rng(seed)
  x = rng.normal(size=(5, classes)) * 4
  y = rng.integers(0, classes, size=5)
  cw = rng.uniform(0, 2, size=classes)
  kw = {"class_weights": cw, "label_smoothing": eps, "reduction": "weighted_mean"}
  base = jaxloss.softmax_cross_entropy(x, y, **kw)
  np.testing.assert_allclose(jaxloss.softmax_cross_entropy(x + shift, y, **kw), base,
                             rtol=1e-9, atol=1e-12)
  np.testing.assert_allclose(jaxloss.softmax_cross_entropy(x, np.eye(classes)[y], **kw), base,
                             rtol=1e-9, atol=1e-12)
  np.testing.assert_allclose(base, _float64_reference(x, y, cw, eps, np.ones(5)), rtol=1e-9)
