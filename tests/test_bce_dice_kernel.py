"""The building blocks of the fused BCE + Dice kernel (``_bce_dice.py``) chosen for speed.

``_lane_sum`` lays a reduction out for XLA:CPU and must equal ``jnp.sum``;
``_log1p_small`` replaces XLA's ``log1p`` in float32 and must stay within a few
1e-7 relative of the float64 value over the whole range of ``exp(−|x|)``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxloss._bce_dice import _lane_sum, _log1p_small


@pytest.mark.parametrize("shape,axes", [
    ((2, 6, 10, 5), (1, 2)),  # per image: the [B, HW/16, 16 C] view
    ((2, 6, 10, 5), (0, 1, 2)),  # per batch
    ((2, 6, 10, 5), (1,)),  # finer groups: summed axis not next to the classes
    ((2, 6, 10, 5), (0, 2)),  # not contiguous: the plain sum
    ((3, 5, 7, 3), (1, 2)),  # an odd extent: the plain sum
    ((2, 6, 4, 1), (1, 2)),  # one class
    ((2, 3, 4), (0, 1, 2)),  # every axis
])
def test_lane_sum_equals_the_plain_sum(shape, axes):
  v = np.random.default_rng([15, 3]).normal(size=shape).astype(np.float32)
  got = jax.jit(_lane_sum, static_argnums=1)(v, axes)
  want = np.sum(v.astype(np.float64), axis=axes, keepdims=True)
  assert got.shape == want.shape
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_log1p_small_is_accurate_over_the_whole_range():
  x = np.concatenate([np.linspace(0, 40, 40001), np.geomspace(1e-30, 87, 20001)])
  t = np.exp(-x).astype(np.float32)
  got = np.asarray(jax.jit(_log1p_small)(jnp.asarray(t)), np.float64)
  want = np.log1p(t.astype(np.float64))
  np.testing.assert_allclose(got, want, rtol=3e-7, atol=0)
