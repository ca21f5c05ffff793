"""NIMA family: EMD peer equalities, its hand-written gradient, score statistics, targets."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.stats
from hypothesis import given, settings
from hypothesis import strategies as st

import jaxloss

N = 10
BINS = np.arange(1.0, N + 1)


@pytest.fixture(autouse=True)
def _x64():
  with jax.enable_x64(True):
    yield


def _pq(seed: int, batch: int = 4, n: int = N):
  rng = np.random.default_rng(seed)
  return rng.dirichlet(np.ones(n), batch), rng.dirichlet(np.ones(n), batch)


def test_equals_keras_formula():
  p, q = _pq(0)
  keras = np.sqrt(np.mean(np.square(np.cumsum(q, -1) - np.cumsum(p, -1)), -1))
  np.testing.assert_allclose(jaxloss.earth_mover_distance(p, q, reduction="none"), keras,
                             rtol=1e-12)
  np.testing.assert_allclose(jaxloss.earth_mover_distance(p, q), keras.mean(), rtol=1e-12)


def test_equals_scipy_wasserstein_and_energy_distance():
  p, q = _pq(1)
  emd1 = jaxloss.earth_mover_distance(p, q, r=1.0, reduction="none")
  emd2 = jaxloss.earth_mover_distance(p, q, r=2.0, reduction="none")
  for i in range(p.shape[0]):
    w1 = scipy.stats.wasserstein_distance(BINS, BINS, p[i], q[i])
    energy = scipy.stats.energy_distance(BINS, BINS, p[i], q[i])
    np.testing.assert_allclose(N * emd1[i], w1, rtol=1e-12)
    np.testing.assert_allclose(np.sqrt(2 * N) * emd2[i], energy, rtol=1e-12)


def test_uneven_bins_generalise_wasserstein():
  p, q = _pq(2)
  bins = np.sort(np.random.default_rng(2).uniform(0, 10, N))
  mean_gap = (bins[-1] - bins[0]) / (N - 1)
  emd1 = jaxloss.earth_mover_distance(p, q, r=1.0, bin_positions=bins, reduction="none")
  for i in range(p.shape[0]):
    w1 = scipy.stats.wasserstein_distance(bins, bins, p[i], q[i])
    np.testing.assert_allclose(N * mean_gap * emd1[i], w1, rtol=1e-12)
  even = jaxloss.earth_mover_distance(p, q, bin_positions=3.0 * BINS, reduction="none")
  np.testing.assert_allclose(even, jaxloss.earth_mover_distance(p, q, reduction="none"),
                             rtol=1e-12)


@pytest.mark.parametrize("r", [1.0, 1.5, 2.0, 3.0])
def test_hand_written_gradient_equals_autodiff_of_formula(r):
  p, q = _pq(3)

  def naive(p, q):
    d = jnp.abs(jnp.cumsum(p - q, -1))
    return jnp.sum(jnp.mean(d**r, -1) ** (1 / r))

  ours = lambda p, q: jaxloss.earth_mover_distance(p, q, r=r, reduction="sum")  # noqa: E731
  np.testing.assert_allclose(ours(p, q), naive(p, q), rtol=1e-12)
  for a, b in zip(jax.grad(ours, (0, 1))(p, q), jax.grad(naive, (0, 1))(p, q), strict=True):
    np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("r", [2.0, 3.0])
def test_many_bins_use_the_scan_prefix_sum_and_equal_the_formula(r):
  # 40 bins: past the dense prefix sum's limit (16), the prefix sums are an associative scan.
  p, q = _pq(13, n=40)
  bins = np.cumsum(np.random.default_rng(13).uniform(0.5, 2.0, 40))
  gaps = np.diff(bins) / np.mean(np.diff(bins))
  c = np.concatenate([gaps, [1.0]])[None] / 40

  def naive(p, q):
    d = jnp.abs(jnp.cumsum(p - q, -1))
    return jnp.sum(jnp.sum(c * d**r, -1) ** (1 / r))

  ours = lambda p, q: jaxloss.earth_mover_distance(  # noqa: E731
      p, q, r=r, bin_positions=bins, reduction="sum")
  np.testing.assert_allclose(ours(p, q), naive(p, q), rtol=1e-12)
  for a, b in zip(jax.grad(ours, (0, 1))(p, q), jax.grad(naive, (0, 1))(p, q), strict=True):
    np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-12)


def test_gradient_is_zero_and_finite_at_equality():
  p, _ = _pq(4)
  for r in (1.0, 2.0, 2.5):
    g = jax.grad(lambda x, r=r: jaxloss.earth_mover_distance(x, p, r=r))(p)
    np.testing.assert_array_equal(g, 0.0)
  with jax.enable_x64(False):
    x = jnp.full((2, N), 0.1, jnp.float32)
    g = jax.grad(lambda x: jaxloss.earth_mover_distance(x, x * 1.0))(x)
    assert np.all(np.isfinite(g))


def test_softmax_activation_and_axis():
  rng = np.random.default_rng(5)
  x = rng.normal(size=(3, N))
  _, q = _pq(5, batch=3)
  a = jaxloss.earth_mover_distance(x, q, activation="softmax")
  b = jaxloss.earth_mover_distance(jax.nn.softmax(x), q)
  np.testing.assert_allclose(a, b, rtol=1e-12)
  c = jaxloss.earth_mover_distance(jax.nn.softmax(x).T, q.T, axis=0)
  np.testing.assert_allclose(c, b, rtol=1e-12)


def test_unnormalised_inputs_are_reported_not_renormalised():
  p, q = _pq(6)
  loss = jaxloss.checked(jax.jit(jaxloss.earth_mover_distance))
  with pytest.raises(ValueError, match="does not sum to 1"):
    loss(2 * p, q)
  assert np.isfinite(jaxloss.earth_mover_distance(2 * p, q))  # checks off: computed as is


def test_shape_errors_name_arguments():
  with pytest.raises(ValueError, match=r"`predictions` has shape \(2, 10\) and `targets`"):
    jaxloss.earth_mover_distance(np.ones((2, N)) / N, np.ones((2, 9)) / 9)
  with pytest.raises(ValueError, match=r"`bin_positions` has shape \(9,\); expected \(10,\)"):
    jaxloss.earth_mover_distance(np.ones(N) / N, np.ones(N) / N, bin_positions=np.arange(9.0))
  with pytest.raises(ValueError, match="`r` must be"):
    jaxloss.earth_mover_distance(np.ones(N) / N, np.ones(N) / N, r=0.5)


def test_score_mean_std_equals_scipy_and_has_finite_gradient_at_zero_std():
  p, _ = _pq(7)
  mean, std = jaxloss.score_mean_std(p)
  for i in range(p.shape[0]):
    rv = scipy.stats.rv_discrete(values=(BINS, p[i]))
    np.testing.assert_allclose(mean[i], rv.mean(), rtol=1e-12)
    np.testing.assert_allclose(std[i], rv.std(), rtol=1e-12)
  bins = np.linspace(-1, 1, N)
  mean, std = jaxloss.score_mean_std(p, bin_positions=bins)
  rv = scipy.stats.rv_discrete(values=(np.arange(N), p[0]))  # rv_discrete needs integers
  np.testing.assert_allclose(mean[0], -1 + 2 / (N - 1) * rv.mean(), rtol=1e-12)
  one_hot = np.eye(N)[3]
  g = jax.grad(lambda x: jaxloss.score_mean_std(x)[1])(one_hot)
  np.testing.assert_array_equal(g, 0.0)


@settings(deadline=None)
@given(score=st.floats(1.0, 10.0))
def test_linear_targets_keep_the_score_exactly(score):
  h = jaxloss.scores_to_distribution(np.float64(score), method="linear")
  assert h.min() >= 0 and np.isclose(h.sum(), 1.0)
  np.testing.assert_allclose(jaxloss.score_mean_std(h)[0], score, rtol=1e-12, atol=1e-12)


def test_nearest_and_gaussian_targets():
  h = jaxloss.scores_to_distribution(np.array([1.2, 4.9, 12.0]), method="nearest")
  np.testing.assert_array_equal(np.argmax(h, -1), [0, 4, 9])  # 12 is clipped to 10
  g = jaxloss.scores_to_distribution(np.array([5.5, 2.0]), method="gaussian",
                                     std=np.array([1.0, 1e-6]))
  np.testing.assert_allclose(g.sum(-1), 1.0, rtol=1e-12)
  np.testing.assert_allclose(g[0, 4], g[0, 5], rtol=1e-12)  # symmetric around 5.5
  np.testing.assert_allclose(g[1], np.eye(N)[1], atol=1e-12)  # tiny std: finite one-hot
  with pytest.raises(ValueError, match="`method` must be one of"):
    jaxloss.scores_to_distribution(np.array(1.0), method="cubic")


def test_counts_to_distribution_flags_rows_without_votes():
  counts = np.array([[0, 2, 6, 2], [0, 0, 0, 0], [1, 1, 1, 1]])
  p, has_votes = jaxloss.counts_to_distribution(counts)
  np.testing.assert_allclose(p, [[0, 0.2, 0.6, 0.2], [0, 0, 0, 0], [0.25] * 4])
  np.testing.assert_array_equal(has_votes, [True, False, True])
  q = np.full((3, 4), 0.25)
  loss = jaxloss.earth_mover_distance(q, p, where=has_votes, reduction="none")
  assert loss[1] == 0.0


@pytest.mark.parametrize("num_bins", [5, 10, 11])
def test_score_histograms_round_trip_to_the_same_mean_with_default_bins(num_bins):
  scores = jnp.array([1.0, 2.7, 4.9, float(num_bins)])
  for method in ("nearest", "linear"):
    h = jaxloss.scores_to_distribution(scores, num_bins=num_bins, method=method)
    mean, _ = jaxloss.score_mean_std(h)
    expected = jnp.round(scores) if method == "nearest" else scores
    np.testing.assert_allclose(mean, expected, rtol=1e-6)


def test_score_histograms_on_another_scale_round_trip_with_bin_positions():
  h = jaxloss.scores_to_distribution(jnp.array([4.9]), num_bins=11, low=0.0, high=10.0)
  mean, _ = jaxloss.score_mean_std(h, bin_positions=jnp.linspace(0.0, 10.0, 11))
  np.testing.assert_allclose(mean, [4.9], rtol=1e-6)


def test_score_mean_std_old_bins_keyword_still_works_with_a_deprecation_warning():
  p = jnp.array([0.2, 0.3, 0.5])
  with pytest.warns(DeprecationWarning, match="bin_positions"):
    old = jaxloss.score_mean_std(p, bins=jnp.array([0.0, 1.0, 2.0]))
  new = jaxloss.score_mean_std(p, bin_positions=jnp.array([0.0, 1.0, 2.0]))
  np.testing.assert_array_equal(old[0], new[0])
  with pytest.raises(TypeError, match="bin_positions"):
    jaxloss.score_mean_std(p, bins=jnp.ones(3), bin_positions=jnp.ones(3))
