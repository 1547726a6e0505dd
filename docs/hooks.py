"""MkDocs hook: the site's pages taken from README.md include its sections at build time (one
text, no copy to drift), and links that leave docs/ on GitHub point to the site's own pages."""

import re
from pathlib import Path

README = Path(__file__).resolve().parent.parent / "README.md"

# Root files that the site shows as pages (docs/security.md includes SECURITY.md).
_ROOT_PAGES = {"SECURITY.md": "security.md", "README.md": "index.md"}
_UP_LINK = re.compile(r"\]\(\.\./(" + "|".join(map(re.escape, _ROOT_PAGES)) + r")(#[^)]*)?\)")
# `<!-- README: Quick start -->` stands for that section (heading and body); `<!-- README -->`
# for the text above the first section.
_INCLUDE = re.compile(r"^<!-- README(?:: (.+?))? -->$", re.MULTILINE)


def readme_sections() -> dict[str, str]:
    """README.md's text by section heading ("" for the text above the first one)."""
    first, *rest = re.split(r"(?m)^## ", README.read_text())
    sections = {"": first.split("\n", 1)[1].strip() + "\n"}
    for part in rest:
        heading = part.split("\n", 1)[0]
        sections[heading] = "## " + part.rstrip() + "\n"
    return sections


def include_readme(markdown: str) -> str:
    """Expand the README markers of a page at the root of docs/, with README's links rebased."""
    if not _INCLUDE.search(markdown):
        return markdown
    sections = readme_sections()

    def section(match: re.Match[str]) -> str:
        name = match.group(1) or ""
        if name not in sections:
            raise KeyError(f"README.md has no section {name!r}")
        text = sections[name]
        return re.sub(r"\]\(docs/", "](", text).replace("](SECURITY.md", "](security.md")

    return _INCLUDE.sub(section, markdown)


def on_page_markdown(markdown: str, **_: object) -> str:
    markdown = include_readme(markdown)
    return _UP_LINK.sub(lambda m: f"]({_ROOT_PAGES[m.group(1)]}{m.group(2) or ''})", markdown)
