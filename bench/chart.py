"""The PNG chart of a bench run (``--plot``): × roofline per contender, and the summary ratios.

Top panel: each contender's paired ratio to the streaming roofline, per
workload. Bottom panel: the summary table's ratio, best peer ÷ jaxloss (> 1:
jaxloss faster), per workload, with the 1.0 parity line drawn. Bars are
medians, whiskers the quartiles over rounds.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from bench.harness import COPYTO, JAXLOSS, ROOFLINE, WorkloadResult
from bench.report import paired_quartiles, speedup

_COLORS = {JAXLOSS: "#d62728", "naive_jax": "#1f77b4", "optax": "#2ca02c",
           "torch_eager": "#ff7f0e", "torch_compile": "#9467bd", COPYTO: "#7f7f7f"}


def _log_axis(ax: Any, lo: float, hi: float) -> None:
  from matplotlib.ticker import LogLocator, NullFormatter

  ax.set_yscale("log")
  ax.yaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
  ax.yaxis.set_minor_locator(LogLocator(subs="auto"))
  ax.yaxis.set_minor_formatter(NullFormatter())
  ax.set_ylim(lo / 1.5, hi * 1.6)


def _roofline_panel(ax: Any, results: Sequence[WorkloadResult]) -> list[str]:
  """Bars of × roofline per contender; returns the contender names in legend order."""
  impls: list[str] = []
  for result in results:
    for name in [JAXLOSS, *result.timings]:
      if name != ROOFLINE and name not in impls:
        impls.append(name)
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
    _log_axis(ax, lo, hi)
  else:
    ax.set_ylim(0, hi * 1.12)
  ax.set_ylabel("time ÷ streaming roofline\n(lower is better)")
  return impls


def _ratio_panel(ax: Any, results: Sequence[WorkloadResult]) -> None:
  """Bars of best peer ÷ jaxloss per workload (colored by the peer), parity line at 1.0."""
  lo, hi = 1.0, 1.0
  for i, result in enumerate(results):
    best = speedup(result)
    if best is None:
      ax.text(i, 1.0, "no peer", ha="center", va="bottom", fontsize=7, color="#606060")
      continue
    peer, q1, med, q3 = best
    ax.bar([i], [med], 0.6, yerr=[[med - q1], [q3 - med]], capsize=3,
           color=_COLORS.get(peer, "#8c564b"), edgecolor="white", linewidth=0.5,
           error_kw={"elinewidth": 0.8})
    ax.text(i, max(med, q3), f"{med:.2f}×\n{peer}", ha="center", va="bottom", fontsize=7)
    lo, hi = min(lo, q1), max(hi, q3)
  ax.axhline(1.0, color="black", linewidth=1.2)
  ax.text(-0.5, 1.0, " parity (above: jaxloss faster)", va="bottom", ha="left", fontsize=8)
  if hi / lo > 12:
    _log_axis(ax, lo, hi)
  else:
    ax.set_ylim(0, hi * 1.25)
  ax.set_ylabel("best peer ÷ jaxloss\n(higher: jaxloss faster)")


def plot(results: Sequence[WorkloadResult], path: str, caption: str) -> None:
  """Writes the two-panel PNG (see the module docstring) to ``path``."""
  from matplotlib.backends.backend_agg import FigureCanvasAgg
  from matplotlib.figure import Figure
  from matplotlib.ticker import FuncFormatter

  n_impls = len({n for r in results for n in r.timings} - {ROOFLINE})
  fig = Figure(figsize=(max(7.0, 0.35 * len(results) * (n_impls + 1) + 3), 8.4), dpi=120,
               layout="constrained")
  FigureCanvasAgg(fig)
  top, bottom = fig.subplots(2, 1, sharex=True, height_ratios=(3, 2))
  _roofline_panel(top, results)
  _ratio_panel(bottom, results)
  for ax in (top, bottom):
    ax.yaxis.set_major_formatter(FuncFormatter(lambda y, _: f"{y:g}×"))
    ax.set_xlim(-0.55, len(results) - 0.45)
    ax.grid(axis="y", alpha=0.3)
  bottom.set_xticks(range(len(results)), [r.workload.name for r in results], rotation=30,
                    ha="right")
  top.set_title("value + gradient, paired per round (bars: medians, whiskers: quartiles)\n"
                f"{caption}", fontsize=10)
  fig.legend(*top.get_legend_handles_labels(), loc="outside right upper", fontsize=8)
  fig.savefig(path)
