"""MkDocs hook: links that leave docs/ on GitHub (to the repository's root files) point to the
site's own page for that file."""

import re

# Root files that the site includes as pages (docs/security.md includes SECURITY.md).
_ROOT_PAGES = {"SECURITY.md": "security.md", "README.md": "index.md"}
_LINK = re.compile(r"\]\(\.\./(" + "|".join(map(re.escape, _ROOT_PAGES)) + r")(#[^)]*)?\)")


def on_page_markdown(markdown: str, **_: object) -> str:
    return _LINK.sub(lambda m: f"]({_ROOT_PAGES[m.group(1)]}{m.group(2) or ''})", markdown)
