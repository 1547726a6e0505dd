"""The documentation cannot rot: every ```python block of the site's pages (mkdocs.yml's nav)
and of README.md runs, each page's blocks in order in one fresh interpreter, as a reader would
paste them into one script. A block that cannot run (it needs a server, Django's settings, or is
a fragment) carries ``<!-- not-run: reason -->`` on the line before its fence and is listed in
NOT_RUN below, so the exceptions stay few and visible."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"

# Every block marked not-run, by page and reason. Marking one more means adding it here.
_DJANGO_SETTINGS = (
    "Django settings, a fragment (Django 6 needs Python 3.12; tests/test_django.py runs a project)"
)
_DJANGO_PROJECT = "needs a configured Django project (tests/test_django.py runs one)"
NOT_RUN: dict[str, list[str]] = {
    "README.md": [_DJANGO_SETTINGS, _DJANGO_PROJECT],
    "integrations.md": [_DJANGO_SETTINGS, _DJANGO_PROJECT],
    "scheduling.md": ["a fragment: oq and sid as in the first example"],
    "workflows.md": ["three shapes over placeholder functions (the next example runs one)"],
}

# The site's hook (README sections included into pages), as mkdocs runs it.
_spec = importlib.util.spec_from_file_location("omniq_docs_hooks", DOCS / "hooks.py")
assert _spec is not None and _spec.loader is not None
hooks = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(hooks)

_FENCE = re.compile(r"^```(\S*)\s*$")
_NOT_RUN = re.compile(r"^<!--\s*not-run:\s*(.+?)\s*-->$")
_SNIPPET = re.compile(r'^--8<-- "([^"]+)"$')


@dataclass(frozen=True)
class Block:
    page: str
    line: int
    code: str
    not_run: str | None  # the reason, when marked


def _nav_pages(nav: list[object]) -> list[str]:
    pages: list[str] = []
    for entry in nav:
        items = entry.values() if isinstance(entry, dict) else [entry]
        for item in items:
            pages.extend(_nav_pages(item) if isinstance(item, list) else [str(item)])
    return pages


def site_pages() -> list[str]:
    """The site's pages (relative to docs/), in nav order."""
    config = yaml.safe_load((ROOT / "mkdocs.yml").read_text())
    return _nav_pages(config["nav"])


def _source(path: Path) -> list[str]:
    """A page's lines with its includes expanded: README sections (docs/hooks.py) and snippets
    (``--8<-- "FILE"``, pymdownx.snippets)."""
    text = path.read_text()
    if path.parent == DOCS:
        text = hooks.include_readme(text)
    lines: list[str] = []
    for line in text.splitlines():
        included = _SNIPPET.match(line)
        lines.extend(_source(ROOT / included.group(1)) if included else [line])
    return lines


def python_blocks(name: str, path: Path) -> list[Block]:
    blocks: list[Block] = []
    lines = _source(path)
    i = 0
    while i < len(lines):
        fence = _FENCE.match(lines[i])
        if not fence:
            i += 1
            continue
        end = next(j for j in range(i + 1, len(lines)) if lines[j].startswith("```"))
        if fence.group(1) == "python":
            marked = _NOT_RUN.match(lines[i - 1].strip()) if i else None
            code = "\n".join(lines[i + 1 : end]) + "\n"
            blocks.append(Block(name, i + 2, code, marked.group(1) if marked else None))
        i = end + 1
    return blocks


def all_pages() -> dict[str, Path]:
    pages = {"README.md": ROOT / "README.md"}
    pages.update({name: DOCS / name for name in site_pages()})
    return pages


def _runnable_pages() -> list[str]:
    return [
        name
        for name, path in all_pages().items()
        if any(block.not_run is None for block in python_blocks(name, path))
    ]


# Runs in the child: each block compiled under its page and line (tracebacks point at the docs),
# in __main__'s namespace like a pasted script, so functions defined there travel by value.
_RUNNER = """\
import json, sys
for _block in json.load(open(sys.argv[1])):
    exec(compile(_block["code"], _block["where"], "exec"), globals())
"""


def test_every_page_is_on_the_site() -> None:
    on_site = set(site_pages())
    pages = {p.relative_to(DOCS).as_posix() for p in DOCS.rglob("*.md")}
    assert pages - on_site == set(), "pages missing from mkdocs.yml's nav"
    assert on_site - pages == set(), "nav entries without a page"


def test_not_run_blocks_are_the_listed_ones() -> None:
    marked: dict[str, list[str]] = {}
    for name, path in all_pages().items():
        for block in python_blocks(name, path):
            if block.not_run is not None:
                marked.setdefault(name, []).append(block.not_run)
    assert marked == NOT_RUN


@pytest.mark.parametrize("page", _runnable_pages())
def test_python_blocks_run(page: str, tmp_path: Path) -> None:
    blocks = [
        {"where": f"{page}:{block.line}", "code": block.code}
        for block in python_blocks(page, all_pages()[page])
        if block.not_run is None
    ]
    (tmp_path / "blocks.json").write_text(json.dumps(blocks))
    (tmp_path / "runner.py").write_text(_RUNNER)
    # A reader's clean environment: no OMNIQ_* settings, files land in the temporary directory.
    env = {k: v for k, v in os.environ.items() if not k.startswith("OMNIQ_")}
    env["HOME"] = str(tmp_path)
    proc = subprocess.run(
        [sys.executable, "runner.py", "blocks.json"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, f"{page}: a code block failed\n{proc.stderr[-3000:]}"
