"""mkdocs hooks: the README is the guide's front page (``docs/index.md`` includes it).

Its repository-relative links (``docs/reductions.md``, ``docs/images/...``) are
rewritten relative to the docs folder before mkdocs resolves them.
"""

from __future__ import annotations

import re

_SNIPPET = re.compile(r'^--8<-- "README.md"\s*$', re.M)


def on_page_markdown(markdown: str, page, **kwargs) -> str:
  if page.file.src_uri != "index.md":
    return markdown
  # The include is expanded by pymdownx.snippets later; expand it here so the links
  # can be rewritten while they are still Markdown.
  if _SNIPPET.search(markdown):
    with open("README.md", encoding="utf-8") as f:
      markdown = _SNIPPET.sub(lambda _: f.read(), markdown)
  return markdown.replace("](docs/", "](")
