"""Regression tests for the reliability issue (#12): labels, masks, reductions, options.

One test per behaviour, named after it. The families' own reliability tests live
next to them (overlap, counts/metrics, sigmoid/focal/semi-supervised); the
contract (``test_contract_hostile.py``) generates the same cases for every loss.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxloss

LABEL_DTYPES = (np.bool_, np.uint8, np.uint16, np.int8, np.int16, np.int32)


def _rng(salt: int) -> np.random.Generator:
  return np.random.default_rng([12, salt])


# ---------------------------------------------------------------- labels


@pytest.mark.parametrize("fn", [jaxloss.softmax_cross_entropy, jaxloss.softmax_focal_loss],
                         ids=["ce", "focal"])
@pytest.mark.parametrize("num_classes", [4, 40])
def test_negative_labels_give_nan_and_never_wrap(fn, num_classes):
  logits = jnp.zeros((3, num_classes))
  losses = fn(logits, jnp.array([-1, 1, -num_classes]), reduction="none")
  assert np.isnan(losses[0]) and np.isnan(losses[2])
  assert np.isfinite(losses[1])


def test_negative_labels_with_class_weights_give_nan_for_many_classes():
  cw = jnp.linspace(0.5, 2.0, 40)
  losses = jaxloss.softmax_cross_entropy(jnp.zeros((2, 40)), jnp.array([-1, 1]),
                                         class_weights=cw, reduction="none")
  assert np.isnan(losses[0]) and np.isfinite(losses[1])


@pytest.mark.parametrize("dtype", LABEL_DTYPES, ids=lambda d: np.dtype(d).name)
def test_every_integer_label_dtype_gives_the_int32_result(dtype):
  rng = _rng(1)
  logits = rng.normal(size=(6, 5, 2)).astype(np.float32)
  labels32 = rng.integers(0, 2, size=(6, 5)).astype(np.int32)
  labels = labels32.astype(dtype)
  cw = np.array([0.5, 2.0], np.float32)
  f = lambda x, y: jaxloss.softmax_cross_entropy(  # noqa: E731
      x, y, class_weights=cw, label_smoothing=0.1, reduction="weighted_mean")
  v32, g32 = jax.value_and_grad(f)(logits, labels32)
  v, g = jax.value_and_grad(f)(logits, labels)
  np.testing.assert_array_equal(v, v32)
  np.testing.assert_array_equal(g, g32)
  per = jaxloss.softmax_cross_entropy(logits, labels32, reduction="none")
  np.testing.assert_array_equal(jaxloss.class_breakdown(per, labels, 2),
                                jaxloss.class_breakdown(per, labels32, 2))


def test_int64_labels_under_x64_give_the_int32_result():
  with jax.enable_x64(True):
    rng = _rng(2)
    logits = rng.normal(size=(4, 3)).astype(np.float32)
    y = rng.integers(0, 3, size=4)
    np.testing.assert_array_equal(
        jaxloss.softmax_cross_entropy(logits, y.astype(np.int64), reduction="none"),
        jaxloss.softmax_cross_entropy(logits, y.astype(np.int32), reduction="none"))


def test_uint8_void_label_is_nan_unless_it_is_the_ignore_index():
  logits = jnp.zeros((2, 4))
  y = jnp.array([255, 1], jnp.uint8)
  # ignore_index=-100 (torch's default) is compared after widening: no overflow, no match.
  assert np.isnan(jaxloss.softmax_cross_entropy(logits, y, ignore_index=-100,
                                                reduction="none")[0])
  kept = jaxloss.softmax_cross_entropy(logits, y, ignore_index=255)
  np.testing.assert_allclose(kept, math.log(4), rtol=1e-6)


def test_bool_labels_are_class_ids_zero_and_one():
  logits = jnp.array([[2.0, -1.0], [0.5, 0.25]])
  y = jnp.array([True, False])
  np.testing.assert_array_equal(
      jaxloss.softmax_cross_entropy(logits, y, reduction="none"),
      jaxloss.softmax_cross_entropy(logits, y.astype(jnp.int32), reduction="none"))


def test_ignore_index_must_be_an_int():
  with pytest.raises(TypeError, match="`ignore_index`"):
    jaxloss.softmax_cross_entropy(jnp.zeros((2, 3)), jnp.array([0, 1]), ignore_index=1.5)


# ---------------------------------------------------------------- class_breakdown


def test_class_breakdown_refuses_zero_classes():
  with pytest.raises(ValueError, match="`num_classes` must be >= 1"):
    jaxloss.class_breakdown(jnp.ones(3), jnp.array([0, 1, 2]), 0)


def test_class_breakdown_poisons_every_class_for_an_invalid_label():
  out = jaxloss.class_breakdown(jnp.ones(3), jnp.array([0, 1, 7]), 3)
  assert np.all(np.isnan(out))


def test_class_breakdown_ignore_index_equals_slicing():
  losses = jnp.array([0.1, 0.3, 2.0, 0.2, 9.0])
  labels = jnp.array([0, 1, 2, 0, 1], jnp.uint8)
  got = jaxloss.class_breakdown(losses, labels, 3, ignore_index=1)
  np.testing.assert_allclose(got, [0.15, 0.0, 2.0], rtol=1e-6)
  masked = jaxloss.class_breakdown(losses, labels, 3, where=labels != 1)
  np.testing.assert_array_equal(got, masked)


# ---------------------------------------------------------------- extremes


def test_one_hot_cross_entropy_is_finite_at_the_float32_range_limit():
  x = jnp.array([[3e38, -3e38, 0.0], [-3e38, 3e38, 3e38]])
  y_int = jnp.array([0, 1])
  y_hot = jax.nn.one_hot(y_int, 3)
  for eps in (0.0, 0.1):
    for y in (y_int, y_hot):
      f = lambda x, y=y, eps=eps: jaxloss.softmax_cross_entropy(  # noqa: E731
          x, y, label_smoothing=eps, reduction="none")
      v = f(x)
      g = jax.grad(lambda x, f=f: jnp.sum(f(x)))(x)
      assert np.all(np.isfinite(v)) and np.all(np.isfinite(g)), (eps, y.dtype, v, g)
    # One-hot and integer labels agree, also at the limit.
    np.testing.assert_allclose(
        jaxloss.softmax_cross_entropy(x, y_hot, label_smoothing=eps, reduction="none"),
        jaxloss.softmax_cross_entropy(x, y_int, label_smoothing=eps, reduction="none"),
        rtol=1e-6)
  # ε/C · (lse − x) is representable although lse − x is not: (0.1 / 3) · 6e38 = 2e37.
  smoothed = jaxloss.softmax_cross_entropy(x[:1], y_int[:1], label_smoothing=0.1,
                                           reduction="none")
  np.testing.assert_allclose(smoothed, (0.1 / 3) * (6e38 + 3e38), rtol=1e-5)


def test_cross_entropy_keeps_the_log_of_the_sum_at_the_float32_range_limit():
  # Two classes tied at 3e38: −log p = log 2, which m + log Σ (3e38 + 0.69) would round away.
  x = jnp.array([[3e38, 3e38, -3e38]])
  for y in (jnp.array([0]), jnp.array([[1.0, 0.0, 0.0]])):
    value, grad = jax.value_and_grad(lambda x, y=y: jaxloss.softmax_cross_entropy(x, y))(x)
    np.testing.assert_allclose(value, math.log(2), rtol=1e-6)
    np.testing.assert_allclose(grad, [[-0.5, 0.5, 0.0]], atol=1e-7)


# ---------------------------------------------------------------- empty and degenerate sizes

_EMPTY_CALLS = {
    "softmax_cross_entropy": lambda x, w, m, r: jaxloss.softmax_cross_entropy(
        x, jnp.zeros((0,), jnp.int32), class_weights=jnp.ones(3), weights=w, where=m,
        reduction=r),
    "mean_squared_error": lambda x, w, m, r: jaxloss.mean_squared_error(
        x[:, 0], jnp.zeros((0,)), weights=w, where=m, reduction=r),
    "reduce_loss": lambda x, w, m, r: jaxloss.reduce_loss(
        x[:, 0], weights=w, where=m, reduction=r),
    "earth_mover_distance": lambda x, w, m, r: jaxloss.earth_mover_distance(
        x, jnp.zeros((0, 3)), weights=w, where=m, reduction=r),
    "propel_loss": lambda x, w, m, r: jaxloss.propel_loss(
        jnp.ones((0, 2, 2)) * x[:, :1, None], jnp.zeros((0, 1)), weights=w, where=m,
        reduction=r),
}


@pytest.mark.parametrize("name", sorted(_EMPTY_CALLS))
def test_empty_batch_is_zero_with_zero_gradient(name):
  call = _EMPTY_CALLS[name]
  x = jnp.zeros((0, 3))
  for w, m in ((None, None), (jnp.ones(0), jnp.ones(0, bool))):
    for r in jaxloss.REDUCTIONS[1:]:
      value, grad = jax.value_and_grad(lambda x, w=w, m=m, r=r: call(x, w, m, r))(x)
      assert float(value) == 0.0, (name, r)
      assert grad.shape == (0, 3)
    assert call(x, w, m, "none").shape[0] == 0


def test_zero_classes_raise_naming_the_class_axis():
  with pytest.raises(ValueError, match="class axis"):
    jaxloss.softmax_cross_entropy(jnp.zeros((2, 0)), jnp.zeros(2, jnp.int32))
  with pytest.raises(ValueError, match="bin axis"):
    jaxloss.earth_mover_distance(jnp.zeros((2, 0)), jnp.zeros((2, 0)))
  with pytest.raises(ValueError, match="mixture-component axis"):
    jaxloss.propel_loss(jnp.zeros((2, 0, 2)), jnp.zeros((2, 1)))


def test_one_class_cross_entropy_is_zero_and_finite():
  value, grad = jax.value_and_grad(
      lambda x: jaxloss.softmax_cross_entropy(x, jnp.zeros(3, jnp.int32)))(jnp.ones((3, 1)))
  assert float(value) == 0.0
  np.testing.assert_array_equal(grad, 0.0)


# ---------------------------------------------------------------- masks


def test_nan_loss_and_nan_weight_under_the_mask_have_zero_gradient():
  losses = jnp.array([1.0, jnp.nan, 3.0, jnp.inf])
  weights = jnp.array([2.0, jnp.nan, 1.0, jnp.inf])
  where = jnp.array([True, False, True, False])
  for r in jaxloss.REDUCTIONS[1:]:
    value, (gl, gw) = jax.value_and_grad(
        lambda l, w, r=r: jaxloss.reduce_loss(l, weights=w, where=where, reduction=r),
        argnums=(0, 1))(losses, weights)
    clean = jaxloss.reduce_loss(losses[where], weights=weights[where], reduction=r)
    np.testing.assert_allclose(value, clean, rtol=1e-6)
    np.testing.assert_array_equal(gl[~where], 0.0)
    np.testing.assert_array_equal(gw[~where], 0.0)
    assert np.all(np.isfinite(gl)) and np.all(np.isfinite(gw))


def test_nan_weight_under_the_mask_gives_zero_logit_gradient():
  logits = jnp.ones((3, 4))
  y = jnp.array([0, 1, 2])
  w = jnp.array([1.0, jnp.nan, 2.0])
  m = jnp.array([True, False, True])
  g = jax.grad(lambda x: jaxloss.softmax_cross_entropy(
      x, y, weights=w, where=m, reduction="weighted_mean"))(logits)
  np.testing.assert_array_equal(g[1], 0.0)
  assert np.all(np.isfinite(g))


# ---------------------------------------------------------------- options


@pytest.mark.parametrize("bad", [np.ones(3, np.float32), np.nan, np.inf, -1.0],
                         ids=["array", "nan", "inf", "negative"])
def test_huber_delta_must_be_a_positive_finite_scalar(bad):
  with pytest.raises(ValueError, match="`delta`"):
    jaxloss.huber_loss(jnp.zeros((2, 3)), jnp.zeros((2, 3)), delta=bad)


@pytest.mark.parametrize("bad", [np.full(2, 0.1), np.nan, 1.5], ids=["array", "nan", "big"])
def test_label_smoothing_must_be_a_scalar_in_the_unit_interval(bad):
  with pytest.raises(ValueError, match="`label_smoothing`"):
    jaxloss.softmax_cross_entropy(jnp.zeros((2, 3)), jnp.array([0, 1]), label_smoothing=bad)


@pytest.mark.parametrize("bad", [np.inf, np.nan, 0.0, np.ones(2)], ids=["inf", "nan", "0", "arr"])
def test_propel_sigma_must_be_a_positive_finite_scalar(bad):
  with pytest.raises(ValueError, match="`sigma`"):
    jaxloss.propel_loss(jnp.ones((2, 1, 2)), jnp.zeros((2, 1)), sigma=bad)


@pytest.mark.parametrize("bad", [np.nan, 0.5, "2", True], ids=["nan", "half", "str", "bool"])
def test_emd_order_must_be_a_number_at_least_one(bad):
  with pytest.raises(ValueError, match="`r`"):
    jaxloss.earth_mover_distance(jnp.full((2, 3), 1 / 3), jnp.full((2, 3), 1 / 3), r=bad)


def test_emd_with_infinite_order_is_the_sup_norm():
  rng = _rng(3)
  p = rng.dirichlet(np.ones(6), size=5).astype(np.float32)
  q = rng.dirichlet(np.ones(6), size=5).astype(np.float32)
  expected = np.abs(np.cumsum(p.astype(np.float64) - q, axis=-1)).max(-1)
  got = jaxloss.earth_mover_distance(p, q, r=math.inf, reduction="none")
  np.testing.assert_allclose(got, expected, rtol=1e-5)
  # The finite-r norms approach it.
  big = jaxloss.earth_mover_distance(p, q, r=200.0, reduction="none")
  np.testing.assert_allclose(big, expected, rtol=0.05)
  assert np.all(np.isfinite(jax.grad(
      lambda p: jaxloss.earth_mover_distance(p, q, r=math.inf))(p)))


@pytest.mark.parametrize("kwargs", [{"low": np.nan}, {"high": np.inf}, {"low": np.ones(2)}],
                         ids=["nan-low", "inf-high", "array-low"])
def test_score_histogram_bounds_must_be_finite_scalars(kwargs):
  with pytest.raises(ValueError, match="`(low|high)`"):
    jaxloss.scores_to_distribution(jnp.array([4.0]), **kwargs)


# ---------------------------------------------------------------- checked


def test_checked_reports_unmasked_nan_losses_in_reduce_loss():
  f = jaxloss.checked(lambda l, m: jaxloss.reduce_loss(l, where=m))
  np.testing.assert_allclose(f(jnp.array([1.0, jnp.nan]), jnp.array([True, False])), 1.0)
  with pytest.raises(ValueError, match="`losses` contains NaN"):
    f(jnp.array([1.0, jnp.nan]), jnp.array([True, True]))


def test_checked_reports_unmasked_nan_weights():
  f = jaxloss.checked(lambda w: jaxloss.mean_squared_error(jnp.ones(2), jnp.zeros(2),
                                                            weights=w))
  with pytest.raises(ValueError, match="`weights` contains NaN"):
    f(jnp.array([1.0, jnp.nan]))


# ---------------------------------------------------------------- forward mode (policy)

_REVERSE_ONLY = {
    "softmax_cross_entropy": lambda x: jaxloss.softmax_cross_entropy(x, jnp.array([0, 2])),
    "earth_mover_distance": lambda x: jaxloss.earth_mover_distance(
        x, jnp.full((2, 3), 1 / 3), activation="softmax"),
    "propel_loss": lambda x: jaxloss.propel_loss(
        jnp.stack([x, jnp.ones_like(x) + x * x], -1), jnp.zeros((2, 1))),
}


@pytest.mark.parametrize("name", sorted(_REVERSE_ONLY))
def test_custom_vjp_losses_are_reverse_mode_only_with_a_clear_error(name):
  f = _REVERSE_ONLY[name]
  x = jnp.array([[0.5, -1.0, 2.0], [0.1, 0.2, 0.3]])
  with pytest.raises(TypeError, match="forward-mode"):
    jax.jvp(f, (x,), (jnp.ones_like(x),))
  with pytest.raises(TypeError, match="forward-mode"):
    jax.jacfwd(f)(x)
  hessian = jax.jacrev(jax.jacrev(f))(x)
  assert hessian.shape == (2, 3, 2, 3) and np.all(np.isfinite(hessian))
  np.testing.assert_allclose(jax.hessian(f)(x), hessian, rtol=1e-5, atol=1e-7)


def test_emd_large_order_does_not_underflow_to_zero():
  p = jnp.array([0.5, 0.25, 0.25])
  q = jnp.array([0.25, 0.25, 0.5])
  value, grad = jax.value_and_grad(lambda p: jaxloss.earth_mover_distance(p, q, r=500.0))(p)
  # Δ = (0.25, 0.25, 0): (2/3 · 0.25^500)^(1/500) = 0.25 · (2/3)^(1/500), far from 0.
  np.testing.assert_allclose(value, 0.25 * (2 / 3) ** (1 / 500), rtol=1e-5)
  assert np.all(np.isfinite(grad)) and np.any(grad != 0)


def test_checked_reports_unmasked_nan_probability_labels():
  f = jaxloss.checked(lambda y: jaxloss.softmax_cross_entropy(jnp.zeros((2, 2)), y))
  with pytest.raises(ValueError, match="`labels` contains NaN"):
    f(jnp.array([[0.5, 0.5], [jnp.nan, 1.0]]))
