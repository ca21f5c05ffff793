"""The examples run (tiny mode) and their training steps lower for CPU, CUDA and TPU.

Each example in ``examples/`` follows the contract in ``examples/_common.py``: it
prints its progress and the absolute path of its PNG. The tiny runs also check
the figures through matplotlib's objects: no legend covers a curve or a bar,
PROPEL's density has a colour bar and its components a legend, every IoU bar
of the segmentation example carries its value.
"""

from __future__ import annotations

import importlib
import pathlib
import re
import sys

import jax
import numpy as np
import pytest

EXAMPLES_DIR = pathlib.Path(__file__).resolve().parents[1] / "examples"
EXAMPLES = sorted(p.stem for p in EXAMPLES_DIR.glob("*.py") if not p.stem.startswith("_"))

pytest.importorskip("matplotlib")


def _load(name):
  if str(EXAMPLES_DIR) not in sys.path:
    sys.path.insert(0, str(EXAMPLES_DIR))
  try:
    return importlib.import_module(name)
  except ImportError as err:  # flax or haiku not installed
    pytest.skip(f"example {name} needs {err.name}")


def test_examples_exist():
  assert {"segmentation_flax", "nima_haiku", "propel_regression"} <= set(EXAMPLES)


def _legends(fig):
  return [*fig.legends, *(ax.get_legend() for ax in fig.axes if ax.get_legend() is not None)]


def _covered_by_a_legend(fig) -> list[str]:
  """The curves (any vertex) and bars that lie under a legend of ``fig``."""
  from matplotlib.backends.backend_agg import FigureCanvasAgg

  FigureCanvasAgg(fig).draw()  # plt.close (in save_figure) detached the figure's own canvas
  renderer = fig.canvas.get_renderer()
  covered = []
  for legend in _legends(fig):
    box = legend.get_window_extent(renderer)
    for ax in fig.axes:
      for line in ax.get_lines():
        points = line.get_transform().transform(np.asarray(line.get_xydata(), float))
        inside = ((points[:, 0] > box.x0) & (points[:, 0] < box.x1)
                  & (points[:, 1] > box.y0) & (points[:, 1] < box.y1))
        if np.any(inside):
          covered.append(f"{ax.get_title()!r}: line {line.get_label()!r}")
      covered += [f"{ax.get_title()!r}: bar at {bar.get_x():.2f}" for bar in ax.patches
                  if bar.get_window_extent(renderer).overlaps(box)]
  return covered


def _check_propel_figure(fig, module):
  images = [im for ax in fig.axes for im in ax.get_images() if im.colorbar is not None]
  assert len(images) == 1 and images[0].colorbar.ax.get_ylabel().startswith("p(y | x)")
  labels = [t.get_text() for legend in _legends(fig) for t in legend.get_texts()]
  assert any(label.startswith("component ") for label in labels), labels
  # The +-std bands are clipped images whose opacity follows the weight, not coloured
  # fill_between polygons (whose `where=` runs end in vertical edges).
  data_ax = fig.axes[0]
  fills = [c for c in data_ax.collections if type(c).__name__.endswith("PolyCollection")]
  assert fills and all(np.all(c.get_facecolor()[:, 3] == 0) for c in fills)
  assert sum(im.get_clip_path() is not None for im in data_ax.get_images()) == len(fills)


def _check_segmentation_figure(fig, module):
  bars_ax, *line_axes = fig.axes
  bars = bars_ax.patches
  assert len(bars_ax.texts) == len(bars), "every IoU bar, also one of height 0, carries its value"
  for ax in line_axes:
    assert ax.get_lines() and ax.get_title() and ax.get_xlabel() and ax.get_ylabel()


FIGURE_CHECKS = {"propel_regression": _check_propel_figure,
                 "segmentation_flax": _check_segmentation_figure}


