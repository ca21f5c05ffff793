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
  assert text.index("columns:") < text.index("== mse") < text.index("== summary")
  results = json.loads(out.read_text())
  assert results
  assert png.stat().st_size > 0 and md.read_text().strip()
  assert "## Summary" in md.read_text()


def test_unknown_workload_is_reported():
  assert bench_main.main(["--quick", "--only", "no-such-workload", "--no-progress"]) == 2


def test_variants_of_jaxloss_are_not_peers():
  from bench.harness import Timing, WorkloadResult
  from bench.report import best_peer

  timings = {"jaxloss": Timing((2.0, 2.0, 2.0), 1), "jaxloss_autodiff": Timing((1.0,) * 3, 1),
             "naive_jax": Timing((4.0, 4.0, 4.0), 1), "roofline": Timing((0.5,) * 3, 1)}
  result = WorkloadResult(None, (), 0, 0, timings, {}, 0.0, ())
  name, ratio, _ = best_peer(result)
  assert name == "naive_jax" and ratio == 0.5


def test_emd_formulations_agree_and_are_timed(capsys):
  formulations = pytest.importorskip("bench.formulations")
  assert formulations.main(["--quick", "--only", "emd_formulations", "--rounds", "2",
                            "--no-torch"]) == 0
  text = capsys.readouterr().out
  for name in ("triangular_matmul", "associative_scan", "cumsum_of_difference",
               "unrolled_running_sum", "naive_jax", "jaxloss"):
    assert f"   {name} " in text
