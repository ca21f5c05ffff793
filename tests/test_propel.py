"""PROPEL: formula, torchpropel values, gradients, numerics, memory and the helpers.

The contract battery (jit, vmap, where, reductions, extremes, bf16, export,
shard_map) runs on the cases of ``tests/cases_propel.py``.
"""

from __future__ import annotations

import itertools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads
from scipy import integrate

import jaxloss
from jaxloss import _propel, _propel_kernels

# ------------------------------------------------------------------ a naive float64 reference


def naive_propel(outputs, targets, sigma, logits=None, exact=True):
  """The formula of the issue in linear space, the full I×I grid; autodiff gives its gradient."""
  d = targets.shape[-1]
  mu, s = outputs[..., :d], outputs[..., d:]
  v, u = s * s, sigma * sigma
  num = outputs.shape[-2]
  pi = jnp.full(outputs.shape[:-1], 1.0 / num) if logits is None else jax.nn.softmax(logits, -1)

  def g(ma, va, mb, vb):
    var = va + vb
    return jnp.prod((2 * jnp.pi * var) ** -0.5 * jnp.exp(-((ma - mb) ** 2) / (2 * var)), -1)

  t1 = 2 * jnp.sum(pi * g(targets[..., None, :], u, mu, v), -1)
  gij = g(mu[..., :, None, :], v[..., :, None, :], mu[..., None, :, :], v[..., None, :, :])
  t2 = (4 * jnp.pi * u) ** (-(d if exact else 1) / 2) + jnp.sum(
      pi[..., :, None] * pi[..., None, :] * gij, (-2, -1))
  return jnp.log10(t2) - jnp.log10(t1)


def _inputs(rng, batch, num, dim, spread=0.4, logits=False):
  t = rng.normal(size=(batch, dim))
  mu = t[..., None, :] + spread * rng.normal(size=(batch, num, dim))
  s = rng.uniform(0.2, 0.8, size=(batch, num, dim)) * rng.choice([-1, 1], (batch, num, dim))
  out = np.concatenate([mu, s], -1), t
  return out + (rng.normal(size=(batch, num)),) if logits else out


# ------------------------------------------------------------------ torchpropel values
# Recorded with torchpropel 0.0.3 (torch 2.13.0+cpu), float64 tensors:
#   per = torchpropel.PROPEL(sigma=0.25, reduction="none")(x, t).reshape(-1)
#   grad = torch.autograd.grad(torchpropel.PROPEL(sigma=0.25)(x, t), x)
# sigma = 0.25 is exact in float32, in which torchpropel keeps it; but it also evaluates
# the target's self-term H from that float32 parameter in float32, so its values carry
# float32 rounding (~1e-7 relative) and are compared at rtol 1e-6. CI needs no torch.
TORCHPROPEL = {
    "b3_i3_d2": (
        [[[0.02, 0.7, -0.12, 0.36], [-0.15, 0.11, 0.33, 0.56], [0.15, 0.41, 0.41, 0.36]],
         [[-0.24, -1.17, -0.35, 0.22], [-0.28, -0.68, -0.11, -0.2], [-0.67, -1.03, -0.45, 0.2]],
         [[-1.02, -1.38, 0.28, 0.1], [-1.0, -1.06, 0.52, 0.18], [-0.83, -0.91, 0.23, -0.54]]],
        [[0.0, 0.3], [-0.27, -0.89], [-0.45, -0.99]],
        [0.09089640067730811, 0.027350778584565305, 0.397001679218157],
        [[[0.012707228182, 0.100198044648, 0.062633523327, -0.040455338284],
          [-0.016063474143, -0.004895456299, 0.031230032452, 0.035821496773],
          [0.01621982915, 0.035221992002, 0.035549218172, 0.055429848121]],
         [[-0.008520060669, -0.050256915513, -0.030589454925, -0.008373065457],
          [-0.019375665387, 0.090804018085, 0.155005980788, 0.029093901812],
          [-0.024621667423, -0.032868927828, 0.003238787282, 0.007427156161]],
         [[-0.076844035147, -0.055840064375, -0.160728963777, -0.251982052557],
          [-0.112014721706, -0.097921680748, -0.024883975521, 0.121755987655],
          [-0.189527329482, -0.004353063267, -0.065273494792, -0.053158137354]]]),
    "b2_i2_d3": (
        [[[0.74, -1.0, 0.5, 0.21, 0.44, -0.25], [0.56, -1.14, -0.07, 0.54, -0.43, -0.17]],
         [[0.62, -0.55, 0.51, -0.52, 0.57, 0.55], [0.52, 0.08, 1.02, 0.38, 0.17, 0.2]]],
        [[0.76, -1.2, 0.07], [0.58, -0.19, 0.68]],
        [0.16085304173267523, 0.32401251842427853],
        [[[-0.021569384363, 0.073028423965, 0.292019544107, 0.024811499431, 0.056021937276,
           0.182843664944],
          [-0.064655088879, 0.03162612581, -0.144546971978, 0.11710605118, -0.153568693381,
           -0.090352687516]],
         [[0.006176228855, -0.048367921825, -0.019958651819, -0.084812321497, 0.05790343941,
           0.08030838059],
          [-0.042156760213, 0.43427894713, 0.491312814763, 0.116428476138, -0.278506651521,
           -0.324265295835]]]),
    "b2_i4_d1": (
        [[[0.34, 0.29], [0.19, -0.12], [-0.02, -0.16], [0.19, 0.58]],
         [[-0.54, -0.43], [-0.12, 0.31], [-0.44, 0.36], [-0.26, -0.54]]],
        [[-0.01], [-0.44]],
        [0.04683285056119402, 0.062097286990320494],
        [[[0.04129321763, -0.043401321843], [0.11137328054, 0.09172362436],
          [0.103051453399, -0.074985262437], [0.015559231365, 0.004026219699]],
         [[-0.001674178747, -0.056021251566], [0.073109982228, -0.005401342519],
          [0.015045800046, 0.076184365273], [0.017862591278, -0.024293973936]]]),
}


