"""The Lovász losses' descending order: single-key radix passes ≡ one stable tuple sort."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from jaxloss import _lovasz

_radix = jax.jit(_lovasz._radix_order)
_order = jax.jit(_lovasz._descending_order)


def _reference(e: np.ndarray) -> np.ndarray:
  """The stable sort of -e: lax.sort's float total order (-0 == 0, NaN last)."""
  iota = lax.broadcasted_iota(jnp.int32, e.shape, e.ndim - 1)
  return np.asarray(lax.sort((-jnp.asarray(e), iota), dimension=e.ndim - 1, num_keys=1)[1])


def _hostile(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
  """Many ties, signed zeros, infinities, NaN, finfo extremes and subnormals."""
  pool = np.array([0.0, -0.0, 1.0, -1.0, 1.5, np.inf, -np.inf, np.nan, 3e38, -3e38,
                   np.finfo(np.float32).min, np.finfo(np.float32).max, 1e-45, -1e-45],
                  np.float32)
  e = rng.standard_normal(shape).astype(np.float32)
  pick = rng.uniform(size=shape) < 0.5
  return np.where(pick, rng.choice(pool, size=shape), e).astype(np.float32)


@pytest.mark.parametrize("shape", [(3, 2), (2, 7), (2, 3, 1000), (1, 4096)])
def test_radix_order_is_the_stable_tuple_sort(shape):
  e = _hostile(np.random.default_rng(len(shape) + shape[-1]), shape)
  np.testing.assert_array_equal(np.asarray(_radix(jnp.asarray(e))), _reference(e))
  np.testing.assert_array_equal(np.asarray(_order(jnp.asarray(e))), _reference(e))


@pytest.mark.slow
def test_radix_order_three_passes():
  e = _hostile(np.random.default_rng(7), (1, 2**16 + 3))  # 17 position bits: 3 passes
  np.testing.assert_array_equal(np.asarray(_radix(jnp.asarray(e))), _reference(e))


def test_short_and_empty_rows():
  e = np.array([[2.0], [-1.0]], np.float32)
  np.testing.assert_array_equal(np.asarray(_order(jnp.asarray(e))), [[0], [0]])
  e = np.zeros((2, 0), np.float32)
  assert _order(jnp.asarray(e)).shape == (2, 0)
