"""Distance-transform workloads: the exact EDT on ``[8, 256, 256]`` and ``[2, 96, 96, 96]``.

Value only: the distance transform acts on masks and has no gradient, so the
harness times ``jax.jit(fn)`` (``Workload(grad=False)``) and checks that the
outputs agree element-wise. The peer is scipy's C implementation,
``scipy.ndimage.distance_transform_edt``, looped over the batch on the host in
the same process (``host_impls``); it appears when scipy imports (the ``test``
extra). The issue's target: within 2x of scipy on CPU.

The masks are unions of random discs / balls covering about half of each grid
(every grid holds background, so both sides agree exactly). The roofline reads
the bool mask once and writes the float32 output once.
"""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Callable

import jax.numpy as jnp
import numpy as np

import jaxloss
from bench.harness import Workload, register


def _scipy_edt() -> Callable[[np.ndarray], np.ndarray] | None:
  """scipy's EDT looped over the batch, or None when scipy does not import."""
  if importlib.util.find_spec("scipy") is None:
    return None
  try:
    ndimage = importlib.import_module("scipy.ndimage")
  except Exception:  # broad on purpose: a broken peer must not stop the bench
    return None

  def edt(masks: np.ndarray) -> np.ndarray:
    out = np.empty(masks.shape, np.float64)
    for b in range(masks.shape[0]):
      out[b] = ndimage.distance_transform_edt(masks[b])
    return out

  return edt


def _balls(shape: tuple[int, ...], rng: np.random.Generator, count: int) -> np.ndarray:
  """``[B, *spatial]`` bool: per grid, the union of ``count`` random discs / balls."""
  spatial = shape[1:]
  grid = np.stack(np.meshgrid(*[np.arange(n, dtype=np.float32) for n in spatial],
                              indexing="ij"), axis=-1)
  out = np.zeros(shape, bool)
  scale = min(spatial)
  for b in range(shape[0]):
    for _ in range(count):
      centre = rng.uniform(0, spatial).astype(np.float32)
      radius = np.float32(rng.uniform(0.05, 0.2) * scale)
      out[b] |= np.sum(np.square(grid - centre), axis=-1) <= radius * radius
    out[b].flat[rng.integers(out[b].size)] = False  # background is guaranteed
  return out


def _inputs(full: tuple[int, ...], quick: tuple[int, ...], count: int):
  def make(is_quick: bool, rng: np.random.Generator) -> tuple[np.ndarray]:
    return (_balls(quick if is_quick else full, rng, count),)
  return make


SCIPY = _scipy_edt()

for name, full, quick, count in [("distance_transform[8x256x256]", (8, 256, 256), (2, 64, 64), 12),
                                 ("distance_transform[2x96x96x96]", (2, 96, 96, 96),
                                  (1, 32, 32, 32), 10)]:
  k = len(full) - 1
  register(Workload(
      name=name,
      family="distance",
      description=f"exact Euclidean distance transform, {k}-D, value only (no gradient)",
      make_inputs=_inputs(full, quick, count),
      impls={"jaxloss": lambda m, k=k: jaxloss.distance_transform(m, spatial_dims=k)},
      host_impls={} if SCIPY is None else {"scipy": SCIPY},
      grad=False,
      roofline=lambda m: m.astype(jnp.float32),
      min_bytes=lambda inputs: int(inputs[0].nbytes) + 4 * int(inputs[0].size),
      rtol=1e-6,
      atol=1e-5,
  ))