@pytest.mark.parametrize("name", sorted(TORCHPROPEL))
def test_reference_normalization_reproduces_torchpropel(name):
  x, t, per_example, grad = (np.array(a) for a in TORCHPROPEL[name])
  with jax.enable_x64(True):
    loss = lambda o: jaxloss.propel_loss(o, t, sigma=0.25, gt_normalization="reference")  # noqa: E731
    per = jaxloss.propel_loss(x, t, sigma=0.25, gt_normalization="reference", reduction="none")
    np.testing.assert_allclose(per, per_example, rtol=1e-6)
    value, g = jax.jit(jax.value_and_grad(loss))(x)
    np.testing.assert_allclose(value, per_example.mean(), rtol=1e-6)
    np.testing.assert_allclose(g, grad, rtol=1e-5, atol=1e-8)
    if t.shape[-1] == 1:  # D = 1: the two normalisations coincide
      np.testing.assert_allclose(jaxloss.propel_loss(x, t, sigma=0.25, reduction="none"), per,
                                 rtol=1e-12)


# ------------------------------------------------------------------ value and gradient


@pytest.mark.parametrize(("num", "dim"), [(1, 1), (2, 3), (5, 2), (4, 20), (300, 1)])
@pytest.mark.parametrize("logits", [False, True], ids=["uniform", "logits"])
@pytest.mark.parametrize("norm", ["exact", "reference"])
def test_value_and_gradients_equal_naive_autodiff(num, dim, logits, norm):
  """All four gradients (outputs, targets, logits, sigma), incl. D > UNROLL_DIMS (fori
  over dimensions) and I = 300 over batch tiles (padding included)."""
  rng = np.random.default_rng([num, dim, logits])
  batch = 3 if num < 300 else 40
  args = _inputs(rng, batch, num, dim, logits=logits) + (() if logits else (None,))
  sigma = 0.3
  with jax.enable_x64(True):
    def ours(x, t, lg, sg):
      return jaxloss.propel_loss(x, t, sigma=sg, mixture_logits=lg, gt_normalization=norm,
                                 weights=jnp.arange(1.0, batch + 1), reduction="sum")

    def naive(x, t, lg, sg):
      return jnp.sum(jnp.arange(1.0, batch + 1) * naive_propel(x, t, sg, lg, norm == "exact"))

    argnums = (0, 1, 2, 3) if logits else (0, 1, 3)
    v1, g1 = jax.jit(jax.value_and_grad(ours, argnums))(*args, jnp.float64(sigma))
    v2, g2 = jax.jit(jax.value_and_grad(naive, argnums))(*args, jnp.float64(sigma))
    np.testing.assert_allclose(v1, v2, rtol=1e-10)
    for a, b in zip(g1, g2, strict=True):
      np.testing.assert_allclose(a, b, rtol=1e-8, atol=1e-10)


