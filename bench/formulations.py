"""The formulations tried for the bench's speed targets, timed side by side.

``python -m bench.formulations [--quick] [--only PATTERNS]`` runs, through the
same harness as ``python -m bench`` (interleaved rounds, paired medians, XLA's
bytes accessed and kernel counts), one table per target workload with the
alternative formulations of its hot part next to jaxloss and the peers:

* ``emd_formulations``: NIMA's EMD (r = 2, ``[65536, 10]``) with the prefix sum
  of ``q - p`` written as ``jnp.cumsum`` of each histogram (the naive row), one
  ``jnp.cumsum`` of the difference, a matmul with a triangular ``[N, N]``
  constant, ``lax.associative_scan`` and an unrolled running sum;
* ``softmax_ce``, ``softmax_ce_bf16``, ``bce_dice``, ``ce_dice``, ``dice``,
  ``propel_i4``: the registered workloads (jaxloss, the naive composition, optax
  and torch where present).

Each row's ``bytes/min`` and ``kernels`` say how much memory traffic and how
many kernels XLA made of that formulation on this backend: the evidence where
a target is not met.
"""

from __future__ import annotations

import argparse
import dataclasses
import fnmatch
import sys
from collections.abc import Sequence

import jax
import jax.numpy as jnp
from jax import lax

from bench import harness, report, workloads_distribution
from bench.__main__ import load_torch

_REGISTERED = ("softmax_ce", "softmax_ce_bf16", "bce_dice", "ce_dice", "dice", "propel_i4")


def _by_name() -> dict[str, harness.Workload]:
  return {w.name: w for w in harness.all_workloads()}


def _emd_from_prefix(prefix):
  def loss(p, q):
    d = prefix(q - p)
    return jnp.mean(jnp.sqrt(jnp.mean(jnp.square(d), axis=-1)))
  return loss


def _triangular(d):
  n = d.shape[-1]
  # tri[j, k] = 1 for j <= k: column k of d @ tri sums bins 0..k.
  tri = (lax.broadcasted_iota(jnp.int32, (n, n), 0)
         <= lax.broadcasted_iota(jnp.int32, (n, n), 1)).astype(d.dtype)
  return jnp.matmul(d, tri, precision=lax.Precision.HIGHEST)


def _unrolled(d):
  cols, run = [], None
  for k in range(d.shape[-1]):
    run = d[:, k] if run is None else run + d[:, k]
    cols.append(run)
  return jnp.stack(cols, axis=-1)


def emd_formulations() -> harness.Workload:
  base = _by_name()["emd"]
  impls = dict(base.impls)
  impls.update({
      "cumsum_of_difference": _emd_from_prefix(lambda d: jnp.cumsum(d, axis=-1)),
      "triangular_matmul": _emd_from_prefix(_triangular),
      "associative_scan": _emd_from_prefix(
          lambda d: lax.associative_scan(jnp.add, d, axis=-1)),
      "unrolled_running_sum": _emd_from_prefix(_unrolled),
  })
  return dataclasses.replace(base, name="emd_formulations", impls=impls,
                             description=base.description + "; prefix-sum formulations",
                             torch_factory=workloads_distribution._torch)


def workloads() -> list[harness.Workload]:
  by_name = _by_name()
  return [emd_formulations(), *(by_name[n] for n in _REGISTERED)]


def main(argv: Sequence[str] | None = None) -> int:
  parser = argparse.ArgumentParser(prog="python -m bench.formulations", description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--quick", action="store_true", help="small sizes, short blocks")
  parser.add_argument("--only", default=None, help="comma-separated fnmatch patterns")
  parser.add_argument("--rounds", type=int, default=None)
  parser.add_argument("--no-torch", action="store_true")
  args = parser.parse_args(argv)
  rounds = args.rounds or (15 if args.quick else 25)
  block_s = (10 if args.quick else 20) / 1e3
  chosen = workloads()
  if args.only:
    pats = [p.strip() for p in args.only.split(",") if p.strip()]
    chosen = [w for w in chosen if any(fnmatch.fnmatch(w.name, p) or p in w.name for p in pats)]
  torch, torch_note = load_torch(args.no_torch)
  print(f"bench.formulations ({'quick' if args.quick else 'full'}), {rounds} rounds; "
        f"{jax.devices()[0]}; {torch_note}", flush=True)
  results = []
  for w in chosen:
    r = harness.run_workload(w, quick=args.quick, rounds=rounds, block_s=block_s, seed=0,
                             torch=torch)
    print("\n" + report.format_text(r), flush=True)
    results.append(r)
  print("\n" + report.format_summary_text(results), flush=True)
  return 0


if __name__ == "__main__":
  sys.exit(main())
