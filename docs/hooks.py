"""mkdocs hook: the README is the guide page, so its repository-relative image links
(``docs/images/...``) are rewritten relative to the docs folder."""

from __future__ import annotations


def on_page_content(html: str, page, **kwargs) -> str:
  # After Markdown rendering: the README arrives through a snippet include.
  return html.replace('src="docs/images/', 'src="images/')