@pytest.mark.parametrize(("num", "dim", "logits"), [(3, 2, False), (4, 3, True), (2, 18, True)])
def test_check_grads_second_order_float64(num, dim, logits):
  rng = np.random.default_rng([7, num, dim])
  args = _inputs(rng, 2, num, dim, logits=logits)
  with jax.enable_x64(True):
    if logits:
      f = lambda x, t, lg, sg: jaxloss.propel_loss(x, t, sigma=sg, mixture_logits=lg)  # noqa: E731
    else:
      f = lambda x, t, sg: jaxloss.propel_loss(x, t, sigma=sg)  # noqa: E731
    check_grads(jax.jit(f), (*args, 0.4), order=2, modes=("rev",), atol=1e-5, rtol=1e-5)


def test_custom_vjp_equals_autodiff_of_the_same_forward():
  rng = np.random.default_rng(3)
  x, t, lg = (a.astype(np.float32) for a in _inputs(rng, 300, 16, 3, logits=True))

  def loss(custom):
    return lambda x: _propel._propel(x, t, 0.1, lg, "exact", None, None, "mean", None, custom)

  v1, g1 = jax.jit(jax.value_and_grad(loss(True)))(x)
  v2, g2 = jax.jit(jax.value_and_grad(loss(False)))(x)
  np.testing.assert_allclose(v1, v2, rtol=1e-5)
  np.testing.assert_allclose(g1, g2, rtol=1e-3, atol=1e-3 * float(jnp.max(jnp.abs(g2))))


# ------------------------------------------------------------------ properties of the loss


@pytest.mark.parametrize("dim", [1, 3, 40])
def test_perfect_prediction_scores_zero_and_reference_does_not(dim):
  sigma = 0.1
  x = jnp.concatenate([jnp.zeros((1, 3, dim)), jnp.full((1, 3, dim), -sigma)], -1)  # 3 copies
  t = jnp.zeros((1, dim))
  exact = jaxloss.propel_loss(x, t, sigma=sigma)
  assert abs(float(exact)) < 1e-6
  ref = jaxloss.propel_loss(x, t, sigma=sigma, gt_normalization="reference")
  expected = math.log10((1 + (4 * math.pi * sigma**2) ** ((dim - 1) / 2)) / 2)
  np.testing.assert_allclose(ref, expected, rtol=1e-5, atol=1e-6)
  if dim == 3:
    np.testing.assert_allclose(ref, -0.2496, atol=1e-4)  # the D = 3 example


def test_exact_loss_is_nonnegative_and_grows_with_distance():
  rng = np.random.default_rng(11)
  x, t, lg = _inputs(rng, 200, 5, 3, spread=2.0, logits=True)
  per = jaxloss.propel_loss(x, t, mixture_logits=lg, sigma=0.3, reduction="none")
  assert float(jnp.min(per)) >= -1e-6
  base = jnp.concatenate([jnp.zeros((1, 1, 3)), jnp.full((1, 1, 3), 0.3)], -1)
  losses = [float(jaxloss.propel_loss(base, jnp.full((1, 3), r), sigma=0.3))
            for r in (0.0, 0.1, 0.5, 2.0)]
  assert losses == sorted(losses) and losses[0] < 1e-6


def test_equal_logits_equal_uniform_weights_and_logit_gradient_sums_to_zero():
  rng = np.random.default_rng(5)
  x, t, lg = _inputs(rng, 8, 4, 2, logits=True)
  uniform = jaxloss.propel_loss(x, t, reduction="none")
  same = jaxloss.propel_loss(x, t, mixture_logits=np.full((8, 4), 2.5), reduction="none")
  np.testing.assert_allclose(same, uniform, rtol=1e-6)
  g = jax.grad(lambda l: jaxloss.propel_loss(x, t, mixture_logits=l))(lg)  # softmax shift
  np.testing.assert_allclose(jnp.sum(g, -1), 0.0, atol=1e-7)


