"""The bench suite, the library's main job, runs end to end (tiny sizes, few rounds).

Each workload asserts that jaxloss, naive JAX and optax agree in value and
gradient before it times anything, so this also cross-checks every workload.
"""

from __future__ import annotations

import json

import pytest

bench_main = pytest.importorskip("bench.__main__")


def test_quick_bench_runs_and_writes_reports(tmp_path, capsys):
  out = tmp_path / "bench.json"
  md = tmp_path / "bench.md"
  png = tmp_path / "bench.png"
  code = bench_main.main(["--quick", "--rounds", "2", "--block-ms", "1", "--no-progress",
                          "--no-torch", "--json", str(out), "--markdown", str(md),
                          "--plot", str(png)])
  assert code == 0
  text = capsys.readouterr().out
  assert "== mse" in text and "== softmax_ce" in text
  results = json.loads(out.read_text())
  assert results
  assert png.stat().st_size > 0 and md.read_text().strip()


def test_unknown_workload_is_reported():
  assert bench_main.main(["--quick", "--only", "no-such-workload", "--no-progress"]) == 2
