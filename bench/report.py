"""Reports of a bench run: the column key, per-workload tables, the summary, Markdown and JSON.

Split out of :mod:`bench.harness` to keep each module short; everything here
is a pure function of :class:`bench.harness.WorkloadResult` objects (and, on
a GPU or TPU, of the :class:`bench.accelerators.Accelerator` that adds the
bandwidth columns). The PNG chart is :mod:`bench.chart`, the comparison of
two runs :mod:`bench.compare`.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import numpy as np

from bench.accelerators import Accelerator
from bench.harness import COPYTO, JAXLOSS, ROOFLINE, WorkloadResult

_MIB = 1 << 20
HEADERS = ("impl", "median ms", "IQR ms", "× roofline", "× copyto", "bytes/min", "kernels",
           "temp MiB", "calls/block")
ACCEL_HEADERS = ("GB/s", "% peak")  # appended on a GPU or TPU
SUMMARY_HEADERS = ("workload", "jaxloss ms", "best peer", "peer ms", "peer ÷ jaxloss",
                   "ratio IQR", "× roofline", "temp MiB")

# One line per column, keyed on the exact column names above; printed by --help, at the top
# of the text report and in the Markdown report.
COLUMN_KEY: dict[str, str] = {
    "median ms": "median over rounds of one value+gradient call, in ms",
    "IQR ms": "inter-quartile range of the per-round times",
    "× roofline": "time ÷ the streaming roofline's, paired by round, median (1 = streaming)",
    "× copyto": "the same against np.copyto of input 0 (steadier on a busy CPU)",
    "bytes/min": "XLA's bytes accessed ÷ minimal bytes (inputs read once + gradient written)",
    "kernels": "non-trivial ops of the compiled ENTRY (fusions, custom-calls, copies...)",
    "temp MiB": "XLA's temporary buffer size of one call (memory_analysis)",
    "calls/block": "back-to-back calls per timed block, calibrated to about --block-ms",
    "GB/s": "minimal bytes ÷ median time, the effective bandwidth (GPU/TPU only)",
    "% peak": "GB/s ÷ the device's peak memory bandwidth (bench/accelerators.py)",
    "jaxloss ms": "summary: jaxloss's median ms (the table's median ms)",
    "best peer": "summary: the peer with the lowest median (naive_jax, optax, torch_*)",
    "peer ms": "summary: that peer's median ms",
    "peer ÷ jaxloss": "summary: peer ÷ jaxloss time, paired by round, median; > 1: jaxloss faster",
    "ratio IQR": "summary: inter-quartile range of peer ÷ jaxloss over rounds",
}


def column_key(accelerator: bool = False) -> list[tuple[str, str]]:
  """``(column, meaning)`` pairs; the bandwidth columns only on an accelerator."""
  return [(n, text) for n, text in COLUMN_KEY.items() if accelerator or n not in ACCEL_HEADERS]


def column_key_lines(accelerator: bool = False) -> list[str]:
  """The key, one ``name  meaning`` line per column."""
  key = column_key(accelerator)
  width = max(len(n) for n, _ in key)
  return [f"  {n.ljust(width)}  {text}" for n, text in key]


def _ms(seconds: float) -> str:
  ms = 1e3 * seconds
  return f"{ms:.1f}" if ms >= 100 else f"{ms:.2f}" if ms >= 10 else f"{ms:.3f}"


def _opt(value: float | None, fmt: str) -> str:
  return "—" if value is None else format(value, fmt)


# --------------------------------------------------------------------------- statistics


def paired_quartiles(result: WorkloadResult, name: str, ref: str) -> tuple[float, float, float]:
  """Quartiles over rounds of ``name``'s sample ÷ ``ref``'s sample of the same round.

  Rounds are interleaved, so pairing samples by round cancels the slow drifts
  of a shared machine that a ratio of two medians would keep.
  """
  a = np.asarray(result.timings[name].samples_s)
  b = np.asarray(result.timings[ref].samples_s)
  q1, med, q3 = np.percentile(a / b, [25, 50, 75])
  return float(q1), float(med), float(q3)


def paired_ratio(result: WorkloadResult, name: str, ref: str) -> tuple[float, float]:
  """Median and IQR of the paired ratio (see :func:`paired_quartiles`)."""
  q1, med, q3 = paired_quartiles(result, name, ref)
  return med, q3 - q1


def best_peer_name(result: WorkloadResult) -> str | None:
  """The peer with the lowest median; None when the workload has no peer."""
  # Variants of jaxloss itself ("jaxloss_autodiff", ...) are shown but are not peers.
  peers = {n: t.median_s for n, t in result.timings.items()
           if n not in (JAXLOSS, ROOFLINE, COPYTO) and not n.startswith(JAXLOSS + "_")}
  return min(peers, key=peers.__getitem__) if peers else None


def best_peer(result: WorkloadResult) -> tuple[str, float, float] | None:
  """The fastest peer and the paired ratio jaxloss ÷ peer (median, IQR); < 1: jaxloss faster."""
  name = best_peer_name(result)
  return None if name is None else (name, *paired_ratio(result, JAXLOSS, name))


def speedup(result: WorkloadResult) -> tuple[str, float, float, float] | None:
  """The fastest peer and the quartiles of peer ÷ jaxloss; > 1: jaxloss faster."""
  name = best_peer_name(result)
  return None if name is None else (name, *paired_quartiles(result, name, JAXLOSS))


def rows(result: WorkloadResult, accelerator: Accelerator | None = None) -> list[dict[str, Any]]:
  """One dict per contender (jaxloss first) with its timing, ratios and XLA stats."""
  names = [JAXLOSS] + [n for n in result.timings if n != JAXLOSS]
  out = []
  for name in names:
    t = result.timings[name]
    s = result.stats.get(name)
    accessed = None if s is None else s.bytes_accessed
    x_roof, x_roof_iqr = paired_ratio(result, name, ROOFLINE)
    x_copy, x_copy_iqr = paired_ratio(result, name, COPYTO)
    gbps = result.min_bytes / t.median_s / 1e9
    out.append({
        "impl": name,
        "median_ms": 1e3 * t.median_s,
        "iqr_ms": 1e3 * t.iqr_s,
        "x_roofline": x_roof,
        "x_roofline_iqr": x_roof_iqr,
        "x_copyto": x_copy,
        "x_copyto_iqr": x_copy_iqr,
        "bytes_accessed": accessed,
        "bytes_over_min": None if accessed is None else accessed / result.min_bytes,
        "kernels": None if s is None else s.kernels,
        "temp_bytes": None if s is None else s.temp_bytes,
        "temp_over_grad": (None if s is None or s.temp_bytes is None
                           else s.temp_bytes / result.grad_bytes),
        "calls_per_block": t.calls_per_block,
        "gbps": gbps,
        "peak_fraction": None if accelerator is None else accelerator.fraction(gbps),
        "samples_ms": [1e3 * x for x in t.samples_s],
    })
  return out


# --------------------------------------------------------------------------- tables


def _temp_mib(row: dict[str, Any]) -> str:
  return _opt(None if row["temp_bytes"] is None else row["temp_bytes"] / _MIB, ".2f")


def _percent(fraction: float | None) -> str:
  return _opt(None if fraction is None else 100 * fraction, ".1f")


def headers(accelerator: Accelerator | None = None) -> tuple[str, ...]:
  """The per-workload table's columns (with the bandwidth ones on an accelerator)."""
  return HEADERS + (ACCEL_HEADERS if accelerator is not None else ())