def test_batch_shape_is_the_element_shape():
  rng = np.random.default_rng(2)
  x, t = _inputs(rng, 6, 3, 2)
  w = rng.uniform(0.5, 2, size=6)
  flat = jaxloss.propel_loss(x, t, weights=w, reduction="weighted_mean")
  shaped = jaxloss.propel_loss(x.reshape(2, 3, 3, 4), t.reshape(2, 3, 2),
                               weights=w.reshape(2, 3), reduction="weighted_mean")
  np.testing.assert_allclose(shaped, flat, rtol=1e-6)
  assert jaxloss.propel_loss(x[0], t[0], reduction="none").shape == ()


# ------------------------------------------------------------------ numerics


@pytest.mark.parametrize(("dim", "sigma", "away"), [(3, 0.1, 100.0), (3, 1e-6, 1000.0),
                                                    (256, 0.1, 30.0), (256, 1e-6, 5.0)])
def test_float32_stays_finite_and_accurate_where_linear_space_overflows(dim, sigma, away):
  """Far targets, many dimensions, tiny sigmas: float32 agrees with our float64."""
  rng = np.random.default_rng(dim)
  t = rng.normal(size=(4, dim)) * sigma
  mu = t[:, None, :] + away * sigma * rng.choice([-1, 1], size=(4, 3, dim))
  s = sigma * rng.uniform(0.5, 2, size=(4, 3, dim))
  x = np.concatenate([mu, s], -1)
  loss = lambda x, t: jaxloss.propel_loss(x, t, sigma=sigma, reduction="sum")  # noqa: E731
  v32, g32 = jax.jit(jax.value_and_grad(loss))(x.astype(np.float32), t.astype(np.float32))
  assert np.isfinite(float(v32)) and bool(jnp.all(jnp.isfinite(g32)))
  with jax.enable_x64(True):
    v64, g64 = jax.jit(jax.value_and_grad(loss))(x, t)
  linear = naive_propel(jnp.asarray(x, jnp.float32), jnp.asarray(t, jnp.float32),
                        jnp.float32(sigma))
  assert not bool(jnp.all(jnp.isfinite(linear)))  # what torchpropel computes: inf or NaN
  np.testing.assert_allclose(v32, v64, rtol=1e-4)
  g_scale = float(np.max(np.abs(np.asarray(g64))))
  np.testing.assert_allclose(g32, g64, rtol=1e-3, atol=1e-3 * g_scale)


def test_zero_std_and_far_pairs_give_finite_gradients():
  x = np.array([[[0.0, 0.0], [1e4, 0.0], [-1e4, 1e-30]]], np.float32)
  t = np.array([[5.0]], np.float32)
  v, g = jax.value_and_grad(lambda x: jaxloss.propel_loss(x, t))(x)
  assert np.isfinite(float(v)) and bool(jnp.all(jnp.isfinite(g)))


def test_memory_is_linear_in_components():
  """Neither a [B, I, I, D] nor a [B, I, I] temporary: XLA's temp stays O(B·I)."""
  b, num, dim = 256, 128, 3
  x = jax.ShapeDtypeStruct((b, num, 2 * dim), jnp.float32)
  t = jax.ShapeDtypeStruct((b, dim), jnp.float32)
  compiled = jax.jit(jax.value_and_grad(jaxloss.propel_loss)).lower(x, t).compile()
  temp = compiled.memory_analysis().temp_size_in_bytes
  assert temp < b * num * num * 4 / 2, temp  # half of one [B, I, I] float32 array (16 MB)


# ------------------------------------------------------------------ errors


