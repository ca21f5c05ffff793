"""The softmax-of-class-ids overlap sums (``_overlap_kernels.py``) equal the generic maps.

A per-class ``where`` mask sends the same call down the generic path (autodiff of
``jax.nn.softmax`` and the one-hot maps), so an all-True one is the reference
(one-hot float labels for the generalized Dice, which has one loss per group):
value and gradient in float64, for every overlap loss and the options that reach
the kernel (``ignore_index`` inside and outside ``[0, C)``, ``squared``, class
weights, background, batch-level sums, an invalid id).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxloss

B, H, W, C = 3, 5, 4, 4

_LOSSES = {
    "dice": lambda x, y, **kw: jaxloss.dice_loss(x, y, activation="softmax", smooth=1e-3,
                                                 **kw),
    "dice_squared": lambda x, y, **kw: jaxloss.dice_loss(
        x, y, activation="softmax", squared=True, class_weights=jnp.array([1., 2., .5, 1.]),
        **kw),
    "jaccard_batch": lambda x, y, **kw: jaxloss.jaccard_loss(
        x, y, activation="softmax", reduce_axes=(0, 1, 2), include_background=False, **kw),
    "tversky": lambda x, y, **kw: jaxloss.tversky_loss(
        x, y, activation="softmax", alpha=0.7, beta=0.3, gamma=1.5, smooth=1e-3, **kw),
    "generalized_dice": lambda x, y, **kw: jaxloss.generalized_dice_loss(
        x, y, activation="softmax", **kw),
}


def _inputs(seed):
  rng = np.random.default_rng(seed)
  x = 3 * rng.normal(size=(B, H, W, C))
  y = rng.integers(0, C, size=(B, H, W)).astype(np.int32)
  y[0, :2, :] = 1  # the ignored class below is present
  return x, y


@pytest.mark.parametrize("ignore_index", [None, 1, 255])
def test_kernel_equals_the_generic_maps_in_value_and_gradient(ignore_index):
  x, y = _inputs(0)
  if ignore_index == 255:
    y[1, 0, 0] = 255
  with jax.enable_x64(True):
    @jax.jit
    def run(x):
      out = {}
      for name, loss in _LOSSES.items():
        groups = (C,) if name == "jaccard_batch" else (B, C)
        if name == "generalized_dice" and ignore_index is not None:
          continue  # one loss per group: no per-class mask; one-hot labels below

        def kernel(v, loss=loss):
          return loss(v, y, ignore_index=ignore_index)

        def generic(v, loss=loss, groups=groups, name=name):
          if name == "generalized_dice":  # one-hot float labels take the generic maps
            return loss(v, jax.nn.one_hot(y, C, dtype=v.dtype))
          return loss(v, y, ignore_index=ignore_index, where=jnp.ones(groups, bool))
        out[name] = (jax.value_and_grad(kernel)(x), jax.value_and_grad(generic)(x))
      return out

    for name, ((v, g), (v0, g0)) in run(x).items():
      np.testing.assert_allclose(v, v0, rtol=1e-12, err_msg=name)
      np.testing.assert_allclose(g, g0, rtol=1e-9, atol=1e-14, err_msg=name)
      if ignore_index is not None:  # ignored pixels: zero gradient
        assert np.all(np.asarray(g)[y == ignore_index] == 0), name


def test_an_invalid_id_poisons_its_group_as_the_generic_maps_do():
  x, y = _inputs(1)
  y[2, 1, 1] = C  # invalid, image 2
  with jax.enable_x64(True):
    @jax.jit
    def run(x):
      kernel = jaxloss.dice_loss(x, y, activation="softmax", reduction="none")
      generic = jaxloss.dice_loss(x, y, activation="softmax", reduction="none",
                                  where=jnp.ones((B, C), bool))
      return kernel, generic

    kernel, generic = map(np.asarray, run(x))
  assert np.isnan(kernel[2]).all() and np.isfinite(kernel[:2]).all()
  np.testing.assert_array_equal(np.isnan(kernel), np.isnan(generic))
  np.testing.assert_allclose(kernel[:2], generic[:2], rtol=1e-12)


def test_second_derivatives_equal_the_generic_maps():
  x, y = _inputs(2)
  x = x[:2, :3, :3]
  y = y[:2, :3, :3]
  with jax.enable_x64(True):
    def kernel(v):
      return jaxloss.tversky_loss(v, y, activation="softmax", gamma=1.5, ignore_index=0)

    def generic(v):
      return jaxloss.tversky_loss(v, y, activation="softmax", gamma=1.5, ignore_index=0,
                                  where=jnp.ones((2, C), bool))

    want = jax.jit(jax.hessian(generic))(x)
    np.testing.assert_allclose(jax.jit(jax.jacrev(jax.jacrev(kernel)))(x), want, rtol=1e-9,
                               atol=1e-12)
    np.testing.assert_allclose(jax.jit(jax.hessian(kernel))(x), want, rtol=1e-9, atol=1e-12)
    with pytest.raises(TypeError, match="forward-mode"):  # the policy (docs/reliability.md)
      jax.jvp(kernel, (x,), (np.ones_like(x),))
    with pytest.raises(TypeError, match="forward-mode"):
      jax.jacfwd(kernel)(x)
