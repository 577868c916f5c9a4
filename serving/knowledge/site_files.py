"""Which files of a folder are documents: a documentation site goes in as it is.

A folder (or glob) is walked and every file is either selected or skipped with a reason:
assets (images, fonts, stylesheets, scripts), hidden files, the user's `exclude` globs, and the
boilerplate a site generator leaves behind (Sphinx's `_sources/` copies and `genindex.html`,
MkDocs' `search/`, Docusaurus and Hugo tag and pagination pages, …). The generator is detected
from the marks it leaves (a `<meta name="generator">`, `searchindex.js`, `search/search_index.json`).
Files named one by one are always selected: the user asked for them.
"""

from __future__ import annotations

import fnmatch
import glob
import re
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Literal

from serving.knowledge.parsers import SUPPORTED_FORMATS, document_suffix

SkipReason = Literal["not_a_document", "site_boilerplate", "excluded", "hidden"]
Generator = Literal["sphinx", "mkdocs", "docusaurus", "hugo", "jekyll", "docbook", "asciidoc"]

#: Per generator: folders (any depth) and file globs (relative POSIX paths) that are generated
#: chrome rather than content. Sources: each generator's output layout.
BOILERPLATE: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "sphinx": (
        ("_sources", "_static", "_images", "_modules", ".doctrees"),
        (
            "genindex.html",
            "genindex-*.html",
            "search.html",
            "py-modindex.html",
            "np-modindex.html",
            "searchindex.js",
            "objects.inv",
            ".buildinfo",
        ),
    ),
    "mkdocs": (
        ("search", "assets", "css", "js", "fonts"),
        ("404.html", "sitemap.xml", "sitemap.xml.gz"),
    ),
    "docusaurus": (
        ("assets", "search", "tags", "page"),
        ("404.html", "sitemap.xml", "*/tags/*", "blog/archive/*", "blog/page/*"),
    ),
    "hugo": (
        ("tags", "categories", "page", "css", "js", "fonts"),
        ("404.html", "index.xml", "*/index.xml", "sitemap.xml"),
    ),
    "jekyll": (("assets",), ("404.html", "feed.xml", "sitemap.xml")),
    # DocBook XSL's generated index pages: ix01.html, ix02.html …
    "docbook": ((), ("ix[0-9][0-9].html",)),
    # AsciiDoc builds keep each page's source (`git-log.txt`) and its include fragments next to
    # the HTML: the same text again, or pieces of it.
    "asciidoc": ((), ("*.txt",)),
}

_GENERATOR_META = re.compile(rb"<meta\s+name=[\"']generator[\"']\s+content=[\"']([^\"']+)", re.I)
_META_NAMES: tuple[tuple[bytes, Generator], ...] = (
    (b"sphinx", "sphinx"),
    (b"mkdocs", "mkdocs"),
    (b"docusaurus", "docusaurus"),
    (b"hugo", "hugo"),
    (b"jekyll", "jekyll"),
    (b"docbook", "docbook"),
    (b"asciidoc", "asciidoc"),
)


@dataclass(frozen=True)
class SelectedFile:
    """A file to ingest and the document name it gets (its path relative to the folder given)."""

    path: Path
    source: str


@dataclass(frozen=True)
class SkippedFile:
    path: Path
    source: str
    reason: SkipReason


@dataclass
class FileSelection:
    files: list[SelectedFile] = field(default_factory=list)
    skipped: list[SkippedFile] = field(default_factory=list)
    #: Folder given → the site generator detected in it.
    generators: dict[str, Generator] = field(default_factory=dict)
    #: Arguments that matched nothing on disk.
    missing: list[str] = field(default_factory=list)

    def skip_counts(self) -> Counter[str]:
        return Counter(s.reason for s in self.skipped)


