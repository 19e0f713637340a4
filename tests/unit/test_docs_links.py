"""Every relative link in README.md and docs/*.md reaches an existing file, and its #anchor a heading there.

Code comments point at docs/design.md anchors, so a renamed heading must fail here, not silently 404.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

# Anchors code comments link to: a page edit that renames one of these headings breaks those comments.
DESIGN_ANCHORS = (
    "latest-wins",
    "staleness-and-watermarks",
    "file-outcomes",
    "row-classification",
    "batch-lock",
    "mapping-sync-safety-rules",
    "stale-duty-cleanup",
    "retries-and-attempts",
    "exit-codes",
    "command-line",
    "containers",
    "input-format",
)

_FENCE = re.compile(r"^(```|~~~)")
_INLINE_CODE = re.compile(r"`[^`]*`")
_LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
_HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
_HTML_ANCHOR = re.compile(r"<a\s+(?:id|name)=\"([^\"]+)\"")
_EXTERNAL = re.compile(r"^[a-z][a-z0-9+.-]*:", re.IGNORECASE)


def slug(heading: str) -> str:
    """The anchor GitHub gives a heading: lower case, punctuation dropped, spaces as hyphens."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link in a heading keeps its text only
    text = re.sub(r"[^\w\- ]", "", text.strip().lower())
    return text.replace(" ", "-")


def _prose_lines(text: str) -> Iterator[tuple[int, str]]:
    """Lines outside fenced code blocks, with their 1-based numbers."""
    fenced = False
    for number, line in enumerate(text.splitlines(), start=1):
        if _FENCE.match(line.strip()):
            fenced = not fenced
            continue
        if not fenced:
            yield number, line


def anchors_of(text: str) -> set[str]:
    """Every anchor a page offers: its headings' slugs (repeats numbered as GitHub does) and <a id>."""
    found: set[str] = set()
    seen: dict[str, int] = {}
    for _, line in _prose_lines(text):
        found.update(_HTML_ANCHOR.findall(line))
        heading = _HEADING.match(line)
        if heading:
            base = slug(heading.group(2))
            count = seen.get(base, 0)
            seen[base] = count + 1
            found.add(base if count == 0 else f"{base}-{count}")
    return found


def links_of(text: str) -> Iterator[tuple[int, str]]:
    """(line number, target) of every link outside code; external links (https:, mailto:) left out."""
    for number, line in _prose_lines(text):
        for target in _LINK.findall(_INLINE_CODE.sub("", line)):
            if not _EXTERNAL.match(target):
                yield number, target


def broken_links(page: Path, root: Path) -> list[str]:
    """Each link of `page` that does not resolve, as 'page:line: target: why'."""
    problems = []
    text = page.read_text(encoding="utf-8")
    for number, target in links_of(text):
        path_part, _, anchor = target.partition("#")
        destination = (page.parent / path_part).resolve() if path_part else page.resolve()
        where = f"{page.relative_to(root)}:{number}: {target}"
        try:
            relative = destination.relative_to(root.resolve()).as_posix()
        except ValueError:
            problems.append(f"{where}: points outside the repository")
            continue
        if not destination.exists():
            problems.append(f"{where}: no such file ({relative})")
            continue
        offered = anchors_of(destination.read_text(encoding="utf-8")) if destination.suffix == ".md" else set()
        if anchor and destination.suffix == ".md" and anchor not in offered:
            problems.append(f"{where}: no heading with anchor #{anchor}")
    return problems


def documentation_pages() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


@pytest.mark.parametrize("page", documentation_pages(), ids=lambda p: p.relative_to(ROOT).as_posix())
def test_every_relative_link_resolves(page: Path) -> None:
    assert broken_links(page, ROOT) == []


def test_design_page_keeps_the_anchors_code_comments_use() -> None:
    anchors = anchors_of((ROOT / "docs" / "design.md").read_text(encoding="utf-8"))
    assert [anchor for anchor in DESIGN_ANCHORS if anchor not in anchors] == []


def test_the_checker_reports_a_missing_file_and_a_missing_anchor(tmp_path: Path) -> None:
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "a.md").write_text("# A page\n\n## Latest wins\n\n## Latest wins\n", encoding="utf-8")
    page = tmp_path / "README.md"
    page.write_text(
        "[ok](docs/a.md#latest-wins) [repeat](docs/a.md#latest-wins-1) [web](https://example.com/x.md)\n"
        "[gone](docs/missing.md) [bad anchor](docs/a.md#latest) [self](#nowhere)\n"
        "`[in code](docs/none.md)`\n```\n[fenced](docs/none.md)\n```\n"
        "[outside](../x.md)\n",
        encoding="utf-8",
    )
    problems = broken_links(page, tmp_path)
    assert [p.split(": ", 2)[1] for p in problems] == [
        "docs/missing.md",
        "docs/a.md#latest",
        "#nowhere",
        "../x.md",
    ]


def test_slug_matches_githubs_anchors() -> None:
    assert slug("Staleness and watermarks") == "staleness-and-watermarks"
    assert slug("From the predecessor's `.env`") == "from-the-predecessors-env"
    assert slug("Why not? `check`") == "why-not-check"
    assert slug("Running with `func start` and Azurite") == "running-with-func-start-and-azurite"
