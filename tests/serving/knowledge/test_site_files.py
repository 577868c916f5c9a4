"""select_files: a documentation site goes in as it is — content pages selected, assets and the
generator's boilerplate skipped with a reason, the user's globs respected."""

from __future__ import annotations

from pathlib import Path

from serving.knowledge.site_files import detect_generator, select_files
from tests.serving.knowledge.doc_sites import build_mkdocs_site, build_sphinx_site


def sources(selection) -> list[str]:  # type: ignore[no-untyped-def]
    return sorted(f.source for f in selection.files)


def test_a_sphinx_build_selects_its_pages_and_skips_everything_else(tmp_path: Path) -> None:
    site = build_sphinx_site(tmp_path / "html")
    assert detect_generator(site) == "sphinx"
    selection = select_files([site])
    assert sources(selection) == ["faq.html", "index.html", "quickstart.html", "usage/prune.html"]
    skipped = {s.source: s.reason for s in selection.skipped}
    assert skipped["_sources/faq.rst.txt"] == "site_boilerplate"  # the same text twice otherwise
    assert skipped["genindex.html"] == skipped["search.html"] == "site_boilerplate"
    assert skipped["_static/basic.css"] == skipped["searchindex.js"] == "site_boilerplate"
    assert skipped["_images/diagram.png"] == "site_boilerplate"
    assert skipped[".buildinfo"] == "hidden"
    assert selection.generators == {str(site): "sphinx"}
    assert len(selection.files) + len(selection.skipped) == sum(
        1 for p in site.rglob("*") if p.is_file()
    )


def test_an_mkdocs_build_is_detected_and_its_search_index_skipped(tmp_path: Path) -> None:
    site = build_mkdocs_site(tmp_path / "site")
    assert detect_generator(site) == "mkdocs"
    selection = select_files([site])
    assert sources(selection) == ["index.html", "tokens/index.html"]
    skipped = {s.source: s.reason for s in selection.skipped}
    # search_index.json would otherwise be read as a forum export and fail.
    assert skipped["search/search_index.json"] == "site_boilerplate"
    assert skipped["404.html"] == skipped["sitemap.xml"] == "site_boilerplate"


def test_a_plain_folder_skips_only_what_is_not_a_document(tmp_path: Path) -> None:
    (tmp_path / "docs" / "img").mkdir(parents=True)
    (tmp_path / "docs" / "guide.md").write_text("# Guide\n\nHello.")
    (tmp_path / "docs" / "notes.txt").write_text("Notes.")
    (tmp_path / "docs" / "img" / "logo.svg").write_text("<svg/>")
    (tmp_path / "docs" / "style.css").write_text("body{}")
    selection = select_files([tmp_path / "docs"])
    assert detect_generator(tmp_path / "docs") is None
    assert sources(selection) == ["guide.md", "notes.txt"]
    assert selection.skip_counts() == {"not_a_document": 2}


def test_include_and_exclude_globs(tmp_path: Path) -> None:
    site = build_sphinx_site(tmp_path / "html")
    excluded = select_files([site], exclude=["usage/*", "index.html"])
    assert sources(excluded) == ["faq.html", "quickstart.html"]
    assert sources(select_files([site], include=["*.html"])) == sources(select_files([site]))
    # The reStructuredText sources instead of the HTML: without the generator's defaults.
    included = select_files([site], include=["_sources/*.rst.txt"], site_defaults=False)
    assert sources(included) == [
        "_sources/faq.rst.txt",
        "_sources/quickstart.rst.txt",
        "_sources/usage/prune.rst.txt",
    ]
    everything = select_files([site], site_defaults=False)
    assert "genindex.html" in sources(everything) and "_sources/faq.rst.txt" in sources(everything)


def test_named_files_are_always_taken_and_missing_ones_reported(tmp_path: Path) -> None:
    (tmp_path / "logo.png").write_bytes(b"\x89PNG")
    (tmp_path / "a.md").write_text("# A")
    selection = select_files([tmp_path / "logo.png", tmp_path / "nope.md", str(tmp_path / "*.md")])
    # Named explicitly, the PNG is the user's choice: it fails at parsing, with its reason.
    assert sources(selection) == ["a.md", "logo.png"]
    assert selection.missing == [str(tmp_path / "nope.md")]
    assert select_files([str(tmp_path / "*.nothing")]).missing == [str(tmp_path / "*.nothing")]


def test_a_file_reached_twice_is_selected_once(tmp_path: Path) -> None:
    (tmp_path / "a.md").write_text("# A")
    selection = select_files([tmp_path, tmp_path / "a.md", str(tmp_path / "*.md")])
    assert sources(selection) == ["a.md"]


def test_an_asciidoc_build_skips_the_page_sources_beside_the_html(tmp_path: Path) -> None:
    meta = '<html><head><meta name="generator" content="AsciiDoc 10.2.0" /></head><body>{}</body></html>'
    (tmp_path / "git.html").write_text(
        meta.format("<h1>git</h1><p>The stupid content tracker.</p>")
    )
    (tmp_path / "index.html").symlink_to(tmp_path / "git.html")
    (tmp_path / "git-log.html").write_text(meta.format("<h1>git-log</h1><p>Show commit logs.</p>"))
    (tmp_path / "git-log.txt").write_text("git-log(1)\n==========\n\nShow commit logs.\n")
    (tmp_path / "config.txt").write_text("include::config/core.txt[]\n")
    selection = select_files([tmp_path])
    assert detect_generator(tmp_path) == "asciidoc"
    # index.html is git.html under another name: one document, not two.
    assert sources(selection) == ["git-log.html", "git.html"]
    assert {s.source: s.reason for s in selection.skipped} == {
        "config.txt": "site_boilerplate",
        "git-log.txt": "site_boilerplate",
    }
