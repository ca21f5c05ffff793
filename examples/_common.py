"""Shared plumbing for the examples: command line, summary tables, figures.

Every example is a script (``python examples/NAME.py``) and an importable module
with the same three entry points, so ``tests/test_examples.py`` can run it in a
tiny mode and export its training step:

* ``main(argv=None) -> dict``: parses ``--tiny``, ``--out`` and ``--seed``, trains
  (printing a few :class:`Progress` lines), prints a summary table, saves a PNG
  under ``--out``, prints its absolute path and returns the numbers in the table
  plus ``"figure"`` (that path).
* ``portable_train_step() -> (fn, args)``: one pure training step (parameters and
  optimiser state in, updated ones and the loss out) and example arguments, for
  ``jax.export`` to lower for CPU, CUDA and TPU.
"""

from __future__ import annotations

import argparse
import pathlib
import time
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


class Progress:
  """Prints ``label  step i/N  loss ...  (t s)`` about ``lines`` times per run, flushed.

  Call it every step with the step's loss (a JAX scalar): it converts the loss,
  which waits for the device, only on the steps it prints.
  """

  def __init__(self, label: str, steps: int, lines: int = 4):
    self.label, self.steps, self.every = label, steps, max(1, steps // lines)
    self.start = time.perf_counter()

  def __call__(self, step: int, loss) -> None:
    done = step + 1
    if done % self.every == 0 or done == self.steps:
      width = len(str(self.steps))
      print(f"  {self.label}  step {done:>{width}}/{self.steps}  batch loss {float(loss):.4f}  "
            f"({time.perf_counter() - self.start:.1f} s)", flush=True)


def save_figure(fig, out: pathlib.Path, name: str) -> pathlib.Path:
  """Saves ``fig`` as ``out/name``, closes it and prints and returns the absolute path."""
  import matplotlib.pyplot as plt

  path = (out / name).resolve()
  fig.savefig(path, dpi=110, bbox_inches="tight")
  plt.close(fig)
  print(f"\nfigure: {path}", flush=True)
  return path
