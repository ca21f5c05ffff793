"""The loss contract: one battery of checks run over every registered loss."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import PartitionSpec as P
from jax.test_util import check_grads
from loss_registry import LossCase, all_cases

CASES = all_cases()
CLASS_AXIS_CASES = [c for c in CASES if c.class_axis is not None]
BATCH = 6
SCALAR_REDUCTIONS = ("sum", "mean", "weighted_mean", "sum_by_nonzero_weights")


def _rng(case: LossCase, salt: int = 0) -> np.random.Generator:
  return np.random.default_rng([sum(map(ord, case.name)), salt])


def _weights_and_mask(batch: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
  weights = rng.uniform(0.5, 2.0, size=batch).astype(np.float32)
  weights[1] = 0.0
  mask = np.ones(batch, dtype=bool)
  mask[[0, batch - 2]] = False
  return weights, mask


def _call(case: LossCase, args, **kwargs) -> jax.Array:
  if case.scalar_only and kwargs.get("reduction") == "none":
    pytest.skip("a composition has no reduction='none'")
  return case.fn(*args, **{**case.kwargs, **kwargs})  # call-time options override the case's


def _value_and_grad(case: LossCase, args, **kwargs):
  rest = args[1:]
  return jax.value_and_grad(lambda x: _call(case, (x, *rest), **kwargs))(args[0])


def _expand(w: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
  return np.broadcast_to(w.reshape(w.shape + (1,) * (len(shape) - w.ndim)), shape)


@pytest.fixture(params=CASES, ids=str)
def case(request) -> LossCase:
  return request.param


@pytest.mark.parametrize("reduction", ("none",) + SCALAR_REDUCTIONS)
def test_jit_equals_eager(case, reduction):
  rng = _rng(case)
  args = case.make_inputs(rng, BATCH, np.float32)
  w, m = _weights_and_mask(BATCH, rng)
  eager = _call(case, args, weights=w, where=m, reduction=reduction)
  jitted = jax.jit(functools.partial(_call, case, reduction=reduction))(args, weights=w, where=m)
  np.testing.assert_allclose(jitted, eager, rtol=1e-5, atol=1e-6)


def test_vmap_equals_loop(case):
  rng = _rng(case)
  stacks = [case.make_inputs(rng, BATCH, np.float32) for _ in range(3)]
  weights = np.stack([_weights_and_mask(BATCH, rng)[0] for _ in range(3)])
  stacked = tuple(np.stack(parts) for parts in zip(*stacks, strict=True))
  batched = jax.vmap(lambda a, w: _call(case, a, weights=w, reduction="weighted_mean"))(
      stacked, weights)
  looped = [_call(case, a, weights=w, reduction="weighted_mean")
            for a, w in zip(stacks, weights, strict=True)]
  np.testing.assert_allclose(batched, np.stack(looped), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("reduction", ("none",) + SCALAR_REDUCTIONS)
def test_where_equals_slicing(case, reduction):
  rng = _rng(case)
  args = case.make_inputs(rng, BATCH, np.float32)
  w, m = _weights_and_mask(BATCH, rng)
  masked = _call(case, args, weights=w, where=m, reduction=reduction)
  sliced = _call(case, tuple(a[m] for a in args), weights=w[m], reduction=reduction)
  if reduction == "none":
    np.testing.assert_allclose(masked[m], sliced, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(masked[~m], 0.0)
  else:
    np.testing.assert_allclose(masked, sliced, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("case", CLASS_AXIS_CASES, ids=str)
def test_axis_equals_moveaxis(case):
  rng = _rng(case)
  args = case.make_inputs(rng, BATCH, np.float32)
  ax = case.class_axis
  moved = tuple(np.moveaxis(a, ax, 1) if a.ndim == args[0].ndim else a for a in args)
  np.testing.assert_allclose(_call(case, moved, axis=1), _call(case, args, axis=ax), rtol=1e-5)


def test_reductions_are_consistent(case):
  rng = _rng(case)
  args = case.make_inputs(rng, BATCH, np.float32)
  w, m = _weights_and_mask(BATCH, rng)
  per = np.asarray(_call(case, args, weights=w, where=m, reduction="none"), np.float64)
  we, me = _expand(w, per.shape), _expand(m, per.shape)
  if case.label_weights is not None:
    we = we * case.label_weights(args)
  expected = {
      "sum": per.sum(),
      "mean": per.sum() / me.sum(),
      "weighted_mean": per.sum() / (we * me).sum(),
      "sum_by_nonzero_weights": per.sum() / ((we * me) != 0).sum(),
  }
  for reduction, value in expected.items():
    got = _call(case, args, weights=w, where=m, reduction=reduction)
    np.testing.assert_allclose(got, value, rtol=2e-5, err_msg=reduction)
  unweighted = np.asarray(_call(case, args, reduction="none"))
  np.testing.assert_allclose(_call(case, args), unweighted.mean(), rtol=2e-5)


def _assert_finite(value, grad, what: str) -> None:
  assert np.all(np.isfinite(np.asarray(value, np.float32))), f"{what}: value {value}"
  assert np.all(np.isfinite(np.asarray(grad, np.float32))), f"{what}: gradient not finite"


@pytest.mark.parametrize("reduction", SCALAR_REDUCTIONS)
def test_finite_at_extreme_inputs(case, reduction):
  rng = _rng(case)
  args = case.extreme_inputs(rng, BATCH)
  w, _ = _weights_and_mask(BATCH, rng)
  value, grad = _value_and_grad(case, args, weights=w, reduction=reduction,
                                **case.extreme_kwargs)
  _assert_finite(value, grad, "extreme inputs")


def test_all_masked_is_zero_with_zero_gradient(case):
  rng = _rng(case)
  args = case.make_inputs(rng, BATCH, np.float32)
  w, _ = _weights_and_mask(BATCH, rng)
  for reduction in SCALAR_REDUCTIONS:
    value, grad = _value_and_grad(case, args, weights=w, where=np.zeros(BATCH, bool),
                                  reduction=reduction)
    assert float(value) == 0.0, reduction
    np.testing.assert_array_equal(grad, 0.0)


def test_nan_under_the_mask_is_harmless(case):
  # NaN inputs and NaN/inf weights of masked examples: zero gradient w.r.t. input 0 and
  # the weights there. test_contract_hostile adds inf, every float input and every
  # documented mask shape.
  rng = _rng(case)
  args = case.make_inputs(rng, BATCH, np.float32)
  w, m = _weights_and_mask(BATCH, rng)
  poisoned = tuple(a.copy() for a in args)
  for a in poisoned:
    if np.issubdtype(a.dtype, np.floating):
      a[~m] = np.nan
  poisoned_w = w.copy()
  poisoned_w[~m] = [np.nan, np.inf]

  def value_and_grads(args, w):
    rest = args[1:]
    f = lambda x, w: _call(case, (x, *rest), weights=w, where=m, reduction="weighted_mean")  # noqa: E731
    return jax.value_and_grad(f, argnums=(0, 1))(args[0], w)

  value, (grad, grad_w) = value_and_grads(poisoned, poisoned_w)
  clean_value, (clean_grad, clean_grad_w) = value_and_grads(args, w)
  np.testing.assert_allclose(value, clean_value, rtol=1e-6)
  np.testing.assert_array_equal(np.asarray(grad)[~m], 0.0)
  np.testing.assert_allclose(grad, clean_grad, rtol=1e-6, atol=1e-7)
  np.testing.assert_array_equal(np.asarray(grad_w)[~m], 0.0)
  np.testing.assert_allclose(grad_w, clean_grad_w, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("dtype", [jnp.bfloat16, jnp.float16], ids=["bf16", "f16"])
def test_low_precision_inputs_compute_in_f32(case, dtype):
  rng = _rng(case)
  args = case.make_inputs(rng, BATCH, np.float32)
  low = tuple(jnp.asarray(a, dtype) if np.issubdtype(a.dtype, np.floating) else a for a in args)
  value, grad = _value_and_grad(case, low, reduction="mean")
  assert value.dtype == jnp.float32
  assert grad.dtype == dtype
  _assert_finite(value, grad, str(dtype))
  reference = _call(case, tuple(np.asarray(a, np.float32) if a.dtype == dtype else a
                                for a in low), reduction="mean")
  np.testing.assert_allclose(value, reference, rtol=1e-5)


def test_float64_under_x64(case):
  with jax.enable_x64(True):
    rng = _rng(case)
    args = case.make_inputs(rng, BATCH, np.float64)
    value, grad = _value_and_grad(case, args, reduction="mean")
    assert value.dtype == jnp.float64 and grad.dtype == jnp.float64


def test_check_grads_float64(case):
  with jax.enable_x64(True):
    rng = _rng(case, salt=1)
    args = case.make_inputs(rng, 4, np.float64)
    w = rng.uniform(0.5, 2.0, size=4)
    m = np.array([True, False, True, True])
    rest = args[1:]
    # One reduction suffices: the others differ only by the (tested) reduction core.
    f = lambda x: _call(case, (x, *rest), weights=w, where=m, reduction="weighted_mean")  # noqa: E731
    modes = ("fwd", "rev") if case.forward_mode else ("rev",)
    # jit: check_grads calls f dozens of times; compiled once it is 2-3x faster than eager.
    check_grads(jax.jit(f), (args[0],), order=2, modes=modes, atol=1e-5, rtol=1e-5)


def test_export_lowers_for_cpu_cuda_tpu(case):
  rng = _rng(case)
  args = case.make_inputs(rng, BATCH, np.float32)
  w, m = _weights_and_mask(BATCH, rng)

  def value_and_grad(*a):
    return _value_and_grad(case, a, weights=w, where=m, reduction="weighted_mean")

  specs = [jax.ShapeDtypeStruct(a.shape, a.dtype) for a in args]
  exported = jax.export.export(jax.jit(value_and_grad), platforms=("cpu", "cuda", "tpu"))(*specs)
  assert exported.platforms == ("cpu", "cuda", "tpu")
  value, grad = exported.call(*args)
  ref_value, ref_grad = value_and_grad(*args)
  np.testing.assert_allclose(value, ref_value, rtol=1e-6)
  np.testing.assert_allclose(grad, ref_grad, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("reduction", SCALAR_REDUCTIONS)
def test_shard_map_with_axis_name_equals_unsharded(case, reduction):
  if not case.has_axis_name:
    pytest.skip("loss has no batch-level reduction")
  n = jax.device_count()
  assert n == 8, "conftest.py should give 8 virtual CPU devices"
  mesh = jax.make_mesh((n,), ("data",), axis_types=(jax.sharding.AxisType.Auto,))
  rng = _rng(case)
  args = case.make_inputs(rng, 2 * n, np.float32)
  w, m = _weights_and_mask(2 * n, rng)

  def local(x, rest, w, m):
    return _call(case, (x, *rest), weights=w, where=m, reduction=reduction, axis_name="data")

  sharded = jax.shard_map(local, mesh=mesh, in_specs=P("data"), out_specs=P())

  def total(x):
    return sharded(x, args[1:], w, m)

  value, grad = jax.jit(jax.value_and_grad(total))(args[0])
  ref_value, ref_grad = _value_and_grad(case, args, weights=w, where=m, reduction=reduction)
  np.testing.assert_allclose(value, ref_value, rtol=1e-5)
  np.testing.assert_allclose(grad, ref_grad, rtol=1e-5, atol=1e-7)


def test_static_errors_name_the_argument(case):
  rng = _rng(case)
  args = case.make_inputs(rng, BATCH, np.float32)
  with pytest.raises(ValueError, match="`weights` has shape"):
    _call(case, args, weights=np.ones(BATCH + 1, np.float32))
  with pytest.raises(TypeError, match="`where` must be a boolean mask"):
    _call(case, args, where=np.ones(BATCH, np.int32))
  with pytest.raises(ValueError, match="`reduction` must be one of"):
    _call(case, args, reduction="average")
  with pytest.raises(TypeError, match="must be a real floating array"):
    _call(case, (np.zeros(args[0].shape, np.int32), *args[1:]))


def test_jit_with_batch_sharded_inputs_equals_unsharded(case):
  # The batch split over 8 devices by a NamedSharding: XLA's SPMD partitioner inserts
  # the collectives, no axis_name needed.
  n = jax.device_count()
  mesh = jax.make_mesh((n,), ("data",), axis_types=(jax.sharding.AxisType.Auto,))
  rng = _rng(case)
  args = case.make_inputs(rng, 2 * n, np.float32)
  w, m = _weights_and_mask(2 * n, rng)
  batch = jax.sharding.NamedSharding(mesh, P("data"))
  sharded = [jax.device_put(a, batch) for a in (*args, w, m)]

  def f(x, *rest):
    *inputs, w, m = rest
    return _call(case, (x, *inputs), weights=w, where=m, reduction="weighted_mean")

  value, grad = jax.jit(jax.value_and_grad(f))(*sharded)
  ref_value, ref_grad = _value_and_grad(case, args, weights=w, where=m,
                                        reduction="weighted_mean")
  # Sharded sums run in another order: f32 rounding differs slightly (D = 256 sums).
  np.testing.assert_allclose(value, ref_value, rtol=1e-5)
  np.testing.assert_allclose(grad, ref_grad, rtol=1e-4, atol=1e-7)
  assert grad.sharding.is_equivalent_to(batch, grad.ndim)