@pytest.mark.parametrize("name", EXAMPLES)
def test_example_runs_in_tiny_mode(name, tmp_path, capsys, monkeypatch):
  module = _load(name)
  figures = []
  save = module.save_figure
  monkeypatch.setattr(module, "save_figure", lambda fig, *a: figures.append(fig) or save(fig, *a))
  summary = module.main(["--tiny", "--out", str(tmp_path)])
  printed = capsys.readouterr().out
  assert printed.strip(), "the example prints a summary table"
  assert re.search(r"step +\d+/\d+ +batch loss", printed), "the example prints its progress"
  figure = pathlib.Path(summary["figure"])
  assert figure.suffix == ".png" and figure.stat().st_size > 1000
  assert f"figure: {figure}" in printed.splitlines() and figure.is_absolute()
  assert figure.parent == tmp_path.resolve()
  numbers = [v for v in jax.tree.leaves(summary) if isinstance(v, float | np.floating)]
  assert numbers and np.all(np.isfinite(numbers))
  (fig,) = figures
  assert not _covered_by_a_legend(fig), _covered_by_a_legend(fig)
  FIGURE_CHECKS.get(name, lambda *_: None)(fig, module)


def test_segmentation_plot_labels_zero_bars():
  """A bar of height 0 carries "0.00", so it reads as a zero and not as a missing bar."""
  module = _load("segmentation_flax")
  iou = {name: [0.0, 0.5, 1.0, 0.0, 0.375] for name in module.OBJECTIVES}
  curve = np.geomspace(1.0, 0.1, 6)[:, None] * np.ones((1, module.NUM_CLASSES))
  fig = module.plot(iou, {name: curve for name in module.OBJECTIVES})
  try:
    texts = [t.get_text() for t in fig.axes[0].texts]
    assert texts == 3 * ["0.00", "0.50", "1.00", "0.00", "0.38"]
    assert not _covered_by_a_legend(fig), _covered_by_a_legend(fig)
    _check_segmentation_figure(fig, module)
  finally:
    import matplotlib.pyplot as plt

    plt.close(fig)


def test_propel_branch_coverage_report():
  module = _load("propel_regression")
  # The true density (one component at each branch, the noise's std) has TRUE_MASS at each;
  # a component ten times too wide, or one off the branch, has much less.
  x = np.linspace(-1.0, 1.0, 5)
  f = module.branch(x)[:, None]
  ones = np.ones((5, 2))
  exact = module.branch_mass(x, np.concatenate([f, -f], 1), module.NOISE * ones, 0.5 * ones)
  np.testing.assert_allclose(exact, module.TRUE_MASS, rtol=1e-6)
  wide = module.branch_mass(x, np.concatenate([f, -f], 1), 10 * module.NOISE * ones, 0.5 * ones)
  assert np.all(wide < 0.5 * module.TRUE_MASS)  # "not found"
  shifted = module.branch_mass(x, np.concatenate([f, -f - 0.2], 1), module.NOISE * ones,
                               0.5 * ones)
  np.testing.assert_allclose(shifted[:, 0], module.TRUE_MASS, rtol=1e-6)
  assert np.all(shifted[:, 1] < 0.02)
  x = np.linspace(-1.0, 1.0, 9)
  assert module.intervals(x, np.array([1, 1, 0, 0, 1, 0, 1, 1, 1], bool)) == [
      (-1.0, -0.75), (0.0, 0.0), (0.5, 1.0)]
  assert module.intervals(x, np.zeros(9, bool)) == []
  found = module.TRUE_MASS
  mass = np.stack([np.full(9, found), np.where(x > 0.3, 0.4 * found, found)], axis=-1)
  lines, numbers = module.coverage_report(x, mass)
  assert numbers == pytest.approx({"upper_branch_found": 1.0, "lower_branch_found": 6 / 9})
  assert "not found" not in lines[0] and lines[1].endswith("not found for x in [+0.50, +1.00]")


@pytest.mark.parametrize("name", EXAMPLES)
def test_example_train_step_exports(name):
  module = _load(name)
  fn, args = module.portable_train_step()
  exported = jax.export.export(jax.jit(fn), platforms=("cpu", "cuda", "tpu"))(*args)
  assert exported.platforms == ("cpu", "cuda", "tpu")
  text = exported.mlir_module()
  assert "custom_call @host_callback" not in text and "callback" not in text.lower()
  expected = jax.jit(fn)(*args)
  got = exported.call(*args)
  for e, g in zip(jax.tree.leaves(expected), jax.tree.leaves(got), strict=True):
    np.testing.assert_allclose(np.asarray(g), np.asarray(e), rtol=1e-5, atol=1e-6)
