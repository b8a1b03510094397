"""The README and the pages under docs/ link to each other by file and heading: every relative
link must name a file that exists and, where it has one, a heading that file has (as GitHub
makes anchors of headings)."""

from __future__ import annotations

import re
from pathlib import Path

from conftest import REPO

PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]


def anchors(page: Path) -> set[str]:
    found = set()
    fenced = False
    for line in page.read_text().splitlines():
        if line.startswith("```"):
            fenced = not fenced
        m = None if fenced else re.match(r"#+ (.*)", line)
        if m:
            found.add(re.sub(r"[^\w\- ]", "", m.group(1).strip().lower()).replace(" ", "-"))
    return found


def test_every_relative_link_reaches_its_file_and_heading() -> None:
    broken = []
    links = 0
    for page in PAGES:
        for target in re.findall(r"\]\(([^)\s]+)\)", page.read_text()):
            if re.match(r"[a-z]+:", target):
                continue  # not a file of ours
            links += 1
            path, _, anchor = target.partition("#")
            dest = (page.parent / path).resolve() if path else page
            if not dest.exists():
                broken.append(f"{page.name}: {target} (no such file)")
            elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
                broken.append(f"{page.name}: {target} (no such heading)")
    assert links > 40  # the pages do link to each other
    assert broken == []


def test_the_readme_is_short_and_every_docs_page_is_reachable_from_it() -> None:
    readme = (REPO / "README.md").read_text()
    assert len(readme.splitlines()) < 120
    linked = set(re.findall(r"\]\(docs/([\w.-]+\.md)", readme))
    assert {p.name for p in (REPO / "docs").glob("*.md")} <= linked
