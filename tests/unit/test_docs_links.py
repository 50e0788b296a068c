"""README.md and docs/*.md stay within the repository: a clone anywhere can follow them.

A relative link must resolve to a file of the repository; any other ``../`` (a path in a
command or in prose, which are read from the repository root) leaves it, as the links into a
sibling ``shared/`` folder did.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[2]
DOCUMENTS = sorted([REPO / "README.md", *(REPO / "docs").glob("**/*.md")])

# [text](target "title"), ![alt](target), and reference definitions "[id]: target".
_INLINE_LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
_REFERENCE = re.compile(r"^\s{0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s|$)", re.MULTILINE)
_SCHEME = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*:")
_PARENT = re.compile(r"(?<![\w.])\.\./")


def _line(text: str, offset: int) -> int:
    return text.count("\n", 0, offset) + 1


def escapes(path: Path, root: Path = REPO) -> list[str]:
    """What in one markdown file points outside ``root``, or at nothing in it."""
    text = path.read_text(encoding="utf-8")
    problems = []
    spans = []
    for match in [*_INLINE_LINK.finditer(text), *_REFERENCE.finditer(text)]:
        target = match.group(1)
        spans.append(match.span(1))
        if _SCHEME.match(target) or target.startswith("#"):
            continue
        resolved = (path.parent / target.split("#", 1)[0]).resolve()
        where = f"{path.relative_to(root)}:{_line(text, match.start(1))}"
        if not resolved.is_relative_to(root):
            problems.append(f"{where}: link {target} leaves the repository")
        elif not resolved.exists():
            problems.append(f"{where}: link {target} names nothing in the repository")
    # Link targets checked above are blanked; what is left is prose and code.
    for start, end in spans:
        text = text[:start] + " " * (end - start) + text[end:]
    for match in _PARENT.finditer(text):
        line = text.splitlines()[_line(text, match.start()) - 1].strip()
        problems.append(f"{path.relative_to(root)}:{_line(text, match.start())}: {line}")
    return problems


def test_the_documents_exist() -> None:
    assert REPO / "README.md" in DOCUMENTS
    assert REPO / "docs" / "design.md" in DOCUMENTS
    assert REPO / "docs" / "evaluation-protocol.md" in DOCUMENTS


@pytest.mark.parametrize("path", DOCUMENTS, ids=lambda p: str(p.relative_to(REPO)))
def test_no_link_or_path_leaves_the_repository(path: Path) -> None:
    assert escapes(path) == []


@pytest.mark.parametrize(
    ("text", "found"),
    [
        ("The design is in `../shared/DESIGN.md`.", True),
        ("reco replay ../shared/data/x.csv", True),
        ("```bash\ncat ../outside\n```", True),
        ("[design](../../elsewhere/DESIGN.md)", True),
        ("[missing](no-such-file.md)", True),
        ('[up](../README.md "the README")', False),
        ("[design](design.md#the-data-path) and [top](#datasets)", False),
        ("<https://grouplens.org/datasets/movielens/100k/> and ./tools/tune.py", False),
        ("[ref]: ../README.md", False),
        ("[ref]: ../../outside.md", True),
    ],
)
def test_the_check_tells_inside_from_outside(tmp_path: Path, text: str, found: bool) -> None:
    # A repository of its own: README.md, docs/design.md, tools/tune.py, and the probe in docs/.
    for name in ("README.md", "docs/design.md", "tools/tune.py"):
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_text("x\n")
    probe = tmp_path / "docs" / "probe.md"
    probe.write_text(text + "\n", encoding="utf-8")
    assert bool(escapes(probe, tmp_path)) is found, escapes(probe, tmp_path)