def _cells(row: dict[str, Any], accelerator: Accelerator | None) -> list[str]:
  cells = [row["impl"], _ms(row["median_ms"] / 1e3), _ms(row["iqr_ms"] / 1e3),
           f"{row['x_roofline']:.2f}", f"{row['x_copyto']:.2f}",
           _opt(row["bytes_over_min"], ".2f"), _opt(row["kernels"], "d"), _temp_mib(row),
           str(row["calls_per_block"])]
  if accelerator is not None:
    cells += [f"{row['gbps']:.1f}", _percent(row["peak_fraction"])]
  return cells


def _fixed_width(table: Sequence[Sequence[str]], indent: str = "   ") -> list[str]:
  """Rows of cells as lines: the first column left-aligned, the others right-aligned."""
  widths = [max(len(line[i]) for line in table) for i in range(len(table[0]))]
  out = []
  for line in table:
    cells = [line[0].ljust(widths[0])]
    cells += [c.rjust(w) for c, w in zip(line[1:], widths[1:], strict=True)]
    out.append(indent + "  ".join(cells))
  return out


def _markdown_table(table: Sequence[Sequence[str]]) -> list[str]:
  head, *body = table
  return (["| " + " | ".join(head) + " |",
           "|" + "|".join([":---"] + ["---:"] * (len(head) - 1)) + "|"]
          + ["| " + " | ".join(line) + " |" for line in body])


def title(result: WorkloadResult) -> str:
  w = result.workload
  return f"{w.name} [{w.family}]" + (f": {w.description}" if w.description else "")


def subtitle(result: WorkloadResult) -> str:
  return (f"inputs {' '.join(result.input_specs)}; minimal bytes "
          f"{result.min_bytes / _MIB:.2f} MiB (inputs once + gradient once)")


def summary(result: WorkloadResult) -> str:
  """``best peer ÷ jaxloss`` plus the agreement error and any notes."""
  best = speedup(result)
  ratio = ("no peer" if best is None else
           f"best peer ({best[0]}) ÷ jaxloss: {best[2]:.2f}× (IQR {best[3] - best[1]:.2f}; "
           "> 1: jaxloss faster)")
  text = f"{ratio}; implementations agree to {result.max_rel_error:.1e} (relative)"
  return "; ".join([text, *result.notes])


def format_text(result: WorkloadResult, accelerator: Accelerator | None = None) -> str:
  """A fixed-width table for the terminal."""
  table = [list(headers(accelerator))] + [_cells(r, accelerator)
                                          for r in rows(result, accelerator)]
  return "\n".join([f"== {title(result)}", f"   {subtitle(result)}", *_fixed_width(table),
                    f"   {summary(result)}"])


