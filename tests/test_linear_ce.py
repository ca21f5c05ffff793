"""Fused linear softmax cross-entropy: equal to the unfused composition, never [N, V] big.

The reference is the composition the loss replaces, written with the library's own
tested pieces: ``softmax_cross_entropy(cap(h @ W + b), y, ...)`` plus the z-loss
``α·lse²`` reduced with the same weights (``u_i·cw_{y_i}``) and mask.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P
from jax.test_util import check_grads
from test_classification import CW as TORCH_CW
from test_classification import TORCH_CE, TORCH_CE_NONE_EPS01
from test_classification import X as TORCH_X
from test_classification import Y as TORCH_Y

import jaxloss
from jaxloss._linear_ce import default_chunk_size, linear_softmax_cross_entropy

REDUCTIONS = ("none", "sum", "mean", "weighted_mean", "sum_by_nonzero_weights")
LEAD, H, V = (3, 5), 6, 37  # 15 tokens
CHUNK = 7  # divides neither 15 nor 37: four full chunks and a remainder of 2


def _inputs(dtype=np.float64, seed=0):
  rng = np.random.default_rng(seed)
  h = rng.normal(size=LEAD + (H,)).astype(dtype)
  w = (rng.normal(size=(H, V)) / 1.5).astype(dtype)
  b = rng.normal(size=V).astype(dtype)
  y = rng.integers(0, V, size=LEAD).astype(np.int32)
  y[0, 0], y[0, 1], y[1, 2] = 0, V - 1, 3  # the first and last ids; 3 is ignored below
  cw = rng.uniform(0.2, 2.0, size=V).astype(dtype)
  cw[5] = 0.0
  u = rng.uniform(0.5, 2.0, size=LEAD).astype(dtype)
  u[2, 0] = 0.0
  m = np.ones(LEAD, bool)
  m[0, 3] = m[2, 4] = False
  return h, w, b, y, cw, u, m


def _options(name, cw, u, m):
  return {
      "plain": {},
      "class_weights": {"class_weights": cw},
      "weights_where": {"weights": u, "where": m},
      "ignore_inside": {"ignore_index": 3, "class_weights": cw},
      "ignore_outside": {"ignore_index": -100, "where": m},
      "smoothing": {"label_smoothing": 0.1, "class_weights": cw},
      "z_loss_cap": {"z_loss": 1e-2, "logit_soft_cap": 2.5},
      "everything": {"class_weights": cw, "weights": u, "where": m, "ignore_index": 3,
                     "label_smoothing": 0.2, "z_loss": 3e-2, "logit_soft_cap": 4.0},
  }[name]


def _reference(h, w, y, *, bias=None, z_loss=0.0, logit_soft_cap=None, **kw):
  """The unfused composition (materialises the logits)."""
  u = jnp.einsum("...h,hv->...v", h, w, precision=jax.lax.Precision.HIGHEST)
  if bias is not None:
    u = u + bias.reshape((1,) * (u.ndim - 1) + (-1,))
  z = u if logit_soft_cap is None else logit_soft_cap * jnp.tanh(u / logit_soft_cap)
  loss = jaxloss.softmax_cross_entropy(z, y, **kw)
  if z_loss:
    mask = np.ones(y.shape, bool) if kw.get("where") is None else kw["where"]
    if kw.get("ignore_index") is not None:
      mask = mask & (y != kw["ignore_index"])
    label_w = np.ones(y.shape) if kw.get("weights") is None else kw["weights"]
    if kw.get("class_weights") is not None:
      label_w = label_w * np.where(mask, kw["class_weights"][np.where(mask, y, 0)], 0)
    lse = jax.nn.logsumexp(z, axis=-1)
    loss = loss + jaxloss.reduce_loss(z_loss * lse**2, weights=label_w.astype(z.dtype),
                                      where=mask, reduction=kw.get("reduction", "mean"))
  return loss


def _scalar(fn, h, w, b, reduction):
  out = fn(h, w, b, reduction)
  if reduction == "none":  # a fixed cotangent
    out = jnp.sum(out * jnp.cos(jnp.arange(out.size, dtype=out.dtype)).reshape(out.shape))
  return out


def _all_reductions(fn):
  """One jitted function: value and the three gradients for every reduction."""
  @jax.jit
  def run(h, w, b):
    return {r: jax.value_and_grad(lambda *a, r=r: _scalar(fn, *a, r), (0, 1, 2))(h, w, b)
            for r in REDUCTIONS}
  return run


def _compare(option, chunk, dtype, rtol, atol):
  h, w, b, y, cw, u, m = _inputs(dtype)
  kw = _options(option, cw, u, m)
  fused = _all_reductions(lambda h, w, b, r: linear_softmax_cross_entropy(
      h, w, y, bias=b, reduction=r, chunk_size=chunk, **kw))(h, w, b)
  ref = _all_reductions(lambda h, w, b, r: _reference(h, w, y, bias=b, reduction=r, **kw))(
      h, w, b)
  for r in REDUCTIONS:
    for got, want, what in zip(jax.tree.leaves(fused[r]), jax.tree.leaves(ref[r]),
                               ("value", "d hidden", "d kernel", "d bias"), strict=True):
      assert got.dtype == want.dtype, (r, what)
      np.testing.assert_allclose(got, want, rtol=rtol, atol=atol, err_msg=f"{r}: {what}")


# "everything" has ignore_index inside [0, V), class weights, weights and where together.
OPTIONS = ("weights_where", "ignore_outside", "smoothing", "z_loss_cap", "everything")


@pytest.mark.parametrize("option", OPTIONS)
def test_equals_unfused_composition_float64(option):
  with jax.enable_x64(True):
    _compare(option, CHUNK, np.float64, 1e-10, 1e-12)


@pytest.mark.parametrize("chunk", [1, 8, None])  # None: one chunk of all 37 columns
def test_every_chunking_equals_unfused_float64(chunk):
  with jax.enable_x64(True):
    _compare("everything", chunk, np.float64, 1e-10, 1e-12)


@pytest.mark.parametrize("option,chunk", [("plain", None), ("everything", CHUNK),
                                          ("smoothing", 16)])
def test_equals_unfused_composition_float32(option, chunk):
  _compare(option, chunk, np.float32, 1e-5, 1e-6)


def test_no_bias_equals_unfused():
  h, w, _, y, cw, u, m = _inputs(np.float32)
  kw = _options("everything", cw, u, m)
  f = jax.value_and_grad(lambda h, w: linear_softmax_cross_entropy(
      h, w, y, chunk_size=CHUNK, reduction="weighted_mean", **kw), (0, 1))
  g = jax.value_and_grad(lambda h, w: _reference(h, w, y, reduction="weighted_mean", **kw),
                         (0, 1))
  for got, want in zip(jax.tree.leaves(jax.jit(f)(h, w)), jax.tree.leaves(jax.jit(g)(h, w)),
                       strict=True):
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_plain_mean_equals_optax_on_materialised_logits():
  h, w, _, y, *_ = _inputs(np.float32)
  got = jax.jit(jax.value_and_grad(lambda h, w: linear_softmax_cross_entropy(h, w, y),
                                   (0, 1)))(h, w)
  want = jax.jit(jax.value_and_grad(lambda h, w: optax.softmax_cross_entropy_with_integer_labels(
      h @ w, y).mean(), (0, 1)))(h, w)
  for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want), strict=True):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("eps", [0.0, 0.1])
def test_equals_torch_recorded_values_with_identity_kernel(eps):
  # torch's F.cross_entropy(x @ W, y, weight, ignore_index=255, label_smoothing) with
  # W = I (exact), recorded in test_classification.
  with jax.enable_x64(True):
    got = jax.jit(lambda x, y: {r: linear_softmax_cross_entropy(
        x, np.eye(4), y, class_weights=TORCH_CW, ignore_index=255, label_smoothing=eps,
        chunk_size=3, reduction=r) for r in ("weighted_mean", "sum", "none")})(TORCH_X, TORCH_Y)
    np.testing.assert_allclose(got["weighted_mean"], TORCH_CE[(eps, "mean")], rtol=1e-12)
    np.testing.assert_allclose(got["sum"], TORCH_CE[(eps, "sum")], rtol=1e-12)
    if eps:
      np.testing.assert_allclose(got["none"], TORCH_CE_NONE_EPS01, rtol=1e-12, atol=1e-15)


@functools.cache
def _jitted_loss(**kw):
  return jax.jit(jax.value_and_grad(
      lambda h, w, b, y, m: linear_softmax_cross_entropy(h, w, y, bias=b, where=m, **kw),
      (0, 1, 2)))


def test_invalid_labels_poison_the_loss_and_masked_ones_do_not():
  h, w, b, y, cw, *_ = _inputs(np.float32)
  every = jax.jit(lambda y, m: {r: linear_softmax_cross_entropy(
      h, w, y, bias=b, where=m, class_weights=cw, label_smoothing=0.1, reduction=r,
      chunk_size=CHUNK) for r in REDUCTIONS})
  m = np.ones(LEAD, bool)
  mb = m.copy()
  mb[1, 1] = False
  for bad in (V, -1, 2**31 - 1):  # negative labels never wrap around to V + label
    yb = y.copy()
    yb[1, 1] = bad
    out = every(yb, m)
    for r in REDUCTIONS[1:]:
      assert np.isnan(out[r]), (bad, r)
    assert np.isnan(out["none"][1, 1]) and np.isfinite(np.delete(out["none"].ravel(), 6)).all()
    value, grads = _jitted_loss(reduction="mean", chunk_size=CHUNK, label_smoothing=0.1)(
        h, w, b, yb, mb)
    assert np.isfinite(value) and all(np.isfinite(g).all() for g in grads)


def test_masked_nan_hidden_rows_have_zero_value_and_gradient():
  h, w, b, y, *_ = _inputs(np.float32)
  m = np.ones(LEAD, bool)
  m[1, :2] = False
  poisoned = h.copy()
  poisoned[~m] = np.nan
  f = _jitted_loss(reduction="weighted_mean", chunk_size=CHUNK, z_loss=1e-2,
                   label_smoothing=0.1, logit_soft_cap=3.0)
  value, (dh, dw, db) = f(poisoned, w, b, y, m)
  clean_value, (cdh, cdw, cdb) = f(h, w, b, y, m)
  np.testing.assert_allclose(value, clean_value, rtol=1e-6)
  np.testing.assert_array_equal(np.asarray(dh)[~m], 0.0)
  for a, c in ((dh, cdh), (dw, cdw), (db, cdb)):
    np.testing.assert_allclose(a, c, rtol=1e-6, atol=1e-7)
  # ≡ slicing the masked tokens away
  sliced, _ = _jitted_loss(reduction="weighted_mean", chunk_size=CHUNK, z_loss=1e-2,
                           label_smoothing=0.1, logit_soft_cap=3.0)(
                               h[m], w, b, y[m], np.ones(m.sum(), bool))
  np.testing.assert_allclose(value, sliced, rtol=1e-6)


@pytest.mark.parametrize("reduction", REDUCTIONS[1:])
def test_all_masked_and_empty_batches_give_zero_with_zero_gradients(reduction):
  h, w, b, y, *_ = _inputs(np.float32)
  f = _jitted_loss(reduction=reduction, chunk_size=CHUNK, z_loss=1e-2)
  value, grads = f(h, w, b, y, np.zeros(LEAD, bool))
  assert float(value) == 0.0
  for g in grads:
    np.testing.assert_array_equal(g, 0.0)
  value, grads = f(h[:0, :0], w, b, y[:0, :0], np.zeros((0, 0), bool))
  assert float(value) == 0.0
  for g in grads:
    np.testing.assert_array_equal(g, 0.0)


def test_ignore_index_equals_slicing():
  h, w, b, y, cw, *_ = _inputs(np.float32)
  f = jax.jit(lambda h, y, ii: linear_softmax_cross_entropy(
      h, w, y, bias=b, class_weights=cw, ignore_index=ii, label_smoothing=0.1,
      reduction="weighted_mean", chunk_size=CHUNK), static_argnums=2)
  for ii in (3, -100):
    yi = np.where(np.arange(y.size).reshape(LEAD) % 4 == 1, ii, y)
    keep = yi != ii
    np.testing.assert_allclose(f(h, yi, ii), f(h[keep], yi[keep], ii), rtol=1e-6)


def test_bf16_matmuls_accumulate_in_f32_and_gradients_keep_input_dtypes():
  h, w, b, y, *_ = _inputs(np.float32)
  hb, wb, bb = (jnp.asarray(a, jnp.bfloat16) for a in (h, w, b))
  f = jax.jit(jax.value_and_grad(lambda h, w, b: linear_softmax_cross_entropy(
      h, w, y, bias=b, chunk_size=CHUNK, z_loss=1e-3), (0, 1, 2)))
  value, grads = f(hb, wb, bb)
  assert value.dtype == jnp.float32
  assert [g.dtype for g in grads] == [jnp.bfloat16] * 3
  # The bf16 products are exact in f32: the same loss as f32 math on the bf16 values.
  ref_value, ref_grads = f(*(a.astype(jnp.float32) for a in (hb, wb, bb)))
  np.testing.assert_allclose(value, ref_value, rtol=1e-6)
  for g, r in zip(grads, ref_grads, strict=True):
    np.testing.assert_allclose(np.asarray(g, np.float32), r, rtol=2e-2, atol=2e-3)
  # bf16 hidden with an f32 kernel: f32 matmuls, the f32 result.
  mixed, _ = jax.value_and_grad(lambda h: linear_softmax_cross_entropy(
      h, w, y, bias=b, chunk_size=CHUNK, z_loss=1e-3))(hb)
  np.testing.assert_allclose(mixed, f(hb.astype(jnp.float32), w, b)[0], rtol=1e-6)


def test_precision_reaches_every_matmul():
  h, w, b, y, *_ = _inputs(np.float32)
  f = jax.value_and_grad(lambda h, w: linear_softmax_cross_entropy(
      h, w, y, precision=jax.lax.Precision.HIGHEST, chunk_size=CHUNK), (0, 1))
  text = jax.jit(f).lower(h, w).as_text()
  dots = [line for line in text.splitlines() if "dot_general" in line and "=" in line]
  assert len(dots) >= 4  # forward, and the backward's recompute, d hidden, d kernel
  assert all("HIGHEST" in line for line in dots), dots


def test_check_grads_first_order_float64():
  with jax.enable_x64(True):
    h, w, b, y, cw, u, m = _inputs(np.float64, seed=1)
    kw = _options("everything", cw, u, m)
    f = jax.jit(lambda h, w, b, cw: linear_softmax_cross_entropy(
        h, w, y, bias=b, chunk_size=CHUNK, reduction="weighted_mean",
        **{**kw, "class_weights": cw}))
    check_grads(f, (h, w, b, cw), order=1, modes=("rev",), atol=1e-6, rtol=1e-6)


def test_second_order_reverse_mode_and_forward_mode_raises():
  with jax.enable_x64(True):
    h, w, b, y, *_ = _inputs(np.float64, seed=2)
    h, y, w = h[:1], y[:1] % 9, w[:, :9]
    f = lambda h, w: linear_softmax_cross_entropy(h, w, y, chunk_size=CHUNK, z_loss=1e-2,
                                                  label_smoothing=0.1, logit_soft_cap=3.0)
    check_grads(jax.jit(f), (h, w), order=2, modes=("rev",), atol=1e-5, rtol=1e-5)
    hess = jax.jit(jax.jacrev(jax.jacrev(f)))(h, w)  # second derivatives w.r.t. hidden
    ref = jax.jit(jax.jacrev(jax.jacrev(lambda h: _reference(
        h, w, y, z_loss=1e-2, label_smoothing=0.1, logit_soft_cap=3.0))))(h)
    np.testing.assert_allclose(hess, ref, rtol=1e-9, atol=1e-12)
    with pytest.raises(TypeError):
      jax.jvp(lambda h: f(h, w), (h,), (h,))


def test_return_aux_holds_lse_z_loss_share_and_accuracy():
  h, w, b, y, cw, u, m = _inputs(np.float32)
  kw = {"class_weights": cw, "weights": u, "where": m, "ignore_index": 3}
  f = jax.jit(lambda h, w, y, zl: linear_softmax_cross_entropy(
      h, w, y, bias=b, reduction="weighted_mean", return_aux=True, chunk_size=CHUNK,
      z_loss=zl, **kw))
  loss, aux = f(h, w, y, 0.05)
  z = h @ w + b[None, None]
  keep = m & (y != 3)
  np.testing.assert_allclose(aux["lse"], np.where(keep, jax.nn.logsumexp(z, -1), 0), rtol=1e-6)
  np.testing.assert_allclose(aux["z_loss"], loss - f(h, w, y, 0.0)[0], rtol=1e-5)
  np.testing.assert_allclose(aux["accuracy"], jaxloss.accuracy(z, y, where=m, ignore_index=3))
  # The argmax is exercised: a kernel that makes each token's label win.
  yy = (np.arange(15).reshape(LEAD) % H).astype(np.int32)
  easy = f(np.eye(H, dtype=np.float32)[yy], np.eye(H, V, dtype=np.float32) * 5, yy, 0.0)
  assert float(easy[1]["accuracy"]) == 1.0


def test_tied_embedding_transpose_equals_kernel():
  h, w, _, y, *_ = _inputs(np.float32)
  embedding = np.ascontiguousarray(w.T)
  f = jax.jit(jax.value_and_grad(lambda h, e: linear_softmax_cross_entropy(h, e.T, y), (0, 1)))
  value, (dh, de) = f(h, embedding)
  ref_value, (rdh, rdw) = jax.value_and_grad(lambda h, w: linear_softmax_cross_entropy(
      h, w, y), (0, 1))(h, w)
  np.testing.assert_allclose(value, ref_value, rtol=1e-6)
  np.testing.assert_allclose(de, rdw.T, rtol=1e-6, atol=1e-7)


def _vocab_mesh_inputs(data, vocab):
  rng = np.random.default_rng(3)
  n, v = 8 * data, 5 * vocab  # 5 columns per shard: a chunk of 3 leaves a remainder
  h = rng.normal(size=(n, H)).astype(np.float32)
  w = (rng.normal(size=(H, v)) / 1.5).astype(np.float32)
  b = rng.normal(size=v).astype(np.float32)
  y = rng.integers(0, v, size=n).astype(np.int32)
  y[:3] = [0, v - 1, 7]
  cw = rng.uniform(0.2, 2.0, size=v).astype(np.float32)
  u = rng.uniform(0.5, 2.0, size=n).astype(np.float32)
  m = rng.uniform(size=n) < 0.8
  return h, w, b, y, cw, u, m


_SHARDED_KW = {"ignore_index": 7, "label_smoothing": 0.1, "z_loss": 1e-2,
               "logit_soft_cap": 3.0, "chunk_size": 3}


@pytest.mark.parametrize("data,vocab", [(1, 8), (2, 4)], ids=["vocab8", "data2xvocab4"])
def test_vocab_parallel_shard_map_equals_unsharded(data, vocab):
  h, w, b, y, cw, u, m = _vocab_mesh_inputs(data, vocab)
  mesh = jax.make_mesh((data, vocab), ("data", "vocab"),
                       axis_types=(jax.sharding.AxisType.Auto,) * 2)

  def local(h, w, b, y, cw, u, m, reduction):
    loss, aux = linear_softmax_cross_entropy(
        h, w, y, bias=b, class_weights=cw, weights=u, where=m, reduction=reduction,
        axis_name="data", vocab_axis_name="vocab", return_aux=True, **_SHARDED_KW)
    return loss, (aux["accuracy"], aux["z_loss"])

  for reduction in ("weighted_mean", "sum"):
    sharded = jax.shard_map(
        functools.partial(local, reduction=reduction), mesh=mesh,
        in_specs=(P("data"), P(None, "vocab"), P("vocab"), P("data"), P(), P("data"),
                  P("data")), out_specs=(P(), (P(), P())))

    def total(h, w, b, cw, sharded=sharded):
      return sharded(h, w, b, y, cw, u, m)

    (value, (acc, zpart)), grads = jax.jit(jax.value_and_grad(
        total, (0, 1, 2, 3), has_aux=True))(h, w, b, cw)
    ref_fn = lambda h, w, b, cw, r=reduction: linear_softmax_cross_entropy(  # noqa: E731
        h, w, y, bias=b, class_weights=cw, weights=u, where=m, reduction=r,
        return_aux=True, **_SHARDED_KW)
    (ref_value, ref_aux), ref_grads = jax.value_and_grad(ref_fn, (0, 1, 2, 3),
                                                         has_aux=True)(h, w, b, cw)
    np.testing.assert_allclose(value, ref_value, rtol=1e-5)
    np.testing.assert_allclose(acc, ref_aux["accuracy"])
    np.testing.assert_allclose(zpart, ref_aux["z_loss"], rtol=1e-5)
    for g, r in zip(grads, ref_grads, strict=True):
      np.testing.assert_allclose(g, r, rtol=1e-5, atol=1e-6)


def test_jit_over_named_sharding_on_a_2d_mesh_equals_unsharded():
  h, w, b, y, cw, u, m = _vocab_mesh_inputs(2, 4)
  mesh = jax.make_mesh((2, 4), ("data", "vocab"), axis_types=(jax.sharding.AxisType.Auto,) * 2)
  put = lambda a, *spec: jax.device_put(a, NamedSharding(mesh, P(*spec)))  # noqa: E731
  args = (put(h, "data"), put(w, None, "vocab"), put(b, "vocab"), put(y, "data"), put(cw),
          put(u, "data"), put(m, "data"))
  f = jax.value_and_grad(lambda h, w, b, y, cw, u, m: linear_softmax_cross_entropy(
      h, w, y, bias=b, class_weights=cw, weights=u, where=m, reduction="weighted_mean",
      **_SHARDED_KW), (0, 1, 2))
  got = jax.jit(f)(*args)
  want = f(h, w, b, y, cw, u, m)
  for g, r in zip(jax.tree.leaves(got), jax.tree.leaves(want), strict=True):
    np.testing.assert_allclose(g, r, rtol=1e-5, atol=1e-6)


def test_export_lowers_for_cpu_cuda_tpu():
  h, w, b, y, cw, u, m = _inputs(np.float32)
  f = jax.jit(jax.value_and_grad(lambda h, w, b: linear_softmax_cross_entropy(
      h, w, y, bias=b, class_weights=cw, weights=u, where=m, reduction="weighted_mean",
      label_smoothing=0.1, z_loss=1e-3, logit_soft_cap=5.0, chunk_size=CHUNK), (0, 1, 2)))
  specs = [jax.ShapeDtypeStruct(a.shape, a.dtype) for a in (h, w, b)]
  exported = jax.export.export(f, platforms=("cpu", "cuda", "tpu"))(*specs)
  assert exported.platforms == ("cpu", "cuda", "tpu")
  for got, want in zip(jax.tree.leaves(exported.call(h, w, b)), jax.tree.leaves(f(h, w, b)),
                       strict=True):
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7)


def test_llm_scale_temp_memory_stays_below_1_5_gib_compile_only():
  # N = 16384 tokens, H = 2048, V = 131072, bf16: the naive value-and-grad needs about
  # 17-21 GiB of temporaries (the [N, V] logits and their gradient). Nothing runs here.
  n, hidden, vocab = 16384, 2048, 131072
  specs = (jax.ShapeDtypeStruct((n, hidden), jnp.bfloat16),
           jax.ShapeDtypeStruct((hidden, vocab), jnp.bfloat16),
           jax.ShapeDtypeStruct((n,), jnp.int32))
  f = jax.value_and_grad(lambda h, w, y: linear_softmax_cross_entropy(h, w, y), (0, 1))
  temp = jax.jit(f).lower(*specs).compile().memory_analysis().temp_size_in_bytes
  assert temp <= 1.5 * 2**30, temp / 2**30


def test_default_chunk_is_cache_sized_on_cpu_and_wide_on_accelerators():
  assert default_chunk_size(4096, 32768, "cpu") == 512
  assert default_chunk_size(16384, 131072, "cpu") == 128
  assert default_chunk_size(16384, 131072, "gpu") == 1024
  assert default_chunk_size(4096, 32768, "tpu") == 4096
  assert default_chunk_size(8, 100, "cpu") == 100  # never wider than V
  assert default_chunk_size(0, 50000, "gpu") == 8192


def test_static_errors_name_the_argument():
  h, w, b, y, cw, *_ = _inputs(np.float32)
  with pytest.raises(ValueError, match="`kernel` has shape"):
    linear_softmax_cross_entropy(h, w.T, y)
  with pytest.raises(ValueError, match="`labels` has shape"):
    linear_softmax_cross_entropy(h, w, y[0])
  with pytest.raises(ValueError, match="`bias` has shape"):
    linear_softmax_cross_entropy(h, w, y, bias=b[:-1])
  with pytest.raises(ValueError, match="`class_weights` has shape"):
    linear_softmax_cross_entropy(h, w, y, class_weights=cw[:-1])
  with pytest.raises(ValueError, match="`chunk_size` must be >= 1"):
    linear_softmax_cross_entropy(h, w, y, chunk_size=0)
  with pytest.raises(TypeError, match="`chunk_size` must be None or a Python int"):
    linear_softmax_cross_entropy(h, w, y, chunk_size=2.0)
  with pytest.raises(ValueError, match="`logit_soft_cap` must be > 0"):
    linear_softmax_cross_entropy(h, w, y, logit_soft_cap=0.0)
  with pytest.raises(ValueError, match="`z_loss` must be >= 0"):
    linear_softmax_cross_entropy(h, w, y, z_loss=-1.0)
  with pytest.raises(TypeError, match="`labels` must hold integer class ids"):
    linear_softmax_cross_entropy(h, w, y.astype(np.float32))
  with pytest.raises(ValueError, match="vocabulary axis"):
    linear_softmax_cross_entropy(h, w[:, :0], y)
