"""Which public functions lower on which platforms: ``python -m jaxloss.export_check``.

For every public array function of jaxloss, this exports with ``jax.export`` the
function on small example inputs (for losses, its ``value_and_grad`` with respect
to the first argument) for CPU, CUDA and TPU at once; if that fails, each platform
alone, to say which one fails. Then it runs the CPU branch of the export and
compares it with a plain ``jax.jit`` call. No accelerator is needed: lowering for
CUDA or TPU works on any machine. Usage and output::

    $ python -m jaxloss.export_check
    function                      exports         cpu  cuda  tpu  cpu run
    ----------------------------  --------------  ---  ----  ---  -------
    accuracy                      value           ok   ok    ok   ok
    class_breakdown               value and grad  ok   ok    ok   ok
    ...
    39 functions, 0 failures, platforms cpu, cuda, tpu

The catalogue ``EXAMPLES`` is also what ``tests/test_sharding.py`` shards: it names
which arguments carry the batch and which functions take an ``axis_name``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import traceback
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

import jaxloss

PLATFORMS = ("cpu", "cuda", "tpu")
# Public names that are not array functions: nothing to export.
NOT_ARRAY_FUNCTIONS = frozenset({"REDUCTIONS", "checked", "value_checks", "ClassCounts"})


@dataclasses.dataclass(frozen=True)
class Example:
  """One public function with small example inputs.

  Attributes:
    name: the public name in :mod:`jaxloss`.
    build: ``batch -> (args, kwargs)``; arrays whose leading axis is the batch are
      the first ``batched`` positional arguments and the kwargs named in
      ``batched_kwargs``; other arrays are replicated.
    batched: how many leading positional arguments carry the batch axis.
    batched_kwargs: keyword arguments that carry the batch axis.
    differentiable: export ``value_and_grad`` of the float outputs' sum with respect
      to the first argument, not just the value.
    axis_name: takes ``axis_name`` and returns batch-level results (psum'd).
  """

  name: str
  build: Callable[[int], tuple[tuple[Any, ...], dict[str, Any]]]
  batched: int = 1
  batched_kwargs: tuple[str, ...] = ()
  differentiable: bool = True
  axis_name: bool = True

  @property
  def fn(self) -> Callable[..., Any]:
    return getattr(jaxloss, self.name)


def _rng(name: str) -> np.random.Generator:
  return np.random.default_rng(sum(map(ord, name)))


def _normal(rng, *shape):
  return jnp.asarray(rng.normal(size=shape).astype(np.float32))


def _ints(rng, high, *shape):
  return jnp.asarray(rng.integers(0, high, size=shape).astype(np.int32))


def _binary(rng, *shape):
  return jnp.asarray((rng.uniform(size=shape) < 0.4).astype(np.float32))


def _simplex(rng, *shape):
  p = rng.uniform(0.1, 1.0, size=shape)
  return jnp.asarray((p / p.sum(-1, keepdims=True)).astype(np.float32))


def _pair(make_a, make_b, **kwargs):
  def build(b, name):
    rng = _rng(name)
    return (make_a(rng, b), make_b(rng, b)), dict(kwargs)
  return build


_C = 3  # classes in the segmentation examples
_regression = _pair(lambda r, b: _normal(r, b, 3), lambda r, b: _normal(r, b, 3))
_segmentation = _pair(lambda r, b: _normal(r, b, 4, 4, _C), lambda r, b: _ints(r, _C, b, 4, 4))
_segmentation_soft = _pair(lambda r, b: _normal(r, b, 4, 4, _C), lambda r, b: _ints(r, _C, b, 4, 4),
                           activation="softmax")
_multilabel = _pair(lambda r, b: _normal(r, b, 4, 4, _C), lambda r, b: _binary(r, b, 4, 4, _C))
_classes = _pair(lambda r, b: _normal(r, b, 5), lambda r, b: _ints(r, 5, b))
_two_logits = _pair(lambda r, b: _normal(r, b, 5), lambda r, b: _normal(r, b, 5))
_counts = jaxloss.ClassCounts(jnp.array([50.0, 30.0, 2.0]), jnp.array([64.0, 64.0, 16.0]))
_confusion = jnp.array([[30, 2, 1], [3, 20, 0], [1, 0, 2]], jnp.int32)


def _single(make, **kwargs):
  def build(b, name):
    return (make(_rng(name), b),), dict(kwargs)
  return build


def _fixed(*args, **kwargs):
  return lambda b, name: (args, dict(kwargs))


def _multi_head(b, name):
  rng = _rng(name)
  losses = {"score": jnp.abs(_normal(rng, b)), "class": jnp.abs(_normal(rng, b))}
  wheres = {"score": jnp.asarray(np.arange(b) % 2 == 0), "class": jnp.ones((b,), bool)}
  return (losses,), {"wheres": wheres}


def _linear_ce(b, name):
  rng = _rng(name)
  return ((_normal(rng, b, 8), 0.5 * _normal(rng, 8, 40)),
          {"labels": _ints(rng, 40, b), "chunk_size": 16, "z_loss": 1e-3})


def _propel(b, name):
  rng = _rng(name)
  return (_normal(rng, b, 4, 6), _normal(rng, b, 3)), {"sigma": 0.5}


def _overlap4(b, name):
  rng = _rng(name)
  m = _normal(rng, b, 3)
  return (m, jnp.exp(_normal(rng, b, 3)), m + 0.5, jnp.exp(_normal(rng, b, 3))), {}


def _mixture(b, name):
  rng = _rng(name)
  return (_normal(rng, b, 4, 3), jnp.exp(_normal(rng, b, 4, 3)), _normal(rng, b, 4)), {}


def _class_breakdown(b, name):
  rng = _rng(name)
  return (jnp.abs(_normal(rng, b, 4, 4)), _ints(rng, _C, b, 4, 4)), {"num_classes": _C}


def _confusion_matrix(b, name):
  rng = _rng(name)
  return (_ints(rng, _C, b, 4, 4), _ints(rng, _C, b, 4, 4)), {"num_classes": _C}


def _labels_with_ignored(b, name):
  y = _ints(_rng(name), 4, b)
  return (jnp.where(y == 0, -1, y),), {"ignore_index": -1}


def _surface(**kwargs):
  return _pair(lambda r, b: _ints(r, _C, b, 8, 8), lambda r, b: _ints(r, _C, b, 8, 8),
               num_classes=_C, **kwargs)


E = Example
EXAMPLES: tuple[Example, ...] = (
    # Regression
    E("mean_squared_error", _regression, batched=2),
    E("mean_absolute_error", _regression, batched=2),
    E("huber_loss", _regression, batched=2),
    # Classification
    E("softmax_cross_entropy", _pair(lambda r, b: _normal(r, b, 4, 4, _C),
                                     lambda r, b: _ints(r, _C, b, 4, 4),
                                     class_weights=jnp.array([0.5, 1.0, 4.0])), batched=2),
    E("sigmoid_binary_cross_entropy", _multilabel, batched=2),
    E("softmax_focal_loss", _classes, batched=2),
    E("sigmoid_focal_loss", _multilabel, batched=2),
    E("class_breakdown", _class_breakdown, batched=2),
    # Segmentation overlaps, per image and per batch (``reduce_axes`` includes the batch)
    E("dice_loss", _segmentation_soft, batched=2),
    E("jaccard_loss", _pair(lambda r, b: _normal(r, b, 4, 4, _C),
                            lambda r, b: _ints(r, _C, b, 4, 4),
                            activation="softmax", reduce_axes=(0, 1, 2)), batched=2),
    E("tversky_loss", _segmentation_soft, batched=2),
    E("generalized_dice_loss", _pair(lambda r, b: _normal(r, b, 4, 4, _C),
                                     lambda r, b: _ints(r, _C, b, 4, 4),
                                     activation="softmax", reduce_axes=(0, 1, 2)), batched=2),
    E("lovasz_softmax_loss", _pair(lambda r, b: _normal(r, b, 4, 4, _C),
                                   lambda r, b: _ints(r, _C, b, 4, 4),
                                   activation="softmax", per_image=True), batched=2),
    E("lovasz_hinge_loss", _pair(lambda r, b: _normal(r, b, 4, 4),
                                 lambda r, b: _binary(r, b, 4, 4)), batched=2),
    E("sigmoid_bce_dice_loss", _pair(lambda r, b: _normal(r, b, 4, 4, _C),
                                     lambda r, b: _binary(r, b, 4, 4, _C),
                                     reduce_axes=(0, 1, 2)), batched=2),
    E("softmax_ce_dice_loss", _segmentation, batched=2),
    # Metrics and class statistics
    E("accuracy", _classes, batched=2, differentiable=False),
    E("confusion_matrix", _confusion_matrix, batched=2, differentiable=False),
    E("multilabel_confusion_matrix", _pair(lambda r, b: _normal(r, b, 4, 4, _C),
                                           lambda r, b: _binary(r, b, 4, 4, _C), threshold=0.0),
      batched=2, differentiable=False),
    E("iou_per_class", _fixed(_confusion), batched=0, differentiable=False, axis_name=False),
    E("dice_per_class", _fixed(_confusion), batched=0, differentiable=False, axis_name=False),
    E("mean_iou", _fixed(_confusion), batched=0, differentiable=False, axis_name=False),
    E("class_pixel_counts", _single(lambda r, b: _ints(r, _C, b, 4, 4), num_classes=_C),
      differentiable=False),
    E("median_frequency_weights", _fixed(_counts), batched=0, differentiable=False,
      axis_name=False),
    E("inverse_frequency_weights", _fixed(_counts), batched=0, differentiable=False,
      axis_name=False),
    E("effective_number_weights", _fixed(_counts), batched=0, differentiable=False,
      axis_name=False),
    # NIMA
    E("earth_mover_distance", _pair(lambda r, b: _normal(r, b, 10), lambda r, b: _simplex(r, b, 10),
                                    activation="softmax"), batched=2),
    E("score_mean_std", _single(lambda r, b: _simplex(r, b, 10)), axis_name=False),
    E("scores_to_distribution", _single(lambda r, b: jnp.asarray(
        r.uniform(1, 10, size=b).astype(np.float32))), axis_name=False),
    E("counts_to_distribution", _single(lambda r, b: jnp.asarray(
        r.integers(0, 5, size=(b, 10)).astype(np.float32))), differentiable=False,
      axis_name=False),
    # PROPEL
    E("propel_loss", _propel, batched=2),
    E("linear_softmax_cross_entropy", _linear_ce, batched=1, batched_kwargs=("labels",)),
    E("split_mixture_outputs", _single(lambda r, b: _normal(r, b, 4, 6)), axis_name=False),
    E("mixture_mean_and_variance", _mixture, batched=3, axis_name=False),
    E("gaussian_overlap", _overlap4, batched=4, axis_name=False),
    # Reductions, missing labels and semi-supervised
    E("reduce_loss", _single(lambda r, b: _normal(r, b, 3))),
    E("labeled_mask", _labels_with_ignored, differentiable=False, axis_name=False),
    E("multi_head_loss", _multi_head, batched_kwargs=("wheres",)),
    E("pseudo_label_cross_entropy", _pair(lambda r, b: _normal(r, b, 5),
                                          lambda r, b: 3 * _normal(r, b, 5), threshold=0.6),
      batched=2),
    E("entropy_minimization_loss", _single(lambda r, b: _normal(r, b, 5))),
    E("consistency_loss", _two_logits, batched=2),
    # Shape: distances, boundaries, connectivity
    E("distance_transform", _single(lambda r, b: jnp.asarray(r.uniform(size=(b, 6, 5)) < 0.7)),
      differentiable=False, axis_name=False),
    E("signed_distance", _single(lambda r, b: _ints(r, _C, b, 6, 5), num_classes=_C),
      differentiable=False, axis_name=False),
    E("hausdorff_distance", _surface(), batched=2, differentiable=False, axis_name=False),
    E("average_surface_distance", _surface(symmetric=True), batched=2, differentiable=False,
      axis_name=False),
    E("surface_dice", _surface(tolerance=1.0), batched=2, differentiable=False,
      axis_name=False),
    E("boundary_loss", _segmentation_soft, batched=2),
    E("hausdorff_dt_loss", _pair(lambda r, b: _normal(r, b, 4, 4, _C),
                                 lambda r, b: _ints(r, _C, b, 4, 4),
                                 activation="softmax", reduce_axes=(0, 1, 2)), batched=2),
    E("soft_skeleton", _single(lambda r, b: _normal(r, b, 4, 4, _C)), axis_name=False),
    E("cl_dice_loss", _pair(lambda r, b: _normal(r, b, 4, 4, _C),
                            lambda r, b: _ints(r, _C, b, 4, 4),
                            activation="softmax", reduce_axes=(0, 1, 2)), batched=2),
    E("dice_cl_dice_loss", _segmentation_soft, batched=2),
)


def public_array_functions() -> list[str]:
  """Every public name of :mod:`jaxloss` that takes and returns arrays."""
  return sorted(n for n in jaxloss.__all__ if n not in NOT_ARRAY_FUNCTIONS)


def inputs(example: Example, batch: int = 8) -> tuple[tuple[Any, ...], dict[str, Any]]:
  """The example's ``(args, kwargs)`` at this batch size (deterministic)."""
  return example.build(batch, example.name)


def _float_sum(tree) -> jax.Array:
  leaves = [jnp.sum(x.astype(jnp.float32)) for x in jax.tree.leaves(tree)
            if jnp.issubdtype(x.dtype, jnp.floating)]
  return sum(leaves[1:], leaves[0])


def exported_function(example: Example, kwargs: dict[str, Any]) -> Callable[..., Any]:
  """The function that is exported: the value, or ``value_and_grad`` of its float sum."""
  fn = example.fn

  def value(*args):
    return fn(*args, **kwargs)

  if not example.differentiable:
    return value

  def value_and_grad(first, *rest):
    def objective(x):
      out = fn(x, *rest, **kwargs)
      return _float_sum(out), out

    (_, out), grad = jax.value_and_grad(objective, has_aux=True)(first)
    return out, grad

  return value_and_grad


def _specs(args):
  return jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype), args)


