"""Every public loss and metric under JAX's own SPMD machinery, on 8 virtual CPU devices.

Inputs come from the catalogue of ``python -m jaxloss.export_check``
(:data:`jaxloss.export_check.EXAMPLES`), which covers every public array function:

* jit over inputs whose batch axis is split by a ``NamedSharding`` on a 1-D mesh gives
  the unsharded value and gradient (XLA's partitioner inserts the collectives);
* inside ``shard_map`` with ``axis_name="data"``, the batch-level results (weighted
  means, batch Dice, class counts, confusion matrices, ...) equal the unsharded ones,
  and so do their gradients.

The contract (``tests/test_contract.py``) repeats both checks for every loss with
weights, masks and each reduction.
"""

from __future__ import annotations

import jax
import numpy as np
import pytest
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

import jaxloss
from jaxloss import export_check

BATCH = 16
EXAMPLES = {e.name: e for e in export_check.EXAMPLES}
SHARD_MAP = sorted(n for n, e in EXAMPLES.items() if e.axis_name)


@pytest.fixture(scope="module")
def mesh():
  assert jax.device_count() == 8, "conftest.py should give 8 virtual CPU devices"
  return jax.make_mesh((8,), ("data",), axis_types=(jax.sharding.AxisType.Auto,))


def _assert_trees_close(got, want, rtol=1e-5, atol=1e-6):
  got_leaves, want_leaves = jax.tree.leaves(got), jax.tree.leaves(want)
  assert len(got_leaves) == len(want_leaves)
  for g, w in zip(got_leaves, want_leaves, strict=True):
    np.testing.assert_allclose(np.asarray(g), np.asarray(w), rtol=rtol, atol=atol)


def test_catalogue_covers_every_public_function():
  public = set(jaxloss.__all__)
  assert set(EXAMPLES) == public - export_check.NOT_ARRAY_FUNCTIONS
  assert export_check.NOT_ARRAY_FUNCTIONS <= public


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_jit_with_named_sharding_equals_unsharded(name, mesh):
  example = EXAMPLES[name]
  args, kwargs = export_check.inputs(example, BATCH)
  batch, replicated = NamedSharding(mesh, P("data")), NamedSharding(mesh, P())
  placed = tuple(jax.device_put(a, batch if i < example.batched else replicated)
                 for i, a in enumerate(args))
  placed_kwargs = {k: jax.device_put(v, batch) if k in example.batched_kwargs else v
                   for k, v in kwargs.items()}
  if example.batched:
    leaf = jax.tree.leaves(placed[0])[0]
    assert leaf.sharding.is_equivalent_to(batch, leaf.ndim)
  unsharded = export_check.exported_function(example, kwargs)
  sharded = export_check.exported_function(example, placed_kwargs)
  _assert_trees_close(jax.jit(sharded)(*placed), jax.jit(unsharded)(*args), rtol=2e-5)


@pytest.mark.parametrize("name", SHARD_MAP)
def test_shard_map_with_axis_name_equals_unsharded(name, mesh):
  example = EXAMPLES[name]
  fn = example.fn
  args, kwargs = export_check.inputs(example, BATCH)
  batched, replicated = args[:example.batched], args[example.batched:]
  batched_kwargs = {k: kwargs[k] for k in example.batched_kwargs}
  static_kwargs = {k: v for k, v in kwargs.items() if k not in example.batched_kwargs}

  def local(batched, batched_kwargs):
    return fn(*batched, *replicated, **static_kwargs, **batched_kwargs, axis_name="data")

  sharded = jax.shard_map(local, mesh=mesh, in_specs=(P("data"), P("data")), out_specs=P())
  value = jax.jit(sharded)(batched, batched_kwargs)
  _assert_trees_close(value, fn(*args, **kwargs))
  if example.differentiable:
    def objective(first, f):
      return export_check._float_sum(f((first, *batched[1:]), batched_kwargs))

    grad = jax.jit(jax.grad(objective), static_argnums=1)(batched[0], sharded)
    want = jax.grad(objective)(batched[0], lambda b, k: fn(*b, *replicated, **kwargs))
    _assert_trees_close(grad, want)


def test_lovasz_batch_loss_refuses_axis_name():
  x = np.zeros((2, 4, 4, 3), np.float32)
  y = np.zeros((2, 4, 4), np.int32)
  with pytest.raises(ValueError, match="`axis_name`='data' needs `per_image=True`"):
    jaxloss.lovasz_softmax_loss(x, y, per_image=False, axis_name="data")
  with pytest.raises(ValueError, match="needs `per_image=True`"):
    jaxloss.lovasz_hinge_loss(x[..., 0], y.astype(np.float32), per_image=False, axis_name="d")


def test_export_check_cli_lowers_and_runs_every_function(capsys):
  # Every public function (losses as value_and_grad) for cpu, cuda and tpu, CPU branch run.
  code = export_check.main([])
  out = capsys.readouterr().out
  assert code == 0, out
  assert f"{len(EXAMPLES)} functions, 0 failures, platforms cpu, cuda, tpu" in out
  assert "propel_loss" in out and "value and grad" in out


def test_export_check_cli_names_unknown_functions():
  with pytest.raises(SystemExit):
    export_check.main(["--only", "no_such_loss"])


BATCH_LEVEL_OVERLAPS = {
    "dice_loss": {"activation": "softmax"},
    "tversky_loss": {"activation": "softmax", "alpha": 0.3, "beta": 0.7, "gamma": 1.5},
    "generalized_dice_loss": {"activation": "softmax"},
    "softmax_ce_dice_loss": {"class_weights": np.array([0.5, 1.0, 4.0], np.float32)},
}


@pytest.mark.parametrize("name", sorted(BATCH_LEVEL_OVERLAPS))
@pytest.mark.parametrize("reduction", ["mean", "none"])
def test_batch_dice_inside_shard_map_equals_unsharded(name, reduction, mesh):
  # One Dice per class over the whole batch: the per-class sums are psum-ed before the
  # ratio, so eight shards give the one-device value (a mean of shard Dices would not).
  if name == "softmax_ce_dice_loss" and reduction == "none":
    pytest.skip("a composition has no reduction='none'")
  rng = np.random.default_rng(5)
  x = rng.normal(size=(BATCH, 4, 4, 3)).astype(np.float32)
  y = rng.integers(0, 3, size=(BATCH, 4, 4)).astype(np.int32)
  y[:8] = 0  # classes 1 and 2 are absent from half the shards
  fn = getattr(jaxloss, name)
  kwargs = dict(BATCH_LEVEL_OVERLAPS[name], reduce_axes=(0, 1, 2), reduction=reduction)

  def local(x, y):
    return fn(x, y, **kwargs, axis_name="data")

  sharded = jax.jit(jax.shard_map(local, mesh=mesh, in_specs=P("data"), out_specs=P()))
  _assert_trees_close(sharded(x, y), fn(x, y, **kwargs))
  grad = jax.jit(jax.grad(lambda x: sharded(x, y).sum()))(x)
  _assert_trees_close(grad, jax.grad(lambda x: fn(x, y, **kwargs).sum())(x))
