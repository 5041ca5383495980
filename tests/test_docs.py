"""The documentation holds together: README.md and docs/*.md.

Every relative link points at a file that exists, and every anchor at a heading of
that file (anchors as GitHub makes them from headings). Every page in docs/ can be
reached from the README, and the README stays a front page: short, with a link to
each reader's page.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import unquote

import pytest

REPO = Path(__file__).resolve().parent.parent
README = REPO / "README.md"
FRONT_PAGE_LIMIT = 10_000  # bytes: above this the README is a manual again, not a front door
READER_PAGES = ("installers", "issuers", "auditors", "operations", "performance", "protocol")

FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")
HEADING = re.compile(r"^ {0,3}#{1,6}[ \t]+(.*?)(?:[ \t]+#+)?[ \t]*$")
CODE_SPAN = re.compile(r"(?<!`)(`+)(?!`)(.+?)(?<!`)\1(?!`)", re.DOTALL)
# [text](target) or ![alt](target), the text possibly holding one level of brackets;
# the target may be in <...> and may be followed by a "title".
LINK = re.compile(r"!?\[((?:[^\[\]]|\[[^\[\]]*\])*)\]\(\s*<?([^\s()<>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
SCHEME = re.compile(r"^(?:[A-Za-z][A-Za-z0-9+.-]*:|//)")


def documents() -> list[Path]:
    return [README, *sorted((REPO / "docs").glob("*.md"))]


def prose_lines(text: str) -> Iterator[str]:
    """The lines outside fenced code blocks (blank lines stand in for the code)."""
    fence: str | None = None
    for line in text.splitlines():
        match = FENCE.match(line)
        if fence is None and match:
            fence = match.group(1)
            yield ""
        elif fence is not None:
            closing = match and match.group(1)[0] == fence[0] and len(match.group(1)) >= len(fence)
            if closing and not line.strip().strip(fence[0]):
                fence = None
            yield ""
        else:
            yield line


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: the rendered text in lower case, without
    punctuation other than hyphens and underscores, each space a hyphen."""
    text = LINK.sub(lambda m: m.group(1), heading)
    text = CODE_SPAN.sub(lambda m: m.group(2).strip(), text)
    text = re.sub(r"<[^>]+>", "", text).strip().lower()
    kept = (
        ch
        for ch in text
        if ch in " -" or unicodedata.category(ch)[0] in "LMN" or unicodedata.category(ch) == "Pc"
    )
    return "".join(kept).replace(" ", "-")


def anchors(text: str) -> set[str]:
    """The anchors of a document's headings; a repeated one gets -1, -2, ..."""
    seen: dict[str, int] = {}
    found: set[str] = set()
    for line in prose_lines(text):
        match = HEADING.match(line)
        if not match:
            continue
        base = slug(match.group(1))
        count = seen.get(base, 0)
        seen[base] = count + 1
        found.add(base if count == 0 else f"{base}-{count}")
    return found


def links(text: str) -> Iterator[str]:
    """The targets of the inline links outside code (fenced blocks and code spans)."""
    for paragraph in re.split(r"\n[ \t]*\n", "\n".join(prose_lines(text))):
        without_code = CODE_SPAN.sub("code", paragraph)
        for match in LINK.finditer(without_code):
            yield match.group(2)


def broken_links(doc: Path, root: Path) -> list[str]:
    """What is wrong with the relative links of one document, one message each."""
    problems = []
    name = doc.relative_to(root)
    root = root.resolve()
    for target in links(doc.read_text(encoding="utf-8")):
        if SCHEME.match(target):
            continue  # http:, https:, mailto:: not checked offline
        path_part, _, anchor = target.partition("#")
        dest = (doc.parent / unquote(path_part)).resolve() if path_part else doc
        if root not in (dest, *dest.parents):
            problems.append(f"{name}: {target}: leaves the repository")
        elif not dest.exists():
            problems.append(f"{name}: {target}: no such file")
        elif anchor:
            if dest.suffix != ".md" or not dest.is_file():
                problems.append(f"{name}: {target}: an anchor into something that is not a Markdown file")
            elif unquote(anchor) not in anchors(dest.read_text(encoding="utf-8")):
                problems.append(f"{name}: {target}: no heading with the anchor #{anchor}")
    return problems