def select_files(
    paths: Sequence[str | Path],
    *,
    include: Sequence[str] = (),
    exclude: Sequence[str] = (),
    site_defaults: bool = True,
) -> FileSelection:
    """Expand files, folders (recursively) and globs into the documents to ingest.

    `include`/`exclude` are globs on the path relative to the folder given (`*` crosses folders;
    a pattern without `/` also matches the file name alone): with `include`, only matching files
    of a folder are taken; `exclude` always wins. `site_defaults=False` keeps generator
    boilerplate (e.g. to take Sphinx's `_sources/` instead of its HTML).
    """
    selection = FileSelection()
    seen: set[Path] = set()

    def add(item: SelectedFile | SkippedFile) -> None:
        key = item.path.resolve()
        if key in seen:
            return
        seen.add(key)
        if isinstance(item, SelectedFile):
            selection.files.append(item)
        else:
            selection.skipped.append(item)

    for raw in paths:
        text = str(raw)
        if any(c in text for c in "*?["):
            matches = sorted(Path(m) for m in glob.glob(text, recursive=True))
            if not matches:
                selection.missing.append(text)
            for match in matches:
                if match.is_dir():
                    _walk_folder(match, include, exclude, site_defaults, selection, add)
                elif match.is_file():
                    add(_judge(match, match.name, include, exclude, (), ()))
            continue
        path = Path(text)
        if path.is_dir():
            _walk_folder(path, include, exclude, site_defaults, selection, add)
        elif path.is_file():
            add(SelectedFile(path, path.name))  # named explicitly: always taken
        else:
            selection.missing.append(text)
    return selection


def detect_generator(root: Path) -> Generator | None:
    """The site generator that built `root`, from the marks it leaves; None for plain folders."""
    index = root / "index.html"
    if index.is_file():
        with index.open("rb") as handle:
            head = handle.read(16384)
        match = _GENERATOR_META.search(head)
        if match:
            name = match.group(1).lower()
            for needle, generator in _META_NAMES:
                if needle in name:
                    return generator
    if (root / "searchindex.js").is_file() or (root / "_sources").is_dir():
        return "sphinx"
    if (root / "search" / "search_index.json").is_file():
        return "mkdocs"
    if index.is_file() and (root / "index.xml").is_file():
        return "hugo"
    return None


def _walk_folder(
    root: Path,
    include: Sequence[str],
    exclude: Sequence[str],
    site_defaults: bool,
    selection: FileSelection,
    add: Callable[[SelectedFile | SkippedFile], None],
) -> None:
    generator = detect_generator(root)
    if generator is not None:
        selection.generators[str(root)] = generator
    folders, globs = BOILERPLATE.get(generator or "", ((), ())) if site_defaults else ((), ())
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        rel = path.relative_to(root).as_posix()
        add(_judge(path, rel, include, exclude, folders, globs))


def _judge(
    path: Path,
    rel: str,
    include: Sequence[str],
    exclude: Sequence[str],
    folders: Iterable[str],
    globs: Iterable[str],
) -> SelectedFile | SkippedFile:
    parts = PurePosixPath(rel).parts
    if _matches(rel, exclude) or (include and not _matches(rel, include)):
        return SkippedFile(path, rel, "excluded")
    if any(part.startswith(".") for part in parts):
        return SkippedFile(path, rel, "hidden")
    if any(part in set(folders) for part in parts[:-1]) or _matches(rel, globs):
        return SkippedFile(path, rel, "site_boilerplate")
    if document_suffix(rel) not in SUPPORTED_FORMATS:
        return SkippedFile(path, rel, "not_a_document")
    return SelectedFile(path, rel)


def _matches(rel: str, patterns: Iterable[str]) -> bool:
    name = PurePosixPath(rel).name
    for pattern in patterns:
        pattern = pattern.removeprefix("./")
        if fnmatch.fnmatch(rel, pattern) or fnmatch.fnmatch(rel, pattern.rstrip("/") + "/*"):
            return True
        if "/" not in pattern and fnmatch.fnmatch(name, pattern):
            return True
    return False