# --------------------------------------------------------------------------- summary


def summary_rows(results: Sequence[WorkloadResult],
                 accelerator: Accelerator | None = None) -> list[dict[str, Any]]:
  """One dict per workload: jaxloss's time, its best peer and the paired ratio to it."""
  out = []
  for result in results:
    jl = rows(result, accelerator)[0]
    best = speedup(result)
    out.append({
        "workload": result.workload.name,
        "jaxloss_ms": jl["median_ms"],
        "best_peer": None if best is None else best[0],
        "peer_ms": None if best is None else 1e3 * result.timings[best[0]].median_s,
        "peer_over_jaxloss": None if best is None else best[2],
        "peer_over_jaxloss_iqr": None if best is None else best[3] - best[1],
        "x_roofline": jl["x_roofline"],
        "temp_bytes": jl["temp_bytes"],
        "peak_fraction": jl["peak_fraction"],
    })
  return out


def _summary_table(results: Sequence[WorkloadResult],
                   accelerator: Accelerator | None) -> list[list[str]]:
  table = [list(SUMMARY_HEADERS) + (["% peak"] if accelerator is not None else [])]
  for row in summary_rows(results, accelerator):
    peer = row["best_peer"]
    cells = [row["workload"], _ms(row["jaxloss_ms"] / 1e3), peer or "—",
             "—" if peer is None else _ms(row["peer_ms"] / 1e3),
             _opt(row["peer_over_jaxloss"], ".2f"), _opt(row["peer_over_jaxloss_iqr"], ".2f"),
             f"{row['x_roofline']:.2f}", _temp_mib(row)]
    table.append(cells + ([_percent(row["peak_fraction"])] if accelerator is not None else []))
  return table


def behind(results: Sequence[WorkloadResult]) -> str:
  """One sentence naming the workloads where jaxloss is slower than its best peer."""
  slow = [(r["workload"], r["best_peer"], r["peer_over_jaxloss"]) for r in summary_rows(results)
          if r["peer_over_jaxloss"] is not None and r["peer_over_jaxloss"] < 1.0]
  if not slow:
    return "jaxloss is at least as fast as its best peer on every workload that has one."
  return ("jaxloss behind its best peer (peer ÷ jaxloss < 1): "
          + ", ".join(f"{w} ({p} {r:.2f}×)" for w, p, r in slow) + ".")


def format_summary_text(results: Sequence[WorkloadResult],
                        accelerator: Accelerator | None = None) -> str:
  """The closing table across workloads, for the terminal."""
  return "\n".join(["== summary: value + gradient, jaxloss against its fastest peer",
                    *_fixed_width(_summary_table(results, accelerator)),
                    f"   {behind(results)}"])


def format_markdown(results: Sequence[WorkloadResult], header: str,
                    accelerator: Accelerator | None = None) -> str:
  """The column key, every workload's table and the summary, as Markdown."""
  parts = ["# jaxloss bench", "", header, "", "Columns:", ""]
  parts += [f"- **{n}**: {text}" for n, text in column_key(accelerator is not None)]
  parts.append("")
  for result in results:
    table = [list(headers(accelerator))] + [_cells(r, accelerator)
                                            for r in rows(result, accelerator)]
    parts += [f"## {title(result)}", "", subtitle(result) + ".", "", *_markdown_table(table),
              "", summary(result) + ".", ""]
  parts += ["## Summary", "", *_markdown_table(_summary_table(results, accelerator)), "",
            behind(results), ""]
  return "\n".join(parts)


# --------------------------------------------------------------------------- JSON


def to_dict(results: Sequence[WorkloadResult], meta: dict[str, Any],
            accelerator: Accelerator | None = None) -> dict[str, Any]:
  """The run as a JSON-ready dict: ``meta`` plus, per workload, every row and the samples."""
  workloads = []
  for result in results:
    best = best_peer(result)
    fast = speedup(result)
    workloads.append({
        "name": result.workload.name,
        "family": result.workload.family,
        "description": result.workload.description,
        "inputs": list(result.input_specs),
        "min_bytes": result.min_bytes,
        "grad_bytes": result.grad_bytes,
        "best_peer": None if best is None else best[0],
        "jaxloss_over_best_peer": None if best is None else best[1],
        "jaxloss_over_best_peer_iqr": None if best is None else best[2],
        "best_peer_over_jaxloss": None if fast is None else fast[2],
        "best_peer_over_jaxloss_iqr": None if fast is None else fast[3] - fast[1],
        "max_rel_error": result.max_rel_error,
        "notes": list(result.notes),
        "impls": rows(result, accelerator),
    })
  return {"meta": meta, "workloads": workloads}


def to_json(results: Sequence[WorkloadResult], meta: dict[str, Any],
            accelerator: Accelerator | None = None) -> str:
  """:func:`to_dict` as indented JSON."""
  return json.dumps(to_dict(results, meta, accelerator), indent=2)
