"""A griffe extension: the reST bits of our docstrings as Markdown for mkdocstrings.

The docstrings follow optax (Google style with ``.. math::`` blocks and
``:func:`` roles) so they read well in ``help()``; this rewrites, for the API
reference only, ``.. math::`` blocks into MathJax display maths, ``:math:`` into
inline maths and ``:func:``/``:class:`` roles into cross-references.
"""

from __future__ import annotations

import re
import textwrap

import griffe

_ROLE = re.compile(r":(?:func|class|meth|data|mod|attr):`~?([^`]+)`")
_INLINE_MATH = re.compile(r":math:`([^`]+)`")


def _role(match: re.Match[str]) -> str:
  target = match.group(1)
  if target.startswith("jaxloss.") or "." not in target:
    name = target.removeprefix("jaxloss.")
    return f"[`{name}`][jaxloss.{name}]"
  return f"`{target}`"


def _math_blocks(text: str) -> str:
  lines, out, i = text.splitlines(), [], 0
  while i < len(lines):
    line = lines[i]
    stripped = line.lstrip()
    if stripped.startswith(".. math::"):
      indent = line[:len(line) - len(stripped)]
      body = [stripped.removeprefix(".. math::").strip()]
      i += 1
      while i < len(lines) and (not lines[i].strip() or
                                len(lines[i]) - len(lines[i].lstrip()) > len(indent)):
        body.append(lines[i])
        i += 1
      maths = textwrap.dedent("\n".join(body)).strip()
      out += [f"{indent}\\[", *(indent + m for m in maths.splitlines()), f"{indent}\\]", ""]
      continue
    out.append(line)
    i += 1
  return "\n".join(out)


def markdown(text: str) -> str:
  """The docstring text with reST maths and roles rewritten for Markdown."""
  text = _math_blocks(text)
  text = _INLINE_MATH.sub(lambda m: f"\\({m.group(1)}\\)", text)
  return _ROLE.sub(_role, text)


class ReSTMathToMarkdown(griffe.Extension):
  """Rewrites every docstring as it is loaded."""

  def on_instance(self, *, obj: griffe.Object, **kwargs) -> None:
    if obj.docstring is not None:
      obj.docstring.value = markdown(obj.docstring.value)
