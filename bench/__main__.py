"""Benchmarks jaxloss against its peers: ``python -m bench [flags]``.

Every registered workload (a loss at one size, from ``bench/workloads_*.py``)
runs on JAX's default backend. For each, the value *and gradient* of every
implementation is timed: ``jaxloss``, the naive JAX composition a user would
write (``naive_jax``), the optax equivalent when one exists (``optax``) and,
when torch is importable, ``torch_eager`` and ``torch_compile`` (backward via
``torch.autograd.grad``). Two yardsticks are timed alongside them:

* ``roofline``: one jitted kernel that reads every input once and writes one
  gradient-sized array (bit-level XOR), the streaming lower bound;
* ``np.copyto``: a host copy of input 0, a very stable second yardstick on CPU
  (a fresh 25 MB output can make the roofline jump between runs).

Before timing, all implementations must agree with jaxloss in value and
gradient (``rtol`` 1e-4 by default); otherwise the run stops with
``MismatchError``.

Timing (tuned for a noisy shared CPU): all contenders of a workload run in
one process, interleaved in a new seeded random order each round, after a
warm-up (compile + 3 calls). Each contender gets a calibrated call count
whose back-to-back block lasts about ``--block-ms``; every block is preceded
by one untimed call (an idle thread pool takes milliseconds to wake) and each
call ends in ``block_until_ready``. A round gives one sample per contender:
block time / calls. Reported: median and inter-quartile range over rounds.

Flags:
  --quick          small sizes and short blocks; the whole run takes well under 60 s
  --only PATTERNS  comma-separated substrings or fnmatch patterns of workload names
  --rounds N       timing rounds (default 15 with --quick, 25 otherwise; use >= 15)
  --block-ms MS    target length of one timed block (default 10 with --quick, 20)
  --seed N         seed of the inputs and of the interleaving order (default 0)
  --json PATH      write every number, including the per-round samples, as JSON
  --markdown PATH  write the tables as Markdown
  --plot PATH      write a PNG: each implementation's × roofline, and best peer ÷ jaxloss
  --compare OLD    after the run, print the changes against an earlier --json file
  --no-torch       skip torch even if it is importable
  --no-progress    no progress bar (it goes to stderr)
  --list           list the workloads and exit

Each table has one row per contender; its columns are explained by the key
(``bench.report.COLUMN_KEY``) that ``--help``, the top of the text report and
the Markdown report print. Pairing by round (× roofline, × copyto, peer ÷
jaxloss) cancels the slow drifts of a shared machine. Below each table,
``best peer ÷ jaxloss`` is the paired ratio (median and IQR over rounds) of
the peer with the lowest median among naive_jax, optax and torch to jaxloss
(above 1 means jaxloss is faster). A closing summary table repeats, per
workload, jaxloss's time, its best peer, that ratio, × roofline and temp MiB.

On a GPU or TPU two more columns give the achieved bandwidth (minimal bytes
÷ median time, GB/s) and its fraction of the device's peak memory bandwidth,
from the spec-sheet table in ``bench/accelerators.py`` keyed on
``jax.devices()[0].device_kind`` ("unknown device" when it is not there).

Pitfalls on a shared few-core VM:

* Page faults of fresh large allocations are part of what is timed (glibc
  can hand big blocks back to the OS after each call); they weigh on
  contenders with big temporaries and depend on the allocator's state
  (``MALLOC_MMAP_THRESHOLD_`` / ``MALLOC_TRIM_THRESHOLD_`` change them).
* torch's 2-thread OpenMP pool can cost 25-50 ms per call on this VM, in some
  processes and not others; ``OMP_NUM_THREADS=1`` gives sane torch rows.
* Anything else running (a test suite) shifts every number; the paired
  ratios (× roofline, × copyto, ÷ best peer) are more robust than the times.

Such variables (``MALLOC_*``, ``GLIBC_TUNABLES``, ``OMP_*``, ``GOMP_*``,
``KMP_*``, ``XLA_*``, ``JAX_*``) are printed in the header and kept in the JSON.

From Python: ``bench.__main__.main(["--quick", "--only", "mse"])`` returns 0.
"""

