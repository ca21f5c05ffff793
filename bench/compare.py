"""Per-workload changes between two bench runs' ``--json`` files.

``python -m bench --only ce --json new.json --compare old.json`` runs the bench
and then prints, for every workload in both runs, jaxloss's median time old →
new with the change in percent, the paired ratio best peer ÷ jaxloss old →
new (> 1: jaxloss faster) and jaxloss's × roofline old → new, so a kernel
change can be judged in one command. ``python -m bench.compare OLD.json
NEW.json`` compares two saved runs.

Absolute times of two runs drift with the machine's load; the paired ratios
(peer ÷ jaxloss, × roofline) are measured within each run and travel better.
JSON from before ``best_peer_over_jaxloss`` existed is read too: the ratio is
then recomputed from the per-round samples.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from typing import Any

import numpy as np


def load(path: str) -> dict[str, Any]:
  """A ``--json`` file; ``ValueError`` when it is not one."""
  with open(path, encoding="utf-8") as f:
    data = json.load(f)
  if not isinstance(data, dict) or not isinstance(data.get("workloads"), list):
    raise ValueError(f"{path} is not a bench --json file (no 'workloads' list)")
  return data


def _impl(workload: dict[str, Any], name: str) -> dict[str, Any] | None:
  return next((r for r in workload.get("impls", []) if r.get("impl") == name), None)


def peer_over_jaxloss(workload: dict[str, Any]) -> float | None:
  """The paired ratio best peer ÷ jaxloss of one workload entry, however the JSON has it."""
  if workload.get("best_peer_over_jaxloss") is not None:
    return float(workload["best_peer_over_jaxloss"])
  peer, jl = _impl(workload, workload.get("best_peer") or ""), _impl(workload, "jaxloss")
  if peer is not None and jl is not None and peer.get("samples_ms") and jl.get("samples_ms"):
    return float(np.median(np.asarray(peer["samples_ms"]) / np.asarray(jl["samples_ms"])))
  old = workload.get("jaxloss_over_best_peer")
  return None if not old else 1.0 / float(old)


def compare_rows(old: dict[str, Any], new: dict[str, Any]) -> list[dict[str, Any]]:
  """One dict per workload of either run (new run's order, then the ones it dropped)."""
  olds = {w["name"]: w for w in old["workloads"]}
  news = {w["name"]: w for w in new["workloads"]}
  out = []
  for name in [*news, *(n for n in olds if n not in news)]:
    row: dict[str, Any] = {"workload": name}
    for tag, run in (("old", olds), ("new", news)):
      w = run.get(name)
      jl = None if w is None else _impl(w, "jaxloss")
      row[f"{tag}_ms"] = None if jl is None else jl["median_ms"]
      row[f"{tag}_x_roofline"] = None if jl is None else jl.get("x_roofline")
      row[f"{tag}_peer"] = None if w is None else w.get("best_peer")
      row[f"{tag}_ratio"] = None if w is None else peer_over_jaxloss(w)
    both = row["old_ms"] is not None and row["new_ms"] is not None
    row["change_pct"] = 100 * (row["new_ms"] / row["old_ms"] - 1) if both else None
    out.append(row)
  return out


def _pair(a: float | None, b: float | None, fmt: str) -> str:
  def one(x: float | None) -> str:
    return "—" if x is None else format(x, fmt)
  return f"{one(a)} → {one(b)}"


def _run_label(meta: dict[str, Any]) -> str:
  return (f"{meta.get('mode', '?')} run on {meta.get('device_kind', '?')}, jax "
          f"{meta.get('jax', '?')}, {meta.get('date', 'undated')}")


def format_compare(old: dict[str, Any], new: dict[str, Any], old_name: str = "old",
                   new_name: str = "new") -> str:
  """The comparison as a fixed-width table with a header naming both runs."""
  old_meta, new_meta = old.get("meta", {}), new.get("meta", {})
  lines = [f"== compare: {old_name} ({_run_label(old_meta)})",
           f"   against   {new_name} ({_run_label(new_meta)})"]
  for key in ("device_kind", "mode", "jax"):
    if old_meta.get(key) != new_meta.get(key):
      lines.append(f"   note: {key} differs ({old_meta.get(key)!r} → {new_meta.get(key)!r}); "
                   "compare the ratios, not the times")
  table = [["workload", "jaxloss ms", "change", "peer ÷ jaxloss", "× roofline"]]
  for row in compare_rows(old, new):
    ratio = _pair(row["old_ratio"], row["new_ratio"], ".2f")
    if row["old_peer"] and row["new_peer"] and row["old_peer"] != row["new_peer"]:
      ratio += f" ({row['old_peer']} → {row['new_peer']})"
    elif row["new_peer"] or row["old_peer"]:
      ratio += f" ({row['new_peer'] or row['old_peer']})"
    change = ("only in " + (new_name if row["old_ms"] is None else old_name)
              if row["change_pct"] is None else f"{row['change_pct']:+.1f}%")
    table.append([row["workload"], _pair(row["old_ms"], row["new_ms"], ".3f"), change, ratio,
                  _pair(row["old_x_roofline"], row["new_x_roofline"], ".2f")])
  widths = [max(len(line[i]) for line in table) for i in range(len(table[0]))]
  for line in table:
    cells = [line[0].ljust(widths[0])]
    cells += [c.rjust(w) for c, w in zip(line[1:], widths[1:], strict=True)]
    lines.append("   " + "  ".join(cells))
  lines.append("   change: jaxloss's median time, new ÷ old − 1 (negative: faster); "
               "peer ÷ jaxloss > 1: jaxloss faster")
  return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
  """``python -m bench.compare OLD.json NEW.json``."""
  args = list(sys.argv[1:] if argv is None else argv)
  if len(args) != 2 or any(a.startswith("-") for a in args):
    print("usage: python -m bench.compare OLD.json NEW.json", file=sys.stderr)
    return 2
  print(format_compare(load(args[0]), load(args[1]), args[0], args[1]))
  return 0


if __name__ == "__main__":
  sys.exit(main())
