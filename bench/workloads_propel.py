"""PROPEL workloads: a mixture of I axis-aligned Gaussians in D = 3, value and gradient.

``outputs f32[B, I, 6]`` (3 means, 3 raw stds per component), ``targets
f32[B, 3]``, sigma = 0.1, reduction "mean", gradient with respect to the
outputs, at B = 4096 and I in {4, 16, 64} (quick: B = 256, the same I).

All implementations use torchpropel's one-dimensional ground-truth self-term
(``gt_normalization="reference"``), so that they agree in value:

* ``naive_jax``: torchpropel 0.0.3's ``getloss`` written in JAX as it is, the
  Python list of pairs i < j, four gathered ``[B, I(I-1)/2, 3]`` tensors, the
  products in linear space with its ``eps`` clamps, and autodiff;
* ``jaxloss_autodiff``: plain autodiff of jaxloss's own forward (no custom_vjp);
* torch: ``torchpropel.PROPEL`` when it is installed, else the same transcription
  in torch.
"""

from __future__ import annotations

import itertools
import math
from types import ModuleType

import jax
import jax.numpy as jnp
import numpy as np

from bench.harness import Workload, register
from jaxloss._propel import _propel, propel_loss

DIM = 3
SIGMA = 0.1
BATCH, QUICK_BATCH = 4096, 256
SIZES = {4: 4, 16: 16, 64: 64}  # I at full size -> I at quick size (a name keeps its I)
EPS = 7.0 / 3 - 4.0 / 3 - 1  # torchpropel's clamp: the float64 machine epsilon


def _inputs(num_full: int):
  def make(quick: bool, rng: np.random.Generator) -> tuple[np.ndarray, ...]:
    b, num = (QUICK_BATCH, SIZES[num_full]) if quick else (BATCH, num_full)
    t = rng.standard_normal((b, DIM), dtype=np.float32)
    mu = t[:, None, :] + 0.3 * rng.standard_normal((b, num, DIM), dtype=np.float32)
    s = rng.uniform(0.05, 0.5, size=(b, num, DIM)).astype(np.float32)
    return np.concatenate([mu, s], axis=-1), t
  return make


def _pairs(num: int) -> tuple[np.ndarray, np.ndarray]:
  pairs = list(itertools.combinations(range(num), 2))
  return np.array([i for i, _ in pairs], np.int32), np.array([j for _, j in pairs], np.int32)


def _naive_propel(outputs: jax.Array, targets: jax.Array) -> jax.Array:
  """torchpropel 0.0.3 ``PROPEL(sigma=0.1)(outputs, targets)``, line for line, in JAX."""
  num, d = outputs.shape[1], targets.shape[1]
  mu, var = outputs[..., :d], outputs[..., d:] ** 2
  sigma_g = jnp.float32(SIGMA) ** 2  # its float32 parameter, squared

  def g_function(mu1, var1, mu2, var2):
    total = var1 + var2
    a = 1 / jnp.maximum(math.sqrt(2 * math.pi) ** d * jnp.sqrt(jnp.prod(total, -1)), EPS)
    b = jnp.sum((2 * mu1 * mu2 - mu1**2 - mu2**2) / jnp.maximum(2 * total, EPS), -1)
    return a * jnp.exp(b)

  def h_function(var):  # D taken from the last axis: 1 for the ground truth
    return 1 / jnp.maximum((2 * math.sqrt(math.pi)) ** var.shape[-1]
                           * jnp.sqrt(jnp.prod(var, -1)), EPS)

  t1 = jnp.sum((2 / num) * g_function(targets[:, None, :], sigma_g, mu, var), -1)
  t2 = h_function(jnp.reshape(sigma_g, (1,))) + jnp.sum((1 / num**2) * h_function(var), -1)
  i, j = _pairs(num)
  t2 = t2 + (2 / num**2) * jnp.sum(g_function(mu[:, i], var[:, i], mu[:, j], var[:, j]), 1)
  return jnp.mean(jnp.log10(t2) - jnp.log10(t1))


def _torch_propel(torch: ModuleType):
  try:
    import torchpropel  # optional peer
  except ImportError:
    torchpropel = None
  if torchpropel is not None:
    return torchpropel.PROPEL(sigma=SIGMA)

  def loss(outputs, targets):  # the same transcription as _naive_propel
    num, d = outputs.shape[1], targets.shape[1]
    mu, var = outputs[..., :d], outputs[..., d:] ** 2
    sigma_g = torch.tensor([[[SIGMA]]], dtype=torch.float32) ** 2

    def g_function(mu1, var1, mu2, var2):
      total = var1 + var2
      a = 1 / (math.sqrt(2 * math.pi) ** d * torch.sqrt(total.prod(-1))).clamp_min(EPS)
      b = ((2 * mu1 * mu2 - mu1**2 - mu2**2) / (2 * total).clamp_min(EPS)).sum(-1)
      return a * torch.exp(b)

    def h_function(var):
      return 1 / ((2 * math.sqrt(math.pi)) ** var.shape[-1]
                  * torch.sqrt(var.prod(-1))).clamp_min(EPS)

    t1 = ((2 / num) * g_function(targets.unsqueeze(1), sigma_g, mu, var)).sum(-1)
    t2 = h_function(sigma_g) + ((1 / num**2) * h_function(var)).sum(-1)
    i, j = (torch.from_numpy(a).long() for a in _pairs(num))
    t2 = t2 + (2 / num**2) * g_function(mu[:, i], var[:, i], mu[:, j], var[:, j]).sum(1)
    return (-torch.log10(t1) + torch.log10(t2)).mean()
  return loss


def _jaxloss(outputs: jax.Array, targets: jax.Array) -> jax.Array:
  return propel_loss(outputs, targets, sigma=SIGMA, gt_normalization="reference")


def _jaxloss_autodiff(outputs: jax.Array, targets: jax.Array) -> jax.Array:
  return _propel(outputs, targets, SIGMA, None, "reference", None, None, "mean", None,
                 custom=False)


for _num in SIZES:
  register(Workload(
      name=f"propel_i{_num}",
      family="propel",
      description=(f"PROPEL, I={_num} Gaussians in D=3, sigma=0.1, "
                   "torchpropel's normalisation, reduction='mean'"),
      make_inputs=_inputs(_num),
      impls={"jaxloss": _jaxloss, "naive_jax": _naive_propel,
             "jaxloss_autodiff": _jaxloss_autodiff},
      torch_factory=_torch_propel,
      rtol=1e-3,
  ))