def linked_pages(doc: Path) -> set[Path]:
    """The Markdown files a document links to."""
    pages = set()
    for target in links(doc.read_text(encoding="utf-8")):
        path_part = target.partition("#")[0]
        if path_part and not SCHEME.match(target) and path_part.endswith(".md"):
            pages.add((doc.parent / unquote(path_part)).resolve())
    return pages


@pytest.mark.parametrize("doc", documents(), ids=lambda p: str(p.relative_to(REPO)))
def test_every_relative_link_and_anchor_resolves(doc: Path) -> None:
    assert broken_links(doc, REPO) == []


def test_every_page_in_docs_is_reachable_from_the_readme() -> None:
    reached, todo = {README.resolve()}, [README.resolve()]
    while todo:
        for page in linked_pages(todo.pop()):
            if page not in reached and page.is_file():
                reached.add(page)
                todo.append(page)
    orphans = [p.name for p in documents() if p.resolve() not in reached]
    assert orphans == []


def test_the_readme_is_a_front_page() -> None:
    size = len(README.read_bytes())
    assert size < FRONT_PAGE_LIMIT, f"README.md is {size} bytes: move the detail to docs/"
    text = README.read_text(encoding="utf-8")
    for command in ("make demo", "make test"):
        assert command in text
    assert "```mermaid" in text, "the diagram"
    direct = linked_pages(README)
    for page in READER_PAGES:
        assert (REPO / "docs" / f"{page}.md").resolve() in direct, f"the README links no docs/{page}.md"


def test_slugs_follow_githubs_rules() -> None:
    assert slug("What `make demo` shows") == "what-make-demo-shows"
    assert (
        slug("7. Claim evaluation (`attest_core/evaluation.py`)")
        == "7-claim-evaluation-attest_coreevaluationpy"
    )
    assert slug("Payload v1 — what the device signs") == "payload-v1--what-the-device-signs"
    assert (
        slug("Broker logins and the ACL: a newly enrolled device")
        == "broker-logins-and-the-acl-a-newly-enrolled-device"
    )
    assert slug("See [the API](issuers.md) *now*") == "see-the-api-now"
    text = "# Title\n## Setup\n```sh\n# Setup\n```\n## Setup\n## Setup\n"
    assert anchors(text) == {"title", "setup", "setup-1", "setup-2"}


def test_the_checker_finds_broken_links_and_anchors(tmp_path: Path) -> None:
    root = tmp_path / "repo"
    (root / "docs").mkdir(parents=True)
    (root / "docs" / "page.md").write_text("# Page\n\n## A section\n", encoding="utf-8")
    (tmp_path / "outside.md").touch()
    doc = root / "README.md"
    doc.write_text(
        "[ok](docs/page.md) [ok](docs/page.md#a-section) [ok](#top) [web](https://example.org/x#y)\n"
        "`[in code](missing.md)`\n\n```\n[in a block](missing.md)\n```\n\n"
        "# Top\n\n[gone](docs/gone.md) [bad anchor](docs/page.md#no-such)\n[own anchor](#nowhere) "
        "[wrapped\ntext](docs/page.md#a-section) [out](../outside.md)\n",
        encoding="utf-8",
    )
    assert broken_links(doc, root) == [
        "README.md: docs/gone.md: no such file",
        "README.md: docs/page.md#no-such: no heading with the anchor #no-such",
        "README.md: #nowhere: no heading with the anchor #nowhere",
        "README.md: ../outside.md: leaves the repository",
    ]
