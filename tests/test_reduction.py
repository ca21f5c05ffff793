"""reduce_loss: the reduction table, zero denominators, masks, broadcasting, sharding."""

from __future__ import annotations

import hypothesis.extra.numpy as hnp
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from jax.sharding import PartitionSpec as P

import jaxloss

REDUCTIONS = ("sum", "mean", "weighted_mean", "sum_by_nonzero_weights")


def reference(l, w, m, reduction):
  """float64 reference written straight from the table in the docstring."""
  l, w, m = (np.asarray(x, np.float64) for x in np.broadcast_arrays(l, w, m))
  num = np.sum(w * m * l)
  den = {
      "sum": 1.0,
      "mean": m.sum(),
      "weighted_mean": (w * m).sum(),
      "sum_by_nonzero_weights": ((w * m) != 0).sum(),
  }[reduction]
  return 0.0 if den == 0 else num / den


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_table_against_float64_reference(reduction):
  rng = np.random.default_rng(0)
  l = rng.normal(size=(4, 3)).astype(np.float32)
  w = rng.uniform(0, 2, size=(4, 3)).astype(np.float32)
  w[0, 0] = 0
  m = rng.uniform(size=(4, 3)) > 0.3
  got = jaxloss.reduce_loss(l, weights=w, where=m, reduction=reduction)
  np.testing.assert_allclose(got, reference(l, w, m, reduction), rtol=1e-6)


def test_none_is_weighted_masked_elements():
  l = np.array([1.0, 2.0, np.nan], np.float32)
  out = jaxloss.reduce_loss(l, weights=np.array([2.0, 3.0, 4.0], np.float32),
                            where=np.array([True, True, False]), reduction="none")
  np.testing.assert_array_equal(out, [2.0, 6.0, 0.0])


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_zero_denominator_gives_zero_value_and_gradient(reduction):
  l = jnp.array([1.0, jnp.inf, jnp.nan])
  for kwargs in ({"where": np.zeros(3, bool)}, {"weights": np.zeros(3, np.float32)}):
    if "weights" in kwargs and reduction in ("sum", "mean"):
      continue  # zero weights with a non-finite loss are 0 * inf, as in every peer
    value, grad = jax.value_and_grad(
        lambda x, kw=kwargs: jaxloss.reduce_loss(x, reduction=reduction, **kw))(l)
    assert float(value) == 0.0
    np.testing.assert_array_equal(grad, 0.0)


def test_masked_nan_has_zero_gradient():
  def f(x):
    losses = jnp.log(x)  # NaN at x < 0
    return jaxloss.reduce_loss(losses, where=x > 0)

  x = jnp.array([1.0, 2.0, -1.0])
  grad = jax.grad(f)(x)
  np.testing.assert_allclose(grad, [0.5, 0.25, 0.0])


def test_mean_divides_by_element_count_not_batch_size():
  # Keras sum_over_batch_size: the element count of the per-element losses.
  l = np.arange(6, dtype=np.float32).reshape(2, 3)
  assert float(jaxloss.reduce_loss(l)) == pytest.approx(15 / 6)


def test_weights_align_on_leading_axes():
  l = np.arange(6, dtype=np.float32).reshape(2, 3)
  w = np.array([1.0, 0.0], np.float32)  # one weight per example
  np.testing.assert_allclose(jaxloss.reduce_loss(l, weights=w, reduction="sum"), 0 + 1 + 2)
  np.testing.assert_allclose(
      jaxloss.reduce_loss(l, weights=w[:, None], reduction="sum"), 3.0)
  np.testing.assert_allclose(  # same rank, per-column weights via a size-1 axis
      jaxloss.reduce_loss(l, weights=np.array([[0.0, 1.0, 0.0]], np.float32), reduction="sum"),
      1 + 4)


@pytest.mark.parametrize(
    "shape", [(3,), (2, 3, 1), (1, 4), (6,)], ids=["trailing", "higher-rank", "mismatch", "flat"])
def test_weights_that_do_not_fit_raise(shape):
  l = np.zeros((2, 3), np.float32)
  with pytest.raises(ValueError, match=r"`weights` has shape .* per-element loss shape \(2, 3\)"):
    jaxloss.reduce_loss(l, weights=np.ones(shape, np.float32))


def test_where_must_be_boolean():
  with pytest.raises(TypeError, match="`where` must be a boolean mask"):
    jaxloss.reduce_loss(np.zeros(3, np.float32), where=np.ones(3, np.float32))


