"""The fused softmax CE + Dice path (``_ce_dice.py``) against the composition it replaces.

``softmax_ce_dice_loss`` takes the fused ``custom_vjp`` for class-id labels with
the class axis last; the reference is the composition it took before (and still
takes otherwise): ``softmax_cross_entropy`` plus the Dice part ``dice_terms``,
value and gradient with respect to the logits, the class weights and the
per-image weights, in float64.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxloss
from jaxloss._overlap_losses import dice_terms

B, H, W, C = 3, 5, 4, 4
CW = np.array([0.5, 1.0, 2.0, 0.0])  # a zero class weight too
WEIGHTS = np.array([1.0, 0.0, 2.5])  # a zero-weight image
WHERE = np.array([True, True, False])


def _case(seed: int = 0):
  rng = np.random.default_rng([15, 2, seed])
  x = 2 * rng.normal(size=(B, H, W, C))
  y = rng.integers(0, C, size=(B, H, W)).astype(np.int32)
  y[0, 0, :2] = -1  # ignored where ignore_index=-1
  return x, y


def _options(kw):
  return {"class_weights": kw.get("cw"), "weights": kw.get("weights"), "where": kw.get("where"),
          "reduction": kw.get("reduction", "mean")}


def _reference(x, cw, weights, y, kw):
  opts = {**_options(kw), "class_weights": cw, "weights": weights}
  ce = jaxloss.softmax_cross_entropy(x, y, ignore_index=kw.get("ignore_index"), **opts)
  dice = dice_terms(x, y, axis=-1, activation="softmax", reduce_axes=kw.get("reduce_axes"),
                    include_background=kw.get("include_background", True),
                    smooth=kw.get("smooth", 1e-5), squared=False,
                    ignore_index=kw.get("ignore_index"), axis_name=None, per_image=True, **opts)
  return 1.3 * ce + 0.7 * dice


def _fused(x, cw, weights, y, kw):
  opts = {**_options(kw), "class_weights": cw, "weights": weights}
  return jaxloss.softmax_ce_dice_loss(
      x, y, ce_weight=1.3, dice_weight=0.7, ignore_index=kw.get("ignore_index"),
      reduce_axes=kw.get("reduce_axes"), include_background=kw.get("include_background", True),
      smooth=kw.get("smooth", 1e-5), **opts)


_SLOW = pytest.mark.slow
CASES = [
    pytest.param({}, marks=_SLOW),
    {"cw": CW, "ignore_index": -1},
    pytest.param({"cw": CW, "weights": WEIGHTS, "where": WHERE, "reduction": "weighted_mean"},
                 marks=_SLOW),
    pytest.param({"weights": WEIGHTS, "include_background": False,
                  "reduction": "sum_by_nonzero_weights"}, marks=_SLOW),
    {"cw": CW, "reduce_axes": (0, 1, 2), "weights": WEIGHTS, "where": WHERE, "ignore_index": -1},
    pytest.param({"cw": CW, "reduce_axes": (0, 1, 2), "where": WHERE, "reduction": "sum",
                  "smooth": 0.0}, marks=_SLOW),
    {"cw": CW, "reduce_axes": (1,), "weights": WEIGHTS, "include_background": False},
    {"reduce_axes": (0, 2), "where": WHERE, "ignore_index": -1, "reduction": "weighted_mean"},
]


@pytest.mark.parametrize("kw", CASES, ids=[str(i) for i in range(len(CASES))])
def test_fused_equals_the_composition_in_value_and_gradients(kw):
  x, y = _case()
  if kw.get("ignore_index") is None:
    y = np.where(y < 0, 1, y)
  with jax.enable_x64(True):
    cw = None if kw.get("cw") is None else jnp.asarray(kw["cw"])
    weights = None if kw.get("weights") is None else jnp.asarray(kw["weights"])
    args = (x, cw, weights)
    argnums = tuple(i for i, a in enumerate(args) if a is not None)
    # Compiled: one program each, where eager dispatch compiles every primitive.
    want = jax.jit(jax.value_and_grad(lambda *a: _reference(*a, y, kw), argnums))(*args)
    got = jax.jit(jax.value_and_grad(lambda *a: _fused(*a, y, kw), argnums))(*args)
  np.testing.assert_allclose(got[0], want[0], rtol=1e-12)
  for g, w in zip(got[1], want[1], strict=True):
    np.testing.assert_allclose(g, w, rtol=1e-10, atol=1e-13)


def test_the_fused_path_is_taken_for_class_ids_and_not_for_one_hot_labels():
  x, y = _case()
  y = np.where(y < 0, 1, y)
  fused = str(jax.make_jaxpr(lambda v: jaxloss.softmax_ce_dice_loss(v, y))(x))
  composed = str(jax.make_jaxpr(lambda v: jaxloss.softmax_ce_dice_loss(
      v, jax.nn.one_hot(y, C)))(x))
  assert "scatter-add" in fused and "scatter-add" not in composed


@pytest.mark.parametrize("reduce_axes", [None, (0, 1, 2)])
def test_an_out_of_range_label_poisons_unless_its_image_is_masked(reduce_axes):
  x, y = _case(1)
  y = np.where(y < 0, 1, y)
  y[2, 1, 1] = C
  kw = {"cw": CW, "reduce_axes": reduce_axes}
  with jax.enable_x64(True):
    cw = jnp.asarray(CW)
    assert np.isnan(_fused(x, cw, None, y, kw))
    assert np.isnan(_reference(x, cw, None, y, kw))
    masked = {**kw, "where": WHERE}  # image 2 is masked
    got, g = jax.value_and_grad(lambda v: _fused(v, cw, None, y, masked))(x)
    want = _reference(x, cw, None, y, masked)
  np.testing.assert_allclose(got, want, rtol=1e-12)
  g = np.asarray(g)
  assert np.all(np.isfinite(g)) and np.all(g[2] == 0)


@pytest.mark.slow
def test_second_derivatives_equal_the_composition():
  x, y = _case(2)
  x, y = x[:2, :2, :2], np.where(y[:2, :2, :2] < 0, 1, y[:2, :2, :2])
  kw = {"cw": CW, "reduce_axes": (0, 1, 2), "weights": WEIGHTS[:2]}
  with jax.enable_x64(True):
    cw, w = jnp.asarray(CW), jnp.asarray(WEIGHTS[:2])
    want = jax.hessian(lambda v: _reference(v, cw, w, y, kw))(x)
    got = jax.jacrev(jax.jacrev(lambda v: _fused(v, cw, w, y, kw)))(x)
  np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-12)
