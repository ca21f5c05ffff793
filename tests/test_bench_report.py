"""The bench report explains itself: column key, summary table, accelerator bandwidth, --compare.

Pure formatting on hand-made results (no timing), plus one tiny end-to-end run
with a faked accelerator and an old JSON to compare against.
"""

from __future__ import annotations

import json
import pathlib
import types

import pytest

bench_main = pytest.importorskip("bench.__main__")
from bench import accelerators, compare, report  # noqa: E402
from bench.harness import Timing, Workload, WorkloadResult, XlaStats  # noqa: E402

H100 = "NVIDIA H100 80GB HBM3"


def _result(name: str, jaxloss_s: float, peers: dict[str, float], *, min_bytes: int = 10**6,
            family: str = "demo") -> WorkloadResult:
  """Three rounds per contender; peers' times are constant multiples of jaxloss's."""
  rounds = (jaxloss_s, 1.1 * jaxloss_s, 0.9 * jaxloss_s)
  timings = {"jaxloss": Timing(rounds, 4)}
  timings |= {n: Timing(tuple(f * t for t in rounds), 4) for n, f in peers.items()}
  timings["roofline"] = Timing(tuple(t / 5 for t in rounds), 20)
  timings["np.copyto"] = Timing(tuple(t / 50 for t in rounds), 200)
  stats = {"jaxloss": XlaStats(3.0 * min_bytes, 4, 2 << 20)}
  workload = Workload(name=name, family=family, make_inputs=lambda quick, rng: (),
                      impls={"jaxloss": None}, description=f"{name} demo")
  return WorkloadResult(workload, ("f32[8]",), min_bytes, min_bytes // 2, timings, stats, 1e-7,
                        ())


RESULTS = [
    _result("fast", 1e-3, {"naive_jax": 1.5, "optax": 2.0}),
    _result("slow", 2e-3, {"naive_jax": 0.8}),
    _result("alone", 3e-3, {}),
]


def test_every_printed_column_has_one_key_line():
  printed = set(report.HEADERS + report.ACCEL_HEADERS + report.SUMMARY_HEADERS)
  assert printed - {"impl", "workload"} == set(report.COLUMN_KEY)
  names = [n for n, _ in report.column_key()]
  for name in ("× roofline", "× copyto", "bytes/min", "kernels", "temp MiB", "calls/block"):
    assert names.count(name) == 1
  assert "GB/s" not in names and "% peak" not in names  # accelerators only
  assert len(report.column_key(accelerator=True)) == len(report.COLUMN_KEY)
  for (name, text), line in zip(report.column_key(), report.column_key_lines(), strict=True):
    assert "\n" not in text and line.split() == [*name.split(), *text.split()]


def test_help_ends_with_the_column_key(capsys):
  with pytest.raises(SystemExit):
    bench_main.main(["--help"])
  text = capsys.readouterr().out
  assert all(line in text for line in report.column_key_lines(accelerator=True))


def test_summary_table_gives_peer_over_jaxloss_and_names_the_laggards():
  rows = {r["workload"]: r for r in report.summary_rows(RESULTS)}
  assert rows["fast"]["best_peer"] == "naive_jax"
  assert rows["fast"]["peer_over_jaxloss"] == pytest.approx(1.5)
  assert rows["slow"]["peer_over_jaxloss"] == pytest.approx(0.8)
  assert rows["alone"]["best_peer"] is None
  assert rows["fast"]["x_roofline"] == pytest.approx(5.0)
  assert rows["fast"]["temp_bytes"] == 2 << 20
  text = report.format_summary_text(RESULTS)
  lines = text.splitlines()
  assert all(h in lines[1] for h in report.SUMMARY_HEADERS)
  fast = next(line for line in lines if line.strip().startswith("fast"))
  assert fast.split()[1:] == ["1.000", "naive_jax", "1.500", "1.50", "0.00", "5.00", "2.00"]
  assert "slow (naive_jax 0.80×)" in lines[-1] and "fast" not in lines[-1]
  assert "at least as fast" in report.behind(RESULTS[:1])