def _failure(err: Exception) -> str:
  return f"FAIL: {type(err).__name__}: {err}".splitlines()[0][:200]


def check(example: Example, platforms: Sequence[str] = PLATFORMS, run: bool = True) -> dict:
  """Exports one example for all platforms (and runs the CPU branch); ``{column: status}``.

  One multi-platform export is tried first; only if it fails is each platform
  exported alone, to say which one fails.
  """
  args, kwargs = inputs(example)
  f = jax.jit(exported_function(example, kwargs))
  status: dict[str, str] = {}
  try:
    exported = jax.export.export(f, platforms=tuple(platforms))(*_specs(args))
    status.update({p: "ok" for p in platforms})
  except Exception:  # noqa: BLE001 (the report names every failure)
    exported = None
    for platform in platforms:
      try:
        jax.export.export(f, platforms=(platform,))(*_specs(args))
        status[platform] = "ok"
      except Exception as err:  # noqa: BLE001
        status[platform] = _failure(err)
  if run:
    try:
      if exported is None:
        exported = jax.export.export(f, platforms=("cpu",))(*_specs(args))
      got, want = exported.call(*args), f(*args)
      for g, w in zip(jax.tree.leaves(got), jax.tree.leaves(want), strict=True):
        np.testing.assert_allclose(np.asarray(g), np.asarray(w), rtol=1e-5, atol=1e-6)
      status["cpu run"] = "ok"
    except Exception as err:  # noqa: BLE001
      status["cpu run"] = _failure(err)
  return status


