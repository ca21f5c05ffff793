"""The docs cover the whole public API (``mkdocs build --strict`` itself runs in .ci/run)."""

from __future__ import annotations

import inspect
import pathlib
import re

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