def test_markdown_report_has_the_key_tables_and_summary():
  md = report.format_markdown(RESULTS, "header")
  assert md.index("**× roofline**") < md.index("## fast") < md.index("## Summary")
  assert "| fast | 1.000 | naive_jax | 1.500 | 1.50 |" in md
  assert "% peak" not in md


def test_per_workload_line_is_peer_over_jaxloss():
  assert "best peer (naive_jax) ÷ jaxloss: 0.80×" in report.format_text(RESULTS[1])
  # The JSON keeps the old direction too, for older readers.
  entry = report.to_dict(RESULTS[1:2], {})["workloads"][0]
  assert entry["jaxloss_over_best_peer"] == pytest.approx(1.25)
  assert entry["best_peer_over_jaxloss"] == pytest.approx(0.8)


@pytest.mark.parametrize("kind, name, peak", [
    (H100, "H100 SXM", 3350), ("NVIDIA H100 PCIe", "H100 PCIe", 2000),
    ("NVIDIA H100 NVL", "H100 NVL", 3900), ("NVIDIA H200", "H200", 4800),
    ("NVIDIA A100-SXM4-40GB", "A100 40GB", 1555), ("NVIDIA A100-PCIE-40GB", "A100 40GB", 1555),
    ("NVIDIA A100-SXM4-80GB", "A100 80GB SXM", 2039),
    ("NVIDIA A100 80GB PCIe", "A100 80GB PCIe", 1935), ("NVIDIA L4", "L4", 300),
    ("TPU v4", "TPU v4", 1200), ("TPU v5 lite", "TPU v5e", 819), ("TPU v5e", "TPU v5e", 819),
    ("TPU v5", "TPU v5p", 2765), ("TPU v5p", "TPU v5p", 2765),
    ("TPU v6 lite", "TPU v6e", 1640), ("TPU v6e", "TPU v6e", 1640),
])
def test_peak_bandwidth_table(kind, name, peak):
  assert accelerators.lookup(kind) == (name, peak)


@pytest.mark.parametrize("kind", ["NVIDIA L40S", "NVIDIA GH200 480GB", "TPU v4 lite", "TPU7x",
                                  "Radeon"])
def test_other_devices_are_unknown(kind):
  accel = accelerators.accelerator("gpu", kind)
  assert accel is not None and accel.peak_gbps is None
  assert "unknown device" in accel.describe()
  assert accel.fraction(100.0) is None


def test_cpu_reports_no_bandwidth():
  assert accelerators.of_device(types.SimpleNamespace(platform="cpu", device_kind="cpu")) is None


def test_faked_gpu_gets_gbps_and_fraction_of_peak():
  accel = accelerators.of_device(types.SimpleNamespace(platform="gpu", device_kind=H100))
  assert accel is not None and "H100 SXM, peak 3,350 GB/s" in accel.describe()
  # 335 MB in 1 ms: 335 GB/s, 10 % of the H100's 3,350 GB/s.
  result = _result("bw", 1e-3, {"naive_jax": 2.0}, min_bytes=335 * 10**6)
  lines = report.format_text(result, accel).splitlines()
  assert lines[2].endswith("GB/s  % peak")
  assert lines[3].split()[-2:] == ["335.0", "10.0"]
  summary = report.format_summary_text([result], accel).splitlines()
  assert summary[1].endswith("% peak") and summary[2].endswith("10.0")
  assert report.to_dict([result], {}, accel)["workloads"][0]["impls"][0]["peak_fraction"] == (
      pytest.approx(0.1))
  unknown = accelerators.accelerator("gpu", "NVIDIA L40S")
  assert report.format_text(result, unknown).splitlines()[3].split()[-2:] == ["335.0", "—"]