def main(argv: Sequence[str] | None = None) -> int:
  """Command line: prints the table; exit status 1 if anything failed to lower or run."""
  parser = argparse.ArgumentParser(prog="python -m jaxloss.export_check", description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--platforms", default=",".join(PLATFORMS),
                      help="comma-separated platforms to lower for (default: cpu,cuda,tpu)")
  parser.add_argument("--no-run", action="store_true",
                      help="only lower; do not call the CPU branch of the export")
  parser.add_argument("--only", default="", help="comma-separated function names")
  parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
  args = parser.parse_args(argv)
  platforms = tuple(p for p in args.platforms.split(",") if p)
  if not args.no_run and "cpu" not in platforms:
    platforms = ("cpu", *platforms)
  names = {n for n in args.only.split(",") if n}
  examples = [e for e in EXAMPLES if not names or e.name in names]
  if names - {e.name for e in examples}:
    parser.error(f"unknown functions: {sorted(names - {e.name for e in examples})}")
  missing = sorted(set(public_array_functions()) - {e.name for e in EXAMPLES})
  try:
    report = {e.name: check(e, platforms, run=not args.no_run) for e in examples}
  except Exception:  # pragma: no cover - a bug in the checker itself
    traceback.print_exc()
    return 2
  for name in missing:
    report[name] = {p: "no example input" for p in platforms}
  columns = list(platforms) + ([] if args.no_run else ["cpu run"])
  if args.json:
    print(json.dumps(report, indent=2, sort_keys=True))
  else:
    width = max(len("function"), *map(len, report))
    kinds = {e.name: "value and grad" if e.differentiable else "value" for e in EXAMPLES}
    print("  ".join(["function".ljust(width), "exports".ljust(14), *columns]))
    print("  ".join(["-" * width, "-" * 14, *("-" * len(c) for c in columns)]))
    failures = []
    for name in sorted(report):
      cells = [report[name].get(c, "-") for c in columns]
      failures += [f"{name} [{c}]: {v}" for c, v in zip(columns, cells, strict=True) if v != "ok"]
      row = [name.ljust(width), kinds.get(name, "?").ljust(14),
             *(("ok" if v == "ok" else "FAIL").ljust(len(c)) for c, v in zip(columns, cells,
                                                                                strict=True))]
      print("  ".join(row).rstrip())
    for line in failures:
      print(line)
    print(f"{len(report)} functions, {len(failures)} failures, platforms {', '.join(platforms)}")
  ok = all(v == "ok" for row in report.values() for v in row.values())
  return 0 if ok else 1


if __name__ == "__main__":
  sys.exit(main())
