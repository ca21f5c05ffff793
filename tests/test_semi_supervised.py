"""Missing labels, multi-head losses, pseudo-labels, consistency and masked accuracy.

The per-element losses also run the contract battery (``cases_semi_supervised.py``);
here: float64 formulas, peers, and the non-loss functions (``labeled_mask``,
``multi_head_loss``, ``accuracy``) under jit, vmap, export and shard_map.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import scipy.stats
from hypothesis import given, settings
from hypothesis import strategies as st
from jax.sharding import PartitionSpec as P
from jax.test_util import check_grads

import jaxloss

PLATFORMS = ("cpu", "cuda", "tpu")


def _softmax(x: np.ndarray, axis: int = -1) -> np.ndarray:
  e = np.exp(x - x.max(axis, keepdims=True))
  return e / e.sum(axis, keepdims=True)


def _log_softmax(x: np.ndarray, axis: int = -1) -> np.ndarray:
  z = x - x.max(axis, keepdims=True)
  return z - np.log(np.exp(z).sum(axis, keepdims=True))


def _mesh() -> jax.sharding.Mesh:
  assert jax.device_count() == 8, "conftest.py should give 8 virtual CPU devices"
  return jax.make_mesh((8,), ("data",), axis_types=(jax.sharding.AxisType.Auto,))


def _export_call(f, *args):
  specs = [jax.ShapeDtypeStruct(np.shape(a), np.asarray(a).dtype) for a in args]
  exported = jax.export.export(jax.jit(f), platforms=PLATFORMS)(*specs)
  assert exported.platforms == PLATFORMS
  return exported.call(*args)


def _partial_batch(seed: int = 0):
  """8 examples, 5 classes; rows 1, 4, 6 labeled (one-hot), the rest all-zero rows."""
  rng = np.random.default_rng(seed)
  logits = (2 * rng.normal(size=(8, 5))).astype(np.float32)
  classes = rng.integers(0, 5, size=8)
  labeled = np.zeros(8, bool)
  labeled[[1, 4, 6]] = True
  onehot = np.eye(5, dtype=np.float32)[classes] * labeled[:, None]
  logits[[1, 4], classes[[1, 4]]] += 8.0  # two labeled rows right, one wrong
  logits[6, classes[6]] -= 8.0
  return logits, classes, onehot, labeled


# ------------------------------------------------------------------ the acceptance


def test_three_labeled_rows_of_eight_give_exactly_the_loss_of_those_rows():
  logits, classes, onehot, labeled = _partial_batch()
  alone = jaxloss.softmax_cross_entropy(logits[labeled], onehot[labeled])
  batch = jaxloss.softmax_cross_entropy(logits, onehot)
  np.testing.assert_array_equal(batch, alone)
  ref = -_log_softmax(logits.astype(np.float64))[labeled, classes[labeled]].mean()
  np.testing.assert_allclose(batch, ref, rtol=1e-6)
  # Through multi_head_loss with the mask from labeled_mask: the same number.
  per = jaxloss.softmax_cross_entropy(logits, onehot, reduction="none")
  mask = jaxloss.labeled_mask(onehot)
  np.testing.assert_array_equal(mask, labeled)
  total, heads = jaxloss.multi_head_loss({"cls": per}, wheres={"cls": mask})
  np.testing.assert_allclose(total, alone, rtol=1e-6)
  np.testing.assert_allclose(heads["cls"], alone, rtol=1e-6)
  # The unlabeled rows get exactly zero gradient.
  grad = jax.grad(lambda x: jaxloss.softmax_cross_entropy(x, onehot))(logits)
  np.testing.assert_array_equal(grad[~labeled], 0.0)


def test_masked_accuracy_matches_numpy_on_the_labeled_rows_only():
  logits, classes, onehot, labeled = _partial_batch()
  want = np.mean(np.argmax(logits[labeled], -1) == classes[labeled])
  assert want == 2 / 3
  np.testing.assert_allclose(jaxloss.accuracy(logits, onehot), want, rtol=1e-7)
  np.testing.assert_allclose(jax.jit(jaxloss.accuracy)(logits, onehot), want, rtol=1e-7)
  ints = np.where(labeled, classes, -1).astype(np.int32)
  np.testing.assert_allclose(jaxloss.accuracy(logits, ints, ignore_index=-1), want, rtol=1e-7)
  np.testing.assert_allclose(jaxloss.accuracy(logits, classes.astype(np.int32), where=labeled),
                             want, rtol=1e-7)
  # The naive accuracy counts the 5 unlabeled rows as errors (or as class 0).
  assert np.mean(np.argmax(logits, -1) == np.argmax(onehot, -1)) < 0.5


# ------------------------------------------------------------------ labeled_mask


def test_labeled_mask_one_hot_integer_and_class_axis():
  y = np.array([[0.0, 1.0, 0.0], [0.0, 0.0, 0.0], [0.2, 0.0, 0.8], [1e-30, 0.0, 0.0]])
  np.testing.assert_array_equal(jaxloss.labeled_mask(y), [True, False, True, True])
  np.testing.assert_array_equal(jaxloss.labeled_mask(y != 0), [True, False, True, True])
  nchw = np.moveaxis(np.stack([y, y[::-1]]).reshape(2, 2, 2, 3), -1, 1)
  np.testing.assert_array_equal(jaxloss.labeled_mask(nchw, axis=1),
                                jaxloss.labeled_mask(np.moveaxis(nchw, 1, -1)))
  ints = np.array([[3, 255], [0, 1]], np.int32)
  np.testing.assert_array_equal(jaxloss.labeled_mask(ints, ignore_index=255),
                                [[True, False], [True, True]])
  np.testing.assert_array_equal(jaxloss.labeled_mask(ints), np.ones((2, 2), bool))
  mask = jax.jit(jaxloss.labeled_mask)(y)
  assert mask.dtype == jnp.bool_ and mask.shape == (4,)


def test_labeled_mask_errors():
  with pytest.raises(ValueError, match="`ignore_index` only applies to integer labels"):
    jaxloss.labeled_mask(np.zeros((2, 3), np.float32), ignore_index=0)
  with pytest.raises(ValueError, match="must have a class axis"):
    jaxloss.labeled_mask(np.float32(1.0))
  with pytest.raises(ValueError, match="`axis`=2 is out of range"):
    jaxloss.labeled_mask(np.zeros((2, 3), np.float32), axis=2)


# ------------------------------------------------------------------ multi_head_loss


def _heads(seed: int = 1):
  rng = np.random.default_rng(seed)
  losses = {"cls": rng.uniform(0, 3, size=(6,)), "rec": rng.uniform(0, 1, size=(6, 4))}
  wheres = {"cls": np.array([True, False, True, False, False, True])}
  weights = {"rec": rng.uniform(0.5, 2.0, size=6)}
  return losses, wheres, weights


@pytest.mark.parametrize("reduction", ["sum", "mean", "weighted_mean", "sum_by_nonzero_weights"])
def test_multi_head_loss_float64_formula(reduction):
  with jax.enable_x64(True):
    losses, wheres, weights = _heads()
    total, heads = jaxloss.multi_head_loss(losses, loss_weights={"rec": 0.25}, wheres=wheres,
                                           weights=weights, reduction=reduction)
    m = wheres["cls"]
    w = np.broadcast_to(weights["rec"][:, None], (6, 4))
    cls = {"sum": losses["cls"][m].sum()}.get(reduction, losses["cls"][m].mean())
    rec = {"sum": (w * losses["rec"]).sum(), "mean": (w * losses["rec"]).mean(),
           "weighted_mean": (w * losses["rec"]).sum() / w.sum(),
           "sum_by_nonzero_weights": (w * losses["rec"]).mean()}[reduction]
    np.testing.assert_allclose(heads["cls"], cls, rtol=1e-12)
    np.testing.assert_allclose(heads["rec"], rec, rtol=1e-12)
    np.testing.assert_allclose(total, cls + 0.25 * rec, rtol=1e-12)
    assert total.dtype == jnp.float64 and list(heads) == ["cls", "rec"]


def test_multi_head_loss_head_without_labels_is_zero_with_zero_gradient():
  losses, _, _ = _heads()
  losses = {k: v.astype(np.float32) for k, v in losses.items()}
  losses["cls"][:] = np.nan  # an unlabeled batch may hold NaN losses for that head
  none = {"cls": np.zeros(6, bool)}

  def total(ls):
    return jaxloss.multi_head_loss(ls, wheres=none, loss_weights={"cls": 2.0})[0]

  value, grads = jax.value_and_grad(total)(losses)
  _, heads = jaxloss.multi_head_loss(losses, wheres=none)
  assert float(heads["cls"]) == 0.0
  np.testing.assert_allclose(value, losses["rec"].mean(), rtol=1e-6)
  np.testing.assert_array_equal(grads["cls"], 0.0)
  np.testing.assert_allclose(grads["rec"], np.full((6, 4), 1 / 24), rtol=1e-6)


def test_multi_head_loss_traced_loss_weights_mixed_dtypes_and_grad():
  losses, wheres, _ = _heads()
  losses = {"cls": jnp.asarray(losses["cls"], jnp.bfloat16),
            "rec": jnp.asarray(losses["rec"], jnp.float32)}

  @jax.jit
  def total(ls, lam):
    return jaxloss.multi_head_loss(ls, loss_weights={"rec": lam}, wheres=wheres)[0]

  value, (g_ls, g_lam) = jax.value_and_grad(total, (0, 1))(losses, jnp.float32(0.5))
  _, heads = jaxloss.multi_head_loss(losses, wheres=wheres)
  assert value.dtype == jnp.float32 and g_ls["cls"].dtype == jnp.bfloat16
  np.testing.assert_allclose(g_lam, heads["rec"], rtol=1e-6)
  np.testing.assert_allclose(value, heads["cls"] + 0.5 * heads["rec"], rtol=1e-6)


def test_multi_head_loss_errors_name_the_head():
  losses, _, _ = _heads()
  with pytest.raises(ValueError, match=r"`wheres` has keys \['clf'\] that are not heads"):
    jaxloss.multi_head_loss(losses, wheres={"clf": np.ones(6, bool)})
  with pytest.raises(ValueError, match=r"`loss_weights\['rec'\]` must be a scalar"):
    jaxloss.multi_head_loss(losses, loss_weights={"rec": np.ones(2)})
  with pytest.raises(ValueError, match=r"`wheres\['cls'\]` has shape \(5,\)"):
    jaxloss.multi_head_loss(losses, wheres={"cls": np.ones(5, bool)})
  with pytest.raises(TypeError, match=r"`wheres\['cls'\]` must be a boolean mask"):
    jaxloss.multi_head_loss(losses, wheres={"cls": np.ones(6, np.int32)})
  with pytest.raises(TypeError, match=r"`losses\['cls'\]` must be a real floating array"):
    jaxloss.multi_head_loss({"cls": np.ones(6, np.int32)})
  with pytest.raises(ValueError, match="must be a scalar reduction"):
    jaxloss.multi_head_loss(losses, reduction="none")
  with pytest.raises(ValueError, match="at least one head"):
    jaxloss.multi_head_loss({})


def test_multi_head_loss_jit_vmap_export_and_shard_map():
  losses, wheres, weights = _heads()
  losses = {k: v.astype(np.float32) for k, v in losses.items()}
  weights = {k: v.astype(np.float32) for k, v in weights.items()}

  def f(ls, m, w, axis_name=None):
    return jaxloss.multi_head_loss(ls, wheres={"cls": m}, weights={"rec": w},
                                   loss_weights={"rec": 3.0}, reduction="weighted_mean",
                                   axis_name=axis_name)

  eager = f(losses, wheres["cls"], weights["rec"])
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6),
               jax.jit(f)(losses, wheres["cls"], weights["rec"]), eager)
  exported = _export_call(lambda a, b, m, w: f({"cls": a, "rec": b}, m, w),
                          losses["cls"], losses["rec"], wheres["cls"], weights["rec"])
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6), exported, eager)
  stacked = jax.tree.map(lambda a: np.stack([a, a[::-1]]), (losses, wheres["cls"],
                                                            weights["rec"]))
  batched = jax.vmap(f)(*stacked)
  looped = [f(*jax.tree.map(lambda a, i=i: a[i], stacked)) for i in range(2)]
  np.testing.assert_allclose(batched[0], [t for t, _ in looped], rtol=1e-6)
  # Sharded over 8 devices, each head's numerators and denominators are psum-ed.
  rng = np.random.default_rng(2)
  big = {"cls": rng.uniform(size=16).astype(np.float32),
         "rec": rng.uniform(size=(16, 4)).astype(np.float32)}
  m, w = rng.uniform(size=16) < 0.3, rng.uniform(0.5, 2, size=16).astype(np.float32)

  def total(ls):
    sharded = jax.shard_map(lambda ls, m, w: f(ls, m, w, axis_name="data"), mesh=_mesh(),
                            in_specs=P("data"), out_specs=P())
    return sharded(ls, m, w)[0]

  value, grad = jax.jit(jax.value_and_grad(total))(big)
  ref_value, ref_grad = jax.value_and_grad(lambda ls: f(ls, m, w)[0])(big)
  np.testing.assert_allclose(value, ref_value, rtol=1e-5)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-8),
               grad, ref_grad)


# ------------------------------------------------------------------ pseudo-labels


def _fixmatch_reference(x, t, threshold, hard, temperature, where, reduction):
  """FixMatch / UDA written from the formulas, in float64."""
  q = _softmax(t)
  confident = q.max(-1) >= threshold
  targets = np.eye(t.shape[-1])[t.argmax(-1)] if hard else _softmax(t / temperature)
  ce = -(targets * _log_softmax(x)).sum(-1)
  num = (ce * confident * where).sum()
  den = {"mean": where.sum(), "weighted_mean": (confident * where).sum(), "sum": 1.0}
  return num / den[reduction], (confident * where).sum() / where.sum()


@pytest.mark.parametrize("hard", [True, False])
@pytest.mark.parametrize("reduction", ["mean", "weighted_mean", "sum"])
def test_pseudo_label_float64_formula(hard, reduction):
  with jax.enable_x64(True):
    rng = np.random.default_rng(3)
    x, t = rng.normal(size=(2, 10, 5)) * 2
    where = np.arange(10) % 3 != 0
    loss, frac = jaxloss.pseudo_label_cross_entropy(
        x, t, threshold=0.55, hard=hard, temperature=0.4, where=where, reduction=reduction)
    want, want_frac = _fixmatch_reference(x, t, 0.55, hard, 0.4, where, reduction)
    assert 0 < want_frac < 1
    np.testing.assert_allclose(loss, want, rtol=1e-12)
    np.testing.assert_allclose(frac, want_frac, rtol=1e-12)


@pytest.mark.parametrize("classes", [10, 32, 1000])
def test_first_argmax_is_jnp_argmax_on_ties_nan_inf_and_signed_zeros(classes):
  """The pseudo-labels' argmax (two plain reductions from 32 classes) is jnp.argmax's."""
  from jaxloss._class_inputs import first_argmax

  rng = np.random.default_rng(classes)
  x = rng.normal(size=(9, classes)).astype(np.float32)
  x[0, [3, 7]] = 50.0  # a tie: the first wins
  x[1, [2, 5]] = [np.inf, np.nan]  # a NaN anywhere wins
  x[2] = -np.inf
  x[3, [1, 4]] = np.inf
  x[4] = 0.0
  x[4, [2, 6]] = [-0.0, 0.0]
  x[5, -1] = 3e38
  for axis, xs in ((-1, x), (0, x.T)):
    got = jax.jit(lambda v, axis=axis: first_argmax(v, jnp.max(v, axis, keepdims=True), axis))
    np.testing.assert_array_equal(got(xs), jnp.argmax(xs, axis=axis))


def test_pseudo_label_teacher_gets_no_gradient_and_thresholds_are_the_extremes():
  rng = np.random.default_rng(4)
  x, t = (rng.normal(size=(2, 6, 4)) * 2).astype(np.float32)
  g_x, g_t = jax.grad(lambda x, t: jaxloss.pseudo_label_cross_entropy(x, t)[0], (0, 1))(x, t)
  np.testing.assert_array_equal(g_t, 0.0)
  # threshold 0: plain CE on the teacher's argmax.
  loss, frac = jaxloss.pseudo_label_cross_entropy(x, t, threshold=0.0)
  np.testing.assert_allclose(loss, jaxloss.softmax_cross_entropy(x, np.argmax(t, -1)),
                             rtol=1e-6)
  assert float(frac) == 1.0
  # threshold 1 on a spread-out teacher: nothing confident, 0 with zero gradient.
  f = lambda x: jaxloss.pseudo_label_cross_entropy(x, t / 10, threshold=1.0)  # noqa: E731
  (loss, frac), g = jax.value_and_grad(f, has_aux=True)(x)
  assert float(loss) == 0.0 and float(frac) == 0.0
  np.testing.assert_array_equal(g, 0.0)


def test_pseudo_label_traced_threshold_and_unlabeled_rows_only():
  logits, _, onehot, labeled = _partial_batch()
  teacher = 3 * logits[::-1]
  unlabeled = ~jaxloss.labeled_mask(onehot)
  f = jax.jit(lambda x, t, tau: jaxloss.pseudo_label_cross_entropy(x, t, threshold=tau,
                                                                   where=unlabeled))
  for tau in (0.5, 0.9):
    loss, frac = f(logits, teacher, jnp.float32(tau))
    want, want_frac = _fixmatch_reference(logits.astype(np.float64), teacher.astype(np.float64),
                                          tau, True, 1.0, ~labeled, "mean")
    np.testing.assert_allclose(loss, want, rtol=1e-5)
    np.testing.assert_allclose(frac, want_frac, rtol=1e-6)


def test_pseudo_label_fraction_shards_and_exports():
  rng = np.random.default_rng(5)
  x, t = (rng.normal(size=(2, 16, 4)) * 2).astype(np.float32)
  m = rng.uniform(size=16) < 0.7

  def f(x, t, m, axis_name=None):
    return jaxloss.pseudo_label_cross_entropy(x, t, threshold=0.6, where=m,
                                              axis_name=axis_name)

  eager = f(x, t, m)
  sharded = jax.shard_map(lambda x, t, m: f(x, t, m, axis_name="data"), mesh=_mesh(),
                          in_specs=P("data"), out_specs=(P(), P()))
  np.testing.assert_allclose(jax.jit(sharded)(x, t, m), eager, rtol=1e-6)
  np.testing.assert_allclose(_export_call(f, x, t, m), eager, rtol=1e-6)


def test_pseudo_label_option_errors():
  x = np.zeros((2, 3), np.float32)
  with pytest.raises(ValueError, match=r"`threshold` must lie in \[0, 1\]"):
    jaxloss.pseudo_label_cross_entropy(x, x, threshold=1.5)
  with pytest.raises(ValueError, match="`temperature` must be > 0"):
    jaxloss.pseudo_label_cross_entropy(x, x, hard=False, temperature=0.0)
  with pytest.raises(ValueError, match=r"`teacher_logits` has shape \(2, 4\); expected the "
                                       r"shape of `logits` \(2, 3\)"):
    jaxloss.pseudo_label_cross_entropy(x, np.zeros((2, 4), np.float32))


# ------------------------------------------------------------------ entropy minimisation


def test_entropy_equals_scipy_and_self_cross_entropy():
  with jax.enable_x64(True):
    rng = np.random.default_rng(6)
    x = rng.normal(size=(4, 3, 7)) * 3
    per = jaxloss.entropy_minimization_loss(x, reduction="none")
    np.testing.assert_allclose(per, scipy.stats.entropy(_softmax(x), axis=-1), rtol=1e-12)
    nchw = jaxloss.entropy_minimization_loss(np.moveaxis(x, -1, 1), axis=1, reduction="none")
    np.testing.assert_allclose(nchw, per, rtol=1e-12)
    optax_h = lambda x: optax.softmax_cross_entropy(x, jax.nn.softmax(x)).mean()  # noqa: E731
    np.testing.assert_allclose(jax.grad(jaxloss.entropy_minimization_loss)(x),
                               jax.grad(optax_h)(x), rtol=1e-10, atol=1e-14)


@settings(deadline=None)
@given(seed=st.integers(0, 2**31 - 1), scale=st.floats(0.0, 30.0), shift=st.floats(-50, 50),
       classes=st.integers(2, 40))
def test_property_entropy_bounds_and_shift_invariance(seed, scale, shift, classes):
  with jax.enable_x64(True):
    x = np.random.default_rng(seed).normal(size=(5, classes)) * scale
    h = jaxloss.entropy_minimization_loss(x, reduction="none")
    assert np.all(h >= -1e-12) and np.all(h <= np.log(classes) + 1e-12)
    np.testing.assert_allclose(jaxloss.entropy_minimization_loss(x + shift, reduction="none"),
                               h, rtol=1e-9, atol=1e-9)
    if scale == 0.0:
      np.testing.assert_allclose(h, np.log(classes), rtol=1e-12)


# ------------------------------------------------------------------ consistency


def test_consistency_kl_and_mse_equal_the_peers():
  with jax.enable_x64(True):
    rng = np.random.default_rng(7)
    a, b = rng.normal(size=(2, 6, 5)) * 2
    kl = optax.losses.kl_divergence_with_log_targets(_log_softmax(a), _log_softmax(b))
    np.testing.assert_allclose(jaxloss.consistency_loss(a, b), kl.mean(), rtol=1e-12)
    # MixMatch L_U: mean over examples and classes of (p - q)^2, q sharpened by T.
    q = _softmax(b) ** (1 / 0.5)
    q /= q.sum(-1, keepdims=True)
    np.testing.assert_allclose(jaxloss.consistency_loss(a, b, kind="mse", temperature=0.5),
                               np.mean((_softmax(a) - q) ** 2), rtol=1e-12)
    same = jax.value_and_grad(lambda a: jaxloss.consistency_loss(a, a + 3.0))(a)
    np.testing.assert_allclose(same[0], 0.0, atol=1e-14)
    np.testing.assert_allclose(same[1], 0.0, atol=1e-14)


@pytest.mark.parametrize("kind", ["kl", "mse"])
def test_consistency_stop_gradient_on_the_target(kind):
  with jax.enable_x64(True):
    rng = np.random.default_rng(8)
    a, b = rng.normal(size=(2, 4, 3))
    m = np.array([True, False, True, True])
    g_b = jax.grad(lambda b: jaxloss.consistency_loss(a, b, kind=kind))(b)
    np.testing.assert_array_equal(g_b, 0.0)
    f = lambda a, b: jaxloss.consistency_loss(a, b, kind=kind, stop_gradient=False,  # noqa: E731
                                              temperature=0.8, where=m)
    assert np.abs(jax.grad(f, 1)(a, b)).max() > 1e-3
    # jit: check_grads calls f dozens of times (compiled once, not primitive by primitive).
    check_grads(jax.jit(f), (a, b), order=2, modes=("fwd", "rev"), atol=1e-5, rtol=1e-5)


def test_consistency_kl_row_blocks_equal_the_whole_array(monkeypatch):
  """The blocked KL (chosen by size; forced here on a small input) equals the whole-array
  one in value, in the gradients w.r.t. both logits and the temperature, and forward mode;
  with a NaN row masked and extreme logits."""
  from jaxloss import _consistency

  rng = np.random.default_rng(12)
  a, b = (rng.normal(size=(2, 3, 128, 7)) * 3).astype(np.float32)
  a[0, 0, :2] = b[0, 0, :2] = [3e38, -3e38]  # the same one-hot p and q: KL 0
  b[1, 5, 1] = -3e38
  b[2, 7] = np.nan
  m = np.ones((3, 128), bool)
  m[2, 7] = False

  def run():
    f = lambda a, b, t: jaxloss.consistency_loss(  # noqa: E731
        a, b, temperature=t, stop_gradient=False, where=m, reduction="sum")
    vg = jax.jit(jax.value_and_grad(f, (0, 1, 2)))(a, b, 0.7)
    tangent = jax.jit(lambda a, b: jax.jvp(f, (a, b, 0.7), (b * 0, a, 0.25)))(a, b)
    return vg, tangent

  whole = run()
  monkeypatch.setattr(_consistency, "_TILE_MIN_ELEMENTS", 0)
  assert _consistency._block_rows(jnp.asarray(a), "kl", 2) == 128
  blocked = run()
  for got, want in zip(jax.tree.leaves(blocked), jax.tree.leaves(whole), strict=True):
    assert np.all(np.isfinite(got))
    np.testing.assert_allclose(got, want, rtol=2e-6, atol=1e-6)


@pytest.mark.parametrize("kind", ["kl", "mse"])
def test_consistency_without_stop_gradient_is_finite_at_extreme_logits(kind):
  rng = np.random.default_rng(11)
  a, b = rng.choice([-1e4, 1e4, 0.0], size=(2, 6, 4)).astype(np.float32)
  f = lambda a, b: jaxloss.consistency_loss(a, b, kind=kind, stop_gradient=False)  # noqa: E731
  value, grads = jax.value_and_grad(f, (0, 1))(a, b)
  assert np.isfinite(value) and all(np.all(np.isfinite(g)) for g in grads)


def test_consistency_option_errors():
  x = np.zeros((2, 3), np.float32)
  with pytest.raises(ValueError, match="`kind` must be 'kl' or 'mse'"):
    jaxloss.consistency_loss(x, x, kind="js")
  with pytest.raises(ValueError, match=r"`logits_b` has shape \(3, 2\)"):
    jaxloss.consistency_loss(x, x.T)


# ------------------------------------------------------------------ accuracy


@settings(deadline=None)
@given(seed=st.integers(0, 2**31 - 1), batch=st.integers(1, 12), classes=st.integers(2, 40),
       p_labeled=st.floats(0.0, 1.0))
def test_property_accuracy_is_numpy_accuracy_of_labeled_rows(seed, batch, classes, p_labeled):
  rng = np.random.default_rng(seed)
  logits = rng.normal(size=(batch, classes)).astype(np.float32)
  y = rng.integers(0, classes, size=batch)
  labeled = rng.uniform(size=batch) < p_labeled
  onehot = np.eye(classes, dtype=np.float32)[y] * labeled[:, None]
  want = np.mean(logits[labeled].argmax(-1) == y[labeled]) if labeled.any() else 0.0
  got = jaxloss.accuracy(logits, onehot)
  assert got.dtype == jnp.float32 and not np.isnan(got)
  np.testing.assert_allclose(got, want, rtol=1e-6)
  np.testing.assert_allclose(jaxloss.accuracy(logits, np.where(labeled, y, -1).astype(np.int32),
                                              ignore_index=-1), want, rtol=1e-6)


def test_accuracy_nothing_labeled_is_zero_and_pixels_with_class_axis():
  logits = np.zeros((3, 4), np.float32)
  assert float(jaxloss.accuracy(logits, np.zeros((3, 4), np.float32))) == 0.0
  assert float(jaxloss.accuracy(logits, np.zeros(3, np.int32), where=np.zeros(3, bool))) == 0.0
  rng = np.random.default_rng(9)
  x = rng.normal(size=(2, 4, 3, 3)).astype(np.float32)  # NCHW
  y = rng.integers(0, 4, size=(2, 3, 3)).astype(np.int32)
  y[0, 0] = 255
  keep = y != 255
  want = np.mean(x.argmax(1)[keep] == y[keep])
  np.testing.assert_allclose(jaxloss.accuracy(x, y, axis=1, ignore_index=255), want, rtol=1e-6)
  low = jaxloss.accuracy(jnp.asarray(x, jnp.bfloat16), y, axis=1, ignore_index=255)
  assert low.dtype == jnp.float32


def test_accuracy_jit_vmap_export_and_shard_map():
  rng = np.random.default_rng(10)
  logits = rng.normal(size=(16, 5)).astype(np.float32)
  onehot = np.eye(5, dtype=np.float32)[rng.integers(0, 5, size=16)]
  onehot[rng.uniform(size=16) < 0.5] = 0.0
  eager = jaxloss.accuracy(logits, onehot)
  np.testing.assert_allclose(jax.jit(jaxloss.accuracy)(logits, onehot), eager, rtol=1e-7)
  np.testing.assert_allclose(_export_call(jaxloss.accuracy, logits, onehot), eager, rtol=1e-7)
  per_half = jax.vmap(jaxloss.accuracy)(logits.reshape(2, 8, 5), onehot.reshape(2, 8, 5))
  np.testing.assert_allclose(per_half, [jaxloss.accuracy(logits[:8], onehot[:8]),
                                        jaxloss.accuracy(logits[8:], onehot[8:])], rtol=1e-7)
  sharded = jax.shard_map(lambda x, y: jaxloss.accuracy(x, y, axis_name="data"), mesh=_mesh(),
                          in_specs=P("data"), out_specs=P())
  np.testing.assert_allclose(jax.jit(sharded)(logits, onehot), eager, rtol=1e-7)


def test_accuracy_errors_name_the_argument():
  with pytest.raises(ValueError, match=r"integer `labels` has shape \(3,\); expected \(2,\)"):
    jaxloss.accuracy(np.zeros((2, 4), np.float32), np.zeros(3, np.int32))
  with pytest.raises(TypeError, match="`where` must be a boolean mask"):
    jaxloss.accuracy(np.zeros((2, 4), np.float32), np.zeros(2, np.int32), where=np.ones(2))