def test_static_errors_name_the_argument():
  x, t = np.zeros((2, 3, 4), np.float32), np.zeros((2, 2), np.float32)
  with pytest.raises(ValueError, match=r"`outputs` has shape \(2, 3, 5\)"):
    jaxloss.propel_loss(np.zeros((2, 3, 5), np.float32), t)
  with pytest.raises(ValueError, match=r"`targets` has shape \(2, 3\); expected \(2, 2\)"):
    jaxloss.propel_loss(x, np.zeros((2, 3), np.float32))
  with pytest.raises(ValueError, match=r"`mixture_logits` has shape \(2, 4\); expected \(2, 3\)"):
    jaxloss.propel_loss(x, t, mixture_logits=np.zeros((2, 4), np.float32))
  with pytest.raises(ValueError, match="`gt_normalization` must be one of"):
    jaxloss.propel_loss(x, t, gt_normalization="torch")
  with pytest.raises(ValueError, match="`sigma` must be > 0"):
    jaxloss.propel_loss(x, t, sigma=0.0)
  with pytest.raises(ValueError, match="`sigma` must be a scalar"):
    jaxloss.propel_loss(x, t, sigma=np.ones(2, np.float32))
  with pytest.raises(TypeError, match="`mixture_logits` must be a real floating array"):
    jaxloss.propel_loss(x, t, mixture_logits=np.zeros((2, 3), np.int32))


# ------------------------------------------------------------------ helpers


def test_split_mixture_outputs():
  x = np.arange(24.0).reshape(2, 2, 6) - 12
  means, stds = jaxloss.split_mixture_outputs(x)
  np.testing.assert_array_equal(means, x[..., :3])
  np.testing.assert_array_equal(stds, np.abs(x[..., 3:]))
  with pytest.raises(ValueError, match=r"`outputs` has shape \(2, 3\)"):
    jaxloss.split_mixture_outputs(np.zeros((2, 3)))


@pytest.mark.parametrize("logits", [False, True])
def test_mixture_mean_and_variance_law_of_total_variance(logits):
  rng = np.random.default_rng(4)
  mu, sd, lg = rng.normal(size=(5, 3, 2)), rng.uniform(0.1, 1, (5, 3, 2)), rng.normal(size=(5, 3))
  pi = np.exp(lg) / np.exp(lg).sum(-1, keepdims=True) if logits else np.full((5, 3), 1 / 3)
  mean, var = jaxloss.mixture_mean_and_variance(mu, -sd, lg if logits else None)
  ref_mean = np.einsum("bi,bid->bd", pi, mu)
  ref_var = np.einsum("bi,bid->bd", pi, sd**2 + mu**2) - ref_mean**2  # E[x²] − E[x]²
  np.testing.assert_allclose(mean, ref_mean, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(var, ref_var, rtol=1e-5, atol=1e-6)
  # Sampling check of the same law on one example.
  comp = rng.choice(3, size=200_000, p=pi[0])
  draws = mu[0][comp] + sd[0][comp] * rng.normal(size=(200_000, 2))
  np.testing.assert_allclose(var[0], draws.var(0), rtol=0.03)


def test_gaussian_overlap_is_the_integral_and_stays_finite():
  for ma, va, mb, vb in itertools.product([0.0, 1.3], [0.2, 1.0], [-0.4], [0.5]):
    val, _ = integrate.quad(lambda x, ma=ma, va=va, mb=mb, vb=vb: (
        math.exp(-((x - ma) ** 2) / (2 * va) - (x - mb) ** 2 / (2 * vb))
        / (2 * math.pi * math.sqrt(va * vb))), -30, 30)
    got = jaxloss.gaussian_overlap(jnp.array([ma]), jnp.array([va]), jnp.array([mb]),
                                   jnp.array([vb]))
    np.testing.assert_allclose(float(got), math.log(val), rtol=1e-5)
  far = jaxloss.gaussian_overlap(jnp.zeros(256), jnp.full(256, 1e-12), jnp.full(256, 1.0),
                                 jnp.full(256, 1e-12))
  assert np.isfinite(float(far)) and float(far) < -1e13
  both = jaxloss.gaussian_overlap(jnp.zeros((4, 1, 3)), jnp.ones(3), jnp.zeros((5, 3)),
                                  jnp.ones(3))
  assert both.shape == (4, 5)


def test_kernel_limits_are_documented_constants():
  assert _propel_kernels.V0 == 1e-30 and math.exp(-_propel_kernels.Z2_MAX / 2) == 0.0
