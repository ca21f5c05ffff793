"""Shared plumbing for the examples: command line, summary tables, figures.

Every example is a script (``python examples/NAME.py``) and an importable module
with the same three entry points, so ``tests/test_examples.py`` can run it in a
tiny mode and export its training step:

* ``main(argv=None) -> dict``: parses ``--tiny``, ``--out`` and ``--seed``, trains,
  prints a summary table, saves a PNG under ``--out`` and returns the numbers in
  the table plus ``"figure"`` (the PNG's path).
* ``portable_train_step() -> (fn, args)``: one pure training step (parameters and
  optimiser state in, updated ones and the loss out) and example arguments, for
  ``jax.export`` to lower for CPU, CUDA and TPU.
"""

from __future__ import annotations

import argparse
import pathlib
from collections.abc import Sequence

DEFAULT_OUT = pathlib.Path(__file__).resolve().parent / "output"


def parse_args(description: str, argv: Sequence[str] | None) -> argparse.Namespace:
  """The examples' shared flags: ``--tiny`` (a few steps, for tests), ``--out``, ``--seed``."""
  parser = argparse.ArgumentParser(description=description)
  parser.add_argument("--tiny", action="store_true",
                      help="a few steps on a small dataset (used by the tests)")
  parser.add_argument("--out", type=pathlib.Path, default=DEFAULT_OUT,
                      help=f"folder for the PNG (default: {DEFAULT_OUT})")
  parser.add_argument("--seed", type=int, default=0, help="seed for data and initialisation")
  args = parser.parse_args(argv)
  args.out.mkdir(parents=True, exist_ok=True)
  return args


def format_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
  """A plain-text table; floats with three decimals."""
  cells = [[f"{v:.3f}" if isinstance(v, float) else str(v) for v in row] for row in rows]
  widths = [max(len(h), *(len(r[i]) for r in cells)) for i, h in enumerate(headers)]
  line = lambda row: "  ".join(c.rjust(w) if i else c.ljust(w)
                               for i, (c, w) in enumerate(zip(row, widths, strict=True)))
  rule = "  ".join("-" * w for w in widths)
  return "\n".join([line(headers), rule, *(line(r) for r in cells)])


def save_figure(fig, out: pathlib.Path, name: str) -> pathlib.Path:
  """Saves ``fig`` as ``out/name`` and closes it; returns the path."""
  import matplotlib.pyplot as plt

  path = out / name
  fig.savefig(path, dpi=110, bbox_inches="tight")
  plt.close(fig)
  return path
