"""The examples run (tiny mode) and their training steps lower for CPU, CUDA and TPU.

Each example in ``examples/`` follows the contract in ``examples/_common.py``.
"""

from __future__ import annotations

import importlib
import pathlib
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


@pytest.mark.parametrize("name", EXAMPLES)
def test_example_runs_in_tiny_mode(name, tmp_path, capsys):
  module = _load(name)
  summary = module.main(["--tiny", "--out", str(tmp_path)])
  printed = capsys.readouterr().out
  assert printed.strip(), "the example prints a summary table"
  figure = pathlib.Path(summary["figure"])
  assert figure.suffix == ".png" and figure.stat().st_size > 1000
  numbers = [v for v in jax.tree.leaves(summary) if isinstance(v, float | np.floating)]
  assert numbers and np.all(np.isfinite(numbers))


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
