"""Contract cases of the PROPEL loss (joined to the registry by ``loss_registry``).

Input 0 is the network output ``[B, I, 2D]`` (D means, then D raw stds); input 1
the targets ``[B, D]``; the mixture logits, where used, are input 2.
"""

from __future__ import annotations

from typing import Any

import jax.numpy as jnp
import numpy as np
from loss_registry import LIMIT, Inputs, LossCase

from jaxloss._propel import propel_loss

SIGMA = 0.25
# About 1e-6, and a power of two: scaling by it is exact, so a fused multiply-add
# under jit cannot turn means equal to their target at 3e38 into ones an ulp apart
# (about 1e25 sigmas, a loss beyond float32) as scaling by 1e-6 did.
TINY_SIGMA = 2.0 ** -20


def _inputs(num: int, dim: int, logits: bool, spread: float = 1.0, sigma: float = SIGMA):
  """Components about ``spread`` sigmas from the target, stds within a factor 2**spread
  of sigma (signs of the raw stds mixed). Sums over D = 256 dimensions round to about
  D·eps; a small ``spread`` keeps the eager and jitted results within the contract's
  1e-6 of each other. A larger ``sigma`` makes the loss smoother in absolute units, so
  that check_grads' finite differences (eps = 1e-4) stay within its 1e-5."""
  def make(rng: np.random.Generator, batch: int, dtype: Any) -> Inputs:
    t = rng.normal(size=(batch, dim))
    mu = t[:, None, :] + spread * sigma * rng.normal(size=(batch, num, dim))
    s = sigma * 2.0 ** (spread * rng.uniform(-1, 1, size=(batch, num, dim)))
    s = s * rng.choice([-1, 1], (batch, num, 1))
    out = (np.concatenate([mu, s], -1).astype(dtype), t.astype(dtype))
    return out + ((rng.normal(size=(batch, num)).astype(dtype),) if logits else ())
  return make


def _extremes(num: int, dim: int, logits: bool, sigma: float = SIGMA):
  """Means and targets at ±3e38 (each example's all at one place), stds of 0 and 1e-30,
  huge stds, a target 100 sigmas from all components, and point masses at the target.

  Two means 6e38 apart have a squared distance that is genuinely infinite in
  float32, so each example's means and target share one offset in {-3e38, 0,
  3e38} (plus noise that vanishes in float32 at 3e38): a kernel that expands
  (μ - t)² into μ² - 2μt + t² overflows there, the true loss does not.
  """

  def make(rng: np.random.Generator, batch: int) -> Inputs:
    offset = rng.choice([-LIMIT, LIMIT, 0.0], size=(batch, 1, 1))
    mu = offset + rng.normal(size=(batch, num, dim))
    s = rng.choice([0.0, 1e-30, 1e3, sigma], size=(batch, num, dim))
    t = offset[:, 0] + rng.normal(size=(batch, dim))
    mu[0], s[0], t[0] = 0.0, sigma, 100 * sigma  # every component 100 sigmas away
    mu[1], s[1], t[1] = 0.0, 0.0, 0.0  # point masses exactly at the target
    out = (np.concatenate([mu, s], -1).astype(np.float32), t.astype(np.float32))
    if logits:
      out += (rng.choice([-LIMIT, LIMIT, 0.0], size=(batch, num)).astype(np.float32),)
    return out
  return make


def _with_logits(outputs, targets, logits, **kwargs):
  return propel_loss(outputs, targets, mixture_logits=logits, **kwargs)


def _in_sigma_units(a):
  """Floating inputs given in units of TINY_SIGMA, cast up so low precision stays exact."""
  a = jnp.asarray(a)
  if not jnp.issubdtype(a.dtype, jnp.floating):
    return a
  return a.astype(jnp.float64 if a.dtype == jnp.float64 else jnp.float32) * TINY_SIGMA


def _tiny_sigma(outputs, targets, **kwargs):
  """sigma = 2^-20 (about 1e-6) with inputs of that scale, so the kernel runs at 1e-6
  scales in float32 while check_grads' finite differences still see O(1) inputs."""
  return propel_loss(_in_sigma_units(outputs), _in_sigma_units(targets),
                             sigma=TINY_SIGMA, **kwargs)


# PROPEL's input 0 is [B, I, 2D]: components and their parameters, no pixel axis.
_propel = {"forward_mode": False, "pixel_axes": 0}

CASES = [
    LossCase("propel_loss", propel_loss, _inputs(4, 3, False), _extremes(4, 3, False),
             kwargs={"sigma": SIGMA}, scalar_options={"sigma": SIGMA}, **_propel),
    LossCase("propel_loss[reference]", propel_loss, _inputs(3, 2, False),
             _extremes(3, 2, False), kwargs={"sigma": SIGMA, "gt_normalization": "reference"},
             scalar_options={"sigma": SIGMA}, **_propel),
    LossCase("propel_loss[mixture_logits]", _with_logits, _inputs(5, 3, True, sigma=1.0),
             _extremes(5, 3, True, sigma=1.0), kwargs={"sigma": 1.0},
             input_names=("outputs", "targets", "mixture_logits"), **_propel),
    LossCase("propel_loss[D=256]", propel_loss, _inputs(3, 256, False, spread=0.1, sigma=4.0),
             _extremes(3, 256, False, sigma=4.0), kwargs={"sigma": 4.0}, **_propel),
    LossCase("propel_loss[sigma=2**-20]", _tiny_sigma, _inputs(4, 3, False),
             _extremes(4, 3, False, sigma=1.0), **_propel),
]
