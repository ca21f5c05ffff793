"""Reports of a bench run: text tables, Markdown, JSON and the roofline bar chart.

Split out of :mod:`bench.harness` to keep each module short; everything here
is a pure function of :class:`bench.harness.WorkloadResult` objects.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import numpy as np

from bench.harness import COPYTO, JAXLOSS, ROOFLINE, WorkloadResult

_MIB = 1 << 20
HEADERS = ("impl", "median ms", "IQR ms", "× roofline", "× copyto", "bytes/min", "kernels",
           "temp MiB", "calls/block")


def _ms(seconds: float) -> str:
  ms = 1e3 * seconds
  return f"{ms:.1f}" if ms >= 100 else f"{ms:.2f}" if ms >= 10 else f"{ms:.3f}"


def _opt(value: float | None, fmt: str) -> str:
  return "—" if value is None else format(value, fmt)


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


def best_peer(result: WorkloadResult) -> tuple[str, float, float] | None:
  """The fastest peer (by median) and jaxloss's paired ratio to it (median, IQR)."""
  # Variants of jaxloss itself ("jaxloss_autodiff", ...) are shown but are not peers.
  peers = {n: t.median_s for n, t in result.timings.items()
           if n not in (JAXLOSS, ROOFLINE, COPYTO) and not n.startswith(JAXLOSS + "_")}
  if not peers:
    return None
  name = min(peers, key=peers.__getitem__)
  return (name, *paired_ratio(result, JAXLOSS, name))


def rows(result: WorkloadResult) -> list[dict[str, Any]]:
  """One dict per contender (jaxloss first) with its timing, ratios and XLA stats."""
  names = [JAXLOSS] + [n for n in result.timings if n != JAXLOSS]
  out = []
  for name in names:
    t = result.timings[name]
    s = result.stats.get(name)
    accessed = None if s is None else s.bytes_accessed
    x_roof, x_roof_iqr = paired_ratio(result, name, ROOFLINE)
    x_copy, x_copy_iqr = paired_ratio(result, name, COPYTO)
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
        "samples_ms": [1e3 * x for x in t.samples_s],
    })
  return out


def _cells(row: dict[str, Any]) -> list[str]:
  temp = row["temp_bytes"]
  return [row["impl"], _ms(row["median_ms"] / 1e3), _ms(row["iqr_ms"] / 1e3),
          f"{row['x_roofline']:.2f}", f"{row['x_copyto']:.2f}",
          _opt(row["bytes_over_min"], ".2f"), _opt(row["kernels"], "d"),
          _opt(None if temp is None else temp / _MIB, ".2f"), str(row["calls_per_block"])]


def title(result: WorkloadResult) -> str:
  w = result.workload
  return f"{w.name} [{w.family}]" + (f": {w.description}" if w.description else "")


def subtitle(result: WorkloadResult) -> str:
  return (f"inputs {' '.join(result.input_specs)}; minimal bytes "
          f"{result.min_bytes / _MIB:.2f} MiB (inputs once + gradient once)")


def summary(result: WorkloadResult) -> str:
  """``jaxloss ÷ best peer`` plus the agreement error and any notes."""
  best = best_peer(result)
  ratio = ("no peer" if best is None else
           f"jaxloss ÷ best peer ({best[0]}): {best[1]:.2f}× (IQR {best[2]:.2f})")
  text = f"{ratio}; implementations agree to {result.max_rel_error:.1e} (relative)"
  return "; ".join([text, *result.notes])


def format_text(result: WorkloadResult) -> str:
  """A fixed-width table for the terminal."""
  table = [list(HEADERS)] + [_cells(r) for r in rows(result)]
  widths = [max(len(line[i]) for line in table) for i in range(len(HEADERS))]
  lines = [f"== {title(result)}", f"   {subtitle(result)}"]
  for line in table:
    cells = [line[0].ljust(widths[0])]
    cells += [c.rjust(w) for c, w in zip(line[1:], widths[1:], strict=True)]
    lines.append("   " + "  ".join(cells))
  lines.append(f"   {summary(result)}")
  return "\n".join(lines)


