"""The docs cover the whole public API (``mkdocs build --strict`` itself runs in .ci/run)."""

from __future__ import annotations

import doctest
import inspect
import pathlib
import re

import pytest
from _pytest import doctest as _pytest_doctest

import jaxloss

ROOT = pathlib.Path(__file__).resolve().parents[1]
DOCUMENTED_ELSEWHERE = {"REDUCTIONS"}  # a tuple of names: listed in docs/api.md's intro


def test_api_reference_lists_every_public_name():
  listed = set(re.findall(r"^::: jaxloss\.(\w+)$", (ROOT / "docs/api.md").read_text(), re.M))
  assert listed == set(jaxloss.__all__) - DOCUMENTED_ELSEWHERE


def test_every_public_function_has_a_doctest_example():
  missing = [n for n in jaxloss.__all__ if n not in DOCUMENTED_ELSEWHERE
             and ">>>" not in (inspect.getdoc(getattr(jaxloss, n)) or "")]
  assert not missing


def test_readme_catalogue_names_every_public_function():
  readme = (ROOT / "README.md").read_text()
  catalogue = readme[readme.index("## What is in it"):]
  catalogue = catalogue[:catalogue.index("\n## ", 1)]
  named = set(re.findall(r"`(\w+)`", catalogue))
  assert set(jaxloss.__all__) - DOCUMENTED_ELSEWHERE - {"ClassCounts"} <= named


def _documented_args(doc: str) -> set[str]:
  if "Args:" not in doc:
    return set()
  block = re.split(r"\n(?:Returns|Yields|Raises|Examples|References):", doc.split("Args:")[1])[0]
  return set(re.findall(r"^  (\w+)(?: \([^)]*\))?:", block, re.M))


def test_every_parameter_of_every_public_function_is_documented():
  problems = {}
  for name in jaxloss.__all__:
    obj = getattr(jaxloss, name)
    if not callable(obj) or isinstance(obj, type):
      continue
    params = set(inspect.signature(obj).parameters)
    documented = _documented_args(inspect.getdoc(obj) or "")
    if params != documented:
      problems[name] = {"undocumented": sorted(params - documented),
                        "not parameters": sorted(documented - params)}
  assert not problems


def _markdown_files() -> list[pathlib.Path]:
  return [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def _python_blocks(path: pathlib.Path) -> list[tuple[int, str]]:
  text = path.read_text()
  return [(text[:m.start()].count("\n") + 1, m.group(1))
          for m in re.finditer(r"^```python\n(.*?)^```", text, re.M | re.S)]


_BLOCKS = [(p, line, code) for p in _markdown_files() for line, code in _python_blocks(p)]


@pytest.mark.parametrize(("path", "line", "code"), _BLOCKS,
                         ids=[f"{p.name}:{line}" for p, line, _ in _BLOCKS])
def test_every_guide_code_block_runs_on_its_own(path, line, code):
  """Each block runs in a fresh namespace, so a reader can copy it as it is."""
  # pytest's own checker, for the NUMBER flag the package doctests use too.
  flags = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE | _pytest_doctest._get_number_flag()
  parser = doctest.DocTestParser()
  test = parser.get_doctest(code, {}, f"{path.name}:{line}", str(path), line - 1)
  assert test.examples, f"{path.name}:{line}: a python block without >>> examples"
  runner = doctest.DocTestRunner(checker=_pytest_doctest._get_checker(), optionflags=flags)
  runner.run(test, out=lambda s: pytest.fail(s, pytrace=False))
  assert runner.failures == 0
