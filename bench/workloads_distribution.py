"""Ordered-distribution workloads: NIMA's EMD (r = 2) on ``[65536, 10]`` histograms.

The naive JAX row is the Keras/NIMA formula a user writes,
``sqrt(mean(square(cumsum(q) - cumsum(p))))`` averaged over examples, with
autodiff. optax has no EMD.
"""

from __future__ import annotations

from types import ModuleType

import jax
import jax.numpy as jnp
import numpy as np

import jaxloss
from bench.harness import Workload, register

FULL = (65536, 10)
QUICK = (8192, 10)


def _inputs(quick: bool, rng: np.random.Generator) -> tuple[np.ndarray, ...]:
  b, n = QUICK if quick else FULL
  p = rng.dirichlet(np.ones(n), size=b).astype(np.float32)
  q = rng.dirichlet(np.ones(n), size=b).astype(np.float32)
  return p, q


def _naive(p: jax.Array, q: jax.Array) -> jax.Array:
  d = jnp.cumsum(q, axis=-1) - jnp.cumsum(p, axis=-1)
  return jnp.mean(jnp.sqrt(jnp.mean(jnp.square(d), axis=-1)))


def _torch(torch: ModuleType):
  def loss(p, q):
    d = torch.cumsum(q, dim=-1) - torch.cumsum(p, dim=-1)
    return torch.sqrt(torch.mean(d * d, dim=-1)).mean()
  return loss


register(Workload(
    name="emd",
    family="distribution",
    description="NIMA earth mover's distance, r=2, 10 bins, reduction='mean'",
    make_inputs=_inputs,
    impls={
        "jaxloss": lambda p, q: jaxloss.earth_mover_distance(p, q),
        "naive_jax": _naive,
    },
    torch_factory=_torch,
))