def format_markdown(results: Sequence[WorkloadResult], header: str) -> str:
  """All workloads as Markdown tables under a ``header`` paragraph."""
  parts = ["# jaxloss bench", "", header, ""]
  for result in results:
    parts += [f"## {title(result)}", "", subtitle(result) + ".", "",
              "| " + " | ".join(HEADERS) + " |",
              "|" + "|".join([":---"] + ["---:"] * (len(HEADERS) - 1)) + "|"]
    parts += ["| " + " | ".join(_cells(r)) + " |" for r in rows(result)]
    parts += ["", summary(result) + ".", ""]
  return "\n".join(parts)


def to_json(results: Sequence[WorkloadResult], meta: dict[str, Any]) -> str:
  """The run as JSON: ``meta`` plus, per workload, every row and the raw samples."""
  workloads = []
  for result in results:
    best = best_peer(result)
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
        "max_rel_error": result.max_rel_error,
        "notes": list(result.notes),
        "impls": rows(result),
    })
  return json.dumps({"meta": meta, "workloads": workloads}, indent=2)


_COLORS = {JAXLOSS: "#d62728", "naive_jax": "#1f77b4", "optax": "#2ca02c",
           "torch_eager": "#ff7f0e", "torch_compile": "#9467bd", COPYTO: "#7f7f7f"}


def plot(results: Sequence[WorkloadResult], path: str, caption: str) -> None:
  """Writes a PNG of each implementation's paired ratio to the roofline, per workload.

  Bars are medians, whiskers the quartiles; ``np.copyto`` is hatched grey.
  """
  from matplotlib.backends.backend_agg import FigureCanvasAgg
  from matplotlib.figure import Figure
  from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

  impls: list[str] = []
  for result in results:
    for name in [JAXLOSS, *result.timings]:
      if name != ROOFLINE and name not in impls:
        impls.append(name)
  fig = Figure(figsize=(max(7.0, 0.35 * len(results) * (len(impls) + 1) + 3), 4.8), dpi=120,
               layout="constrained")
  FigureCanvasAgg(fig)
  ax = fig.add_subplot()
  width = 0.8 / len(impls)
  lo, hi = 1.0, 1.0
  for j, name in enumerate(impls):
    xs, ys, err = [], [], [[], []]
    for i, result in enumerate(results):
      if name in result.timings:
        q1, med, q3 = paired_quartiles(result, name, ROOFLINE)
        xs.append(i + (j - (len(impls) - 1) / 2) * width)
        ys.append(med)
        err[0].append(med - q1)
        err[1].append(q3 - med)
        lo, hi = min(lo, q1), max(hi, q3)
    copy = name == COPYTO
    bars = ax.bar(xs, ys, width, yerr=err, capsize=2, label=name, color=_COLORS.get(name),
                  hatch="//" if copy else None, edgecolor="#404040" if copy else "white",
                  linewidth=0.5, error_kw={"elinewidth": 0.8})
    ax.bar_label(bars, labels=[f"{y:.1f}" for y in ys], fontsize=7, padding=2)
  ax.axhline(1.0, color="black", linewidth=1, linestyle="--")
  ax.text(len(results) - 0.45, 1.0, "roofline ", va="bottom", ha="right", fontsize=8)
  if hi / lo > 12:
    ax.set_yscale("log")
    ax.yaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
    ax.yaxis.set_minor_locator(LogLocator(subs="auto"))
    ax.yaxis.set_minor_formatter(NullFormatter())
    ax.set_ylim(lo / 1.5, hi * 1.6)
  else:
    ax.set_ylim(0, hi * 1.12)
  ax.yaxis.set_major_formatter(FuncFormatter(lambda y, _: f"{y:g}×"))
  ax.set_xticks(range(len(results)), [r.workload.name for r in results])
  ax.set_xlim(-0.55, len(results) - 0.45)
  ax.set_ylabel("time ÷ streaming roofline (lower is better)")
  ax.set_title(f"value + gradient, median ÷ roofline per round (whiskers: quartiles)\n{caption}",
               fontsize=10)
  ax.grid(axis="y", alpha=0.3)
  fig.legend(loc="outside right upper", fontsize=8)
  fig.savefig(path)
