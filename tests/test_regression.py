"""Regression losses: float64 formulas, peer equalities, broadcasting rules."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jaxloss

# Shared fixture for the recorded peer values below.
P = np.array([[0.9, 0.2, 0.2, -1.5], [0.2, 0.8, 0.3, 2.0], [3.0, -0.4, 0.0, 0.25]])
T = np.array([[1.0, 0.0, 0.0, 0.5], [0.0, 0.0, 1.0, -1.0], [0.0, 0.1, 0.0, 0.75]])
W = np.array([1.0, 0.0, 2.5])  # one weight per example

# Recorded with torch 2.13.0+cpu: F.huber_loss(P, T, delta=d, reduction="none").
TORCH_HUBER = {
    0.5: [[0.005, 0.02, 0.02, 0.875], [0.02, 0.275, 0.225, 1.375], [1.375, 0.125, 0.0, 0.125]],
    1.0: [[0.005, 0.02, 0.02, 1.5], [0.02, 0.32, 0.245, 2.5], [2.5, 0.125, 0.0, 0.125]],
    2.0: [[0.005, 0.02, 0.02, 2.0], [0.02, 0.32, 0.245, 4.0], [4.0, 0.125, 0.0, 0.125]],
}
# Recorded with torch 2.13.0+cpu: F.mse_loss mean and sum, F.l1_loss mean.
TORCH_MSE_MEAN, TORCH_MSE_SUM, TORCH_L1_MEAN = 1.98, 23.76, 0.9333333333333332

# Recorded with TensorFlow 2.21.0: tf.compat.v1.losses.<loss>(T, P, weights=W[:, None],
# reduction=R), huber with delta=0.5.
TF1_REDUCTION = {
    "SUM": "sum",
    "MEAN": "weighted_mean",
    "SUM_OVER_BATCH_SIZE": "mean",
    "SUM_BY_NONZERO_WEIGHTS": "sum_by_nonzero_weights",
}
TF1 = {
    "mse": {"SUM": 27.84000015258789, "MEAN": 1.9885714054107666,
            "SUM_OVER_BATCH_SIZE": 2.319999933242798, "SUM_BY_NONZERO_WEIGHTS": 3.4800000190734863},
    "mae": {"SUM": 12.5, "MEAN": 0.8928571343421936, "SUM_OVER_BATCH_SIZE": 1.0416666269302368,
            "SUM_BY_NONZERO_WEIGHTS": 1.5625},
    "huber": {"SUM": 4.982500076293945, "MEAN": 0.3558928668498993,
              "SUM_OVER_BATCH_SIZE": 0.4152083396911621,
              "SUM_BY_NONZERO_WEIGHTS": 0.6228125095367432},
}
LOSSES = {
    "mse": jaxloss.mean_squared_error,
    "mae": jaxloss.mean_absolute_error,
    "huber": lambda p, t, **kw: jaxloss.huber_loss(p, t, delta=0.5, **kw),
}

# Recorded with Keras 3.15.1 (TensorFlow backend), sample_weight=W: Keras first
# averages over the last axis, then applies its reduction to the per-example values.
KERAS_SUM_OVER_BATCH_SIZE = {"mse": 2.319999933242798, "mae": 1.0416666269302368,
                             "huber": 0.4152083396911621}
KERAS_MSE_MEAN_WITH_SAMPLE_WEIGHT = 1.9885714054107666
KERAS_HUBER_SUM = 1.2456250190734863  # = jaxloss "sum" / 4 features


def test_user_example_mse_is_0_21():
  targets = [[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]]
  predictions = [[0.9, 0.2, 0.2], [0.2, 0.8, 0.3]]
  assert float(jaxloss.mean_squared_error(predictions, targets)) == pytest.approx(0.21, rel=1e-6)


def test_float64_formulas():
  with jax.enable_x64(True):
    e = P - T
    np.testing.assert_allclose(jaxloss.mean_squared_error(P, T), np.mean(e**2), rtol=1e-12)
    np.testing.assert_allclose(jaxloss.mean_absolute_error(P, T), np.mean(np.abs(e)), rtol=1e-12)
    for d in (0.5, 1.0, 2.0):
      a = np.abs(e)
      huber = np.where(a <= d, 0.5 * e**2, d * (a - 0.5 * d))
      np.testing.assert_allclose(jaxloss.huber_loss(P, T, delta=d, reduction="none"), huber,
                                 rtol=1e-12)


@pytest.mark.parametrize("delta", sorted(TORCH_HUBER))
def test_huber_equals_torch_and_optax(delta):
  with jax.enable_x64(True):
    ours = jaxloss.huber_loss(P, T, delta=delta, reduction="none")
    np.testing.assert_allclose(ours, TORCH_HUBER[delta], rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(ours, optax.losses.huber_loss(P, T, delta=delta), rtol=1e-12)


def test_mse_and_mae_equal_torch_and_optax():
  with jax.enable_x64(True):
    assert float(jaxloss.mean_squared_error(P, T)) == pytest.approx(TORCH_MSE_MEAN, rel=1e-12)
    assert float(jaxloss.mean_squared_error(P, T, reduction="sum")) == pytest.approx(
        TORCH_MSE_SUM, rel=1e-12)
    assert float(jaxloss.mean_absolute_error(P, T)) == pytest.approx(TORCH_L1_MEAN, rel=1e-12)
    np.testing.assert_allclose(jaxloss.mean_squared_error(P, T),
                               optax.losses.squared_error(P, T).mean(), rtol=1e-12)


@pytest.mark.parametrize("loss", sorted(TF1))
@pytest.mark.parametrize("tf1_reduction", sorted(TF1_REDUCTION))
def test_equals_tf1_reductions(loss, tf1_reduction):
  got = LOSSES[loss](P.astype(np.float32), T.astype(np.float32), weights=W.astype(np.float32),
                     reduction=TF1_REDUCTION[tf1_reduction])
  np.testing.assert_allclose(got, TF1[loss][tf1_reduction], rtol=1e-6)


@pytest.mark.parametrize("loss", sorted(KERAS_SUM_OVER_BATCH_SIZE))
def test_equals_keras(loss):
  p, t, w = P.astype(np.float32), T.astype(np.float32), W.astype(np.float32)
  np.testing.assert_allclose(LOSSES[loss](p, t, weights=w, reduction="mean"),
                             KERAS_SUM_OVER_BATCH_SIZE[loss], rtol=1e-6)
  np.testing.assert_allclose(jaxloss.mean_squared_error(p, t, weights=w, reduction="weighted_mean"),
                             KERAS_MSE_MEAN_WITH_SAMPLE_WEIGHT, rtol=1e-6)
  np.testing.assert_allclose(LOSSES["huber"](p, t, weights=w, reduction="sum") / 4,
                             KERAS_HUBER_SUM, rtol=1e-6)


def test_rank_changing_broadcast_is_refused():
  with pytest.raises(ValueError, match=r"`predictions` has shape \(4, 1\) and `targets` has "
                     r"shape \(4,\): ranks 2 and 1 differ"):
    jaxloss.mean_squared_error(jnp.zeros((4, 1)), jnp.zeros(4))
  with pytest.raises(ValueError, match="axis 1 has sizes 3 and 2"):
    jaxloss.mean_absolute_error(jnp.zeros((4, 3)), jnp.zeros((4, 2)))


def test_same_rank_and_scalar_broadcasting_is_allowed():
  p = jnp.arange(6.0).reshape(2, 3)
  np.testing.assert_allclose(jaxloss.mean_squared_error(p, jnp.zeros((1, 3))),
                             jnp.mean(p**2))
  np.testing.assert_allclose(jaxloss.mean_squared_error(p, 0.0), jnp.mean(p**2))


def test_integer_targets_are_accepted_and_integer_predictions_refused():
  np.testing.assert_allclose(jaxloss.mean_squared_error(jnp.ones(3), jnp.array([1, 0, 1])),
                             1 / 3, rtol=1e-6)
  with pytest.raises(TypeError, match="`predictions` must be a real floating array"):
    jaxloss.mean_squared_error(jnp.array([1, 0]), jnp.ones(2))


def test_nonpositive_delta_is_refused():
  with pytest.raises(ValueError, match="`delta` must be > 0"):
    jaxloss.huber_loss(jnp.ones(2), jnp.ones(2), delta=0.0)


def test_missing_targets_as_nan_with_where():
  t = jnp.array([1.0, jnp.nan, 3.0])
  p = jnp.array([1.5, 2.0, 2.0])
  value, grad = jax.value_and_grad(
      lambda p: jaxloss.mean_squared_error(p, t, where=~jnp.isnan(t)))(p)
  np.testing.assert_allclose(value, (0.25 + 1.0) / 2, rtol=1e-6)
  np.testing.assert_allclose(grad, [0.5, 0.0, -1.0], rtol=1e-6)


def test_value_checks_catch_unmasked_nan_only():
  t = jnp.array([1.0, jnp.nan])
  loss = jaxloss.checked(jax.jit(jaxloss.mean_squared_error))
  with pytest.raises(ValueError, match=r"`targets` contains NaN or inf in 1 unmasked"):
    loss(jnp.ones(2), t)
  masked = jaxloss.checked(jax.jit(lambda p, t: jaxloss.mean_squared_error(p, t, where=t == t)))
  assert float(masked(jnp.ones(2), t)) == 0.0


def test_huber_large_errors_do_not_overflow():
  value, grad = jax.value_and_grad(lambda p: jaxloss.huber_loss(p, jnp.zeros(2)))(
      jnp.array([1e30, -1e30], jnp.float32))  # squaring would overflow
  assert np.isfinite(value)
  np.testing.assert_allclose(grad, [0.5, -0.5])


def test_mae_subgradient_at_zero_is_zero():
  assert float(jax.grad(jaxloss.mean_absolute_error)(jnp.ones(1), jnp.ones(1))[0]) == 0.0