from __future__ import annotations

import argparse
import datetime
import fnmatch
import importlib
import importlib.metadata
import importlib.util
import os
import sys
import time
from collections.abc import Sequence
from types import ModuleType
from typing import Any

import jax
from tqdm import tqdm

from bench import accelerators, chart, compare, harness, report


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
  """The command line (see the module docstring)."""
  parser = argparse.ArgumentParser(
      prog="python -m bench", description="Benchmark jaxloss value+gradient against its peers.",
      epilog="\n".join(["columns of the report:", *report.column_key_lines(accelerator=True)]),
      formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--quick", action="store_true", help="small sizes, short blocks")
  parser.add_argument("--only", metavar="PATTERNS",
                      help="comma-separated substrings or fnmatch patterns of workload names")
  parser.add_argument("--rounds", type=int, help="timing rounds (default 15 quick, 25 full)")
  parser.add_argument("--block-ms", type=float, help="timed block length (default 10 quick, 20)")
  parser.add_argument("--seed", type=int, default=0, help="seed of inputs and order")
  parser.add_argument("--json", metavar="PATH", help="write the results as JSON")
  parser.add_argument("--markdown", metavar="PATH", help="write the tables as Markdown")
  parser.add_argument("--plot", metavar="PATH",
                      help="write a PNG of × roofline and peer ÷ jaxloss per workload")
  parser.add_argument("--no-torch", action="store_true", help="skip torch even if importable")
  parser.add_argument("--no-progress", action="store_true", help="no progress bar")
  parser.add_argument("--list", action="store_true", help="list the workloads and exit")
  parser.add_argument("--compare", metavar="OLD",
                      help="print per-workload changes against an earlier --json file")
  args = parser.parse_args(argv)
  args.compare_data = None
  if args.compare:
    try:
      args.compare_data = compare.load(args.compare)
    except (OSError, ValueError) as e:
      parser.error(f"--compare: {e}")
  if args.rounds is None:
    args.rounds = 15 if args.quick else 25
  if args.block_ms is None:
    args.block_ms = 10.0 if args.quick else 20.0
  if args.rounds < 1 or args.block_ms <= 0:
    parser.error("--rounds and --block-ms must be positive")
  return args


def select(workloads: Sequence[harness.Workload], only: str | None) -> list[harness.Workload]:
  """The workloads whose name contains or fnmatches one of the comma-separated patterns."""
  if not only:
    return list(workloads)
  patterns = [p.strip() for p in only.split(",") if p.strip()]
  return [w for w in workloads
          if any(p in w.name or fnmatch.fnmatchcase(w.name, p) for p in patterns)]


def load_torch(skip: bool) -> tuple[ModuleType | None, str]:
  """``(torch or None, one-line note)``; absence of torch is not an error."""
  if skip:
    return None, "torch: skipped (--no-torch)"
  if importlib.util.find_spec("torch") is None:
    return None, "torch: not installed (torch_eager / torch_compile rows skipped)"
  try:
    torch = importlib.import_module("torch")
  except Exception as e:  # broad on purpose: a broken torch must not stop the bench
    return None, f"torch: import failed ({type(e).__name__}: {e}); torch rows skipped"
  return torch, f"torch: {torch.__version__} ({torch.get_num_threads()} threads)"


def _version(dist: str) -> str:
  try:
    return importlib.metadata.version(dist)
  except importlib.metadata.PackageNotFoundError:
    return "?"


def environment(torch_note: str) -> tuple[list[str], dict[str, Any]]:
  """Header lines naming the device and versions, and the same as a dict."""
  device = jax.devices()[0]
  meta = {
      "device": str(device), "platform": device.platform, "device_kind": device.device_kind,
      "device_count": jax.device_count(), "backend": jax.default_backend(),
      "jax": jax.__version__, "jaxlib": _version("jaxlib"), "optax": _version("optax"),
      "numpy": _version("numpy"), "jaxloss": _version("jaxloss"), "cpu_count": os.cpu_count(),
      "torch": torch_note, "python": sys.version.split()[0],
  }
  prefixes = ("MALLOC_", "GLIBC_TUNABLES", "OMP_", "GOMP_", "KMP_", "XLA_", "JAX_")
  tuning = {k: v for k, v in sorted(os.environ.items()) if k.startswith(prefixes)}
  meta["env"] = tuning
  lines = [
      f"device: {device} (platform {device.platform}, kind {device.device_kind!r}, "
      f"{jax.device_count()} device(s), {os.cpu_count()} CPUs)",
      f"versions: jax {meta['jax']}, jaxlib {meta['jaxlib']}, optax {meta['optax']}, "
      f"numpy {meta['numpy']}, jaxloss {meta['jaxloss']}, python {meta['python']}",
      torch_note,
  ]
  if tuning:
    lines.append("env: " + " ".join(f"{k}={v}" for k, v in tuning.items()))
  return lines, meta


def main(argv: Sequence[str] | None = None) -> int:
  """Runs the bench; returns the exit code (0, or 2 when no workload matches)."""
  start = time.perf_counter()
  args = parse_args(argv)
  workloads = harness.all_workloads()
  if args.list:
    for w in workloads:
      print(f"{w.name:16s} {w.family:15s} {w.description}")
    return 0
  chosen = select(workloads, args.only)
  if not chosen:
    names = ", ".join(w.name for w in workloads)
    print(f"no workload matches --only {args.only!r}; have: {names}", file=sys.stderr)
    return 2
  torch, torch_note = load_torch(args.no_torch)
  lines, meta = environment(torch_note)
  accel = accelerators.of_device(jax.devices()[0])
  if accel is not None:
    lines.append(accel.describe())
    meta["accelerator"] = {"name": accel.name, "peak_gbps": accel.peak_gbps}
  mode = "quick" if args.quick else "full"
  header = (f"jaxloss bench ({mode}): {len(chosen)} workload(s), {args.rounds} rounds, "
            f"~{args.block_ms:g} ms blocks, seed {args.seed}")
  rough = [] if args.rounds >= 15 else [f"note: {args.rounds} < 15 rounds, medians are rough"]
  key = ["columns:", *report.column_key_lines(accel is not None)]
  print("\n".join([header, *lines, *rough, *key]), flush=True)

  results = []
  with tqdm(total=len(chosen) * args.rounds, file=sys.stderr, unit="round", leave=False,
            disable=args.no_progress, dynamic_ncols=True, mininterval=0.2) as bar:
    for w in chosen:
      result = harness.run_workload(
          w, quick=args.quick, rounds=args.rounds, block_s=args.block_ms / 1e3, seed=args.seed,
          torch=torch, status=bar.set_description, on_round=lambda: bar.update(1))
      bar.write("\n" + report.format_text(result, accel), file=sys.stdout)
      sys.stdout.flush()
      results.append(result)
  print("\n" + report.format_summary_text(results, accel), flush=True)
  wall = time.perf_counter() - start
  print(f"\nwall time {wall:.1f} s", flush=True)

  meta.update(mode=mode, rounds=args.rounds, block_ms=args.block_ms, seed=args.seed,
              argv=list(sys.argv[1:] if argv is None else argv), wall_s=wall,
              date=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"))
  caption = f"{meta['device']} ({meta['device_kind']}), jax {meta['jax']}, {mode}"
  if args.json:
    with open(args.json, "w", encoding="utf-8") as f:
      f.write(report.to_json(results, meta, accel) + "\n")
    print(f"wrote {args.json}")
  if args.markdown:
    with open(args.markdown, "w", encoding="utf-8") as f:
      f.write(report.format_markdown(results, "\n".join([header, *lines]).replace("\n", "  \n"),
                                     accel))
    print(f"wrote {args.markdown}")
  if args.plot:
    chart.plot(results, args.plot, caption)
    print(f"wrote {args.plot}")
  if args.compare_data is not None:
    new = report.to_dict(results, meta, accel)
    print("\n" + compare.format_compare(args.compare_data, new, args.compare,
                                        args.json or "this run"))
  return 0


if __name__ == "__main__":
  sys.exit(main())