def test_losses_must_be_floating():
  with pytest.raises(TypeError, match="`losses` must be a real floating array"):
    jaxloss.reduce_loss(np.zeros(3, np.int32))


def test_negative_weights_are_caught_by_value_checks():
  w = np.array([1.0, -1.0], np.float32)
  jaxloss.reduce_loss(np.ones(2, np.float32), weights=w)  # checks off: no error
  with pytest.raises(ValueError, match="`weights` must be non-negative"):
    jaxloss.checked(jax.jit(lambda l, w: jaxloss.reduce_loss(l, weights=w)))(
        np.ones(2, np.float32), w)


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_axis_name_psums_over_shard_map(reduction):
  mesh = jax.make_mesh((8,), ("data",), axis_types=(jax.sharding.AxisType.Auto,))
  rng = np.random.default_rng(1)
  l = rng.normal(size=(16, 3)).astype(np.float32)
  w = rng.uniform(0, 2, size=16).astype(np.float32)
  w[:4] = 0
  m = rng.uniform(size=16) > 0.4

  @jax.jit
  def sharded(l, w, m):
    f = lambda l, w, m: jaxloss.reduce_loss(  # noqa: E731
        l, weights=w, where=m, reduction=reduction, axis_name="data")
    return jax.shard_map(f, mesh=mesh, in_specs=P("data"), out_specs=P())(l, w, m)

  np.testing.assert_allclose(sharded(l, w, m), reference(l, _col(w), _col(m), reduction),
                             rtol=1e-5)
  np.testing.assert_allclose(
      jax.grad(sharded)(l, w, m),
      jax.grad(lambda l: jaxloss.reduce_loss(l, weights=w, where=m, reduction=reduction))(l),
      rtol=1e-5)


def _col(x):
  return np.asarray(x)[:, None]


def test_pmap_style_vmap_with_axis_name():
  l = np.arange(8, dtype=np.float32).reshape(4, 2)
  out = jax.vmap(lambda x: jaxloss.reduce_loss(x, reduction="mean", axis_name="b"),
                 axis_name="b")(l)
  np.testing.assert_allclose(out, np.full(4, l.mean()))


def test_output_dtype_policy():
  l16 = jnp.ones(3, jnp.bfloat16)
  assert jaxloss.reduce_loss(l16).dtype == jnp.float32
  assert jax.grad(lambda x: jaxloss.reduce_loss(x))(l16).dtype == jnp.bfloat16
  with jax.enable_x64(True):
    assert jaxloss.reduce_loss(np.ones(3)).dtype == jnp.float64


# XLA:CPU flushes subnormals to zero, so they are left out of the draws.
_finite = st.floats(-1e3, 1e3, width=32, allow_subnormal=False)


@settings(deadline=None)
@given(
    l=hnp.arrays(np.float32, st.integers(1, 12), elements=_finite),
    data=st.data(),
    reduction=st.sampled_from(REDUCTIONS),
)
def test_property_matches_reference(l, data, reduction):
  n = l.shape[0]
  nonneg = st.floats(0, 10, width=32, allow_subnormal=False)
  w = data.draw(hnp.arrays(np.float32, n, elements=nonneg))
  m = data.draw(hnp.arrays(np.bool_, n))
  got = float(jaxloss.reduce_loss(l, weights=w, where=m, reduction=reduction))
  want = reference(l, w, m, reduction)
  assert np.isfinite(got)
  np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-3)


@settings(deadline=None)
@given(l=hnp.arrays(np.float32, st.integers(1, 10), elements=_finite), scale=st.floats(0.1, 10))
def test_property_weighted_mean_is_scale_invariant(l, scale):
  w = np.linspace(0.5, 2.0, l.shape[0]).astype(np.float32)
  a = jaxloss.reduce_loss(l, weights=w, reduction="weighted_mean")
  b = jaxloss.reduce_loss(l, weights=(w * scale).astype(np.float32), reduction="weighted_mean")
  np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-3)


def test_value_checks_cost_nothing_when_off():
  def make():  # a fresh function each time: traces are cached per function
    return lambda p, t: jaxloss.mean_squared_error(p, t, weights=jnp.ones(3))

  args = (jnp.ones(3), jnp.zeros(3))
  off = str(jax.make_jaxpr(make())(*args))
  with jaxloss.value_checks():
    on = str(jax.make_jaxpr(make())(*args))
  assert "check" not in off
  assert "check" in on