def _run_json(path, entries, **meta):
  path.write_text(json.dumps({"meta": {"mode": "quick", "device_kind": "cpu", **meta},
                              "workloads": entries}))
  return str(path)


def _entry(name, ms, peer=None, ratio=None, samples=None, new_format=True, x_roofline=3.0):
  entry = {"name": name, "best_peer": peer,
           "impls": [{"impl": "jaxloss", "median_ms": ms, "x_roofline": x_roofline,
                      "samples_ms": samples or [ms]}]}
  if new_format:
    entry["best_peer_over_jaxloss"] = ratio
  elif peer is not None:
    entry["jaxloss_over_best_peer"] = 1 / ratio
    entry["impls"].append({"impl": peer, "median_ms": ms * ratio,
                           "samples_ms": [s * ratio for s in samples or [ms]]})
  return entry


def test_compare_two_json_files(tmp_path, capsys):
  old = _run_json(tmp_path / "old.json", [
      _entry("ce", 2.0, "optax", 1.2, samples=[2.0, 2.2, 1.8], new_format=False),
      _entry("focal", 1.0, "naive_jax", 0.8, new_format=False), _entry("gone", 1.0)])
  new = _run_json(tmp_path / "new.json", [
      _entry("ce", 1.5, "optax", 1.6), _entry("focal", 1.1, "optax", 0.95),
      _entry("added", 0.5, "naive_jax", 2.0)], jax="9.9")
  rows = {r["workload"]: r for r in compare.compare_rows(compare.load(old), compare.load(new))}
  assert rows["ce"]["change_pct"] == pytest.approx(-25.0)
  assert rows["ce"]["old_ratio"] == pytest.approx(1.2)  # recomputed from the samples
  assert rows["ce"]["new_ratio"] == pytest.approx(1.6)
  assert rows["gone"]["new_ms"] is None and rows["added"]["old_ms"] is None
  assert compare.main([old, new]) == 0
  text = capsys.readouterr().out
  ce = next(line for line in text.splitlines() if line.strip().startswith("ce "))
  assert "2.000 → 1.500" in ce and "-25.0%" in ce and "1.20 → 1.60 (optax)" in ce
  focal = next(line for line in text.splitlines() if line.strip().startswith("focal"))
  assert "+10.0%" in focal and "0.80 → 0.95 (naive_jax → optax)" in focal
  assert "only in" in text and "note: jax differs" in text
  assert compare.main([old]) == 2


def test_compare_flag_with_a_faked_accelerator(tmp_path, capsys, monkeypatch):
  old = _run_json(tmp_path / "old.json", [_entry("huber", 1e5, "naive_jax", 1.0)])
  monkeypatch.setattr(bench_main.accelerators, "of_device",
                      lambda device: accelerators.accelerator("gpu", H100))
  code = bench_main.main(["--quick", "--only", "huber", "--rounds", "2", "--block-ms", "1",
                          "--no-progress", "--no-torch", "--compare", old])
  assert code == 0
  text = capsys.readouterr().out
  assert "memory bandwidth: H100 SXM, peak 3,350 GB/s" in text
  assert text.index("columns:") < text.index("== huber") < text.index("== summary")
  assert "% peak" in text.split("== huber")[1].splitlines()[2]
  assert "== compare:" in text and "-100.0%" in text.split("== compare:")[1]


def test_compare_flag_rejects_a_missing_or_foreign_file(tmp_path):
  with pytest.raises(SystemExit):
    bench_main.parse_args(["--compare", str(tmp_path / "missing.json")])
  (tmp_path / "list.json").write_text("[]")
  with pytest.raises(SystemExit):
    bench_main.parse_args(["--compare", str(tmp_path / "list.json")])


def test_docs_table_names_every_column():
  docs = (pathlib.Path(__file__).resolve().parents[1] / "docs" / "bench.md").read_text()
  assert all(f"| {name} |" in docs for name in report.HEADERS[1:] + report.ACCEL_HEADERS)
