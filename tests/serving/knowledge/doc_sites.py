"""Small documentation-site builds in the shapes real generators write (Sphinx, MkDocs): content
pages wrapped in the generator's chrome, plus the assets and boilerplate a folder ingest must skip."""

from __future__ import annotations

from pathlib import Path

SPHINX_PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8" />
<meta name="generator" content="Docutils 0.19: https://docutils.sourceforge.io/" />
<title>{title} &#8212; Quillon 2.1 documentation</title>
<link rel="stylesheet" href="_static/pygments.css" /><script src="_static/doctools.js"></script>
</head><body>
<div class="related" role="navigation" aria-label="related navigation"><h3>Navigation</h3>
<ul><li><a href="genindex.html">index</a></li><li><a href="faq.html">next</a> |</li></ul></div>
<div class="document"><div class="documentwrapper"><div class="bodywrapper">
<div class="body" role="main">
<section id="page"><h1>{title}<a class="headerlink" href="#page" title="Permalink">¶</a></h1>
{body}
</section></div></div></div>
<div class="sphinxsidebar" role="navigation" aria-label="main navigation"><div class="sphinxsidebarwrapper">
<h3>Quick search</h3><div class="searchformwrapper"><form class="search" action="search.html">
<input type="text" name="q" /></form></div>
<h3>Table of Contents</h3><ul><li><a href="quickstart.html">Quick start</a></li>
<li><a href="faq.html">FAQ</a></li></ul></div></div></div>
<div class="footer">&#169; Copyright 2024, The Quillon Team. Created using Sphinx 5.3.0.</div>
</body></html>
"""

SPHINX_PAGES = {
    "index.html": (
        "Quillon documentation",
        """<div class="toctree-wrapper compound"><ul>
<li class="toctree-l1"><a class="reference internal" href="quickstart.html">Quick start</a></li>
<li class="toctree-l1"><a class="reference internal" href="faq.html">Frequently asked questions</a></li>
<li class="toctree-l1"><a class="reference internal" href="usage/prune.html">quillon prune</a></li>
</ul></div>""",
    ),
    "quickstart.html": (
        "Quick start",
        """<p>Quillon keeps versioned copies of your files in a repository.</p>
<section id="first"><h2>Your first backup<a class="headerlink" href="#first">¶</a></h2>
<p>Run <code>quillon init /srv/repo</code> once, then <code>quillon create /srv/repo::today ~/Documents</code>
every day. The first run copies everything; later runs store only what changed.</p>
<div class="admonition note"><p class="admonition-title">Note</p><p>Keep the repository on another disk.</p></div>
</section>""",
    ),
    "faq.html": (
        "Frequently asked questions",
        """<section id="space"><h2>Why did deleting archives not free any disk space?<a class="headerlink" href="#space">¶</a></h2>
<p>Deleting an archive only marks its data as unused. Run <code>quillon compact</code> afterwards to
give the space back to the file system.</p></section>""",
    ),
    "usage/prune.html": (
        "quillon prune",
        """<p>Removes archives that a retention policy does not keep, for example
<code>--keep-daily 7 --keep-weekly 4</code> keeps a week of daily and a month of weekly archives.</p>""",
    ),
    "genindex.html": (
        "Index",
        '<h1 id="index">Index</h1><div class="genindex-jumpbox"><a href="#A">A</a></div>',
    ),
    "search.html": (
        "Search",
        "<p>Please activate JavaScript to enable the search functionality.</p>",
    ),
}

MKDOCS_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="generator" content="mkdocs-1.4.2, mkdocs-material-9.0.6">
<title>{title} - Quillon API</title><link rel="stylesheet" href="{up}assets/stylesheets/main.css"></head>
<body><header class="md-header"><nav class="md-header__inner">Quillon API
<form class="md-search__form"><input class="md-search__input" placeholder="Search"></form></nav></header>
<div class="md-container"><main class="md-main"><div class="md-main__inner">
<div class="md-sidebar md-sidebar--primary"><nav class="md-nav"><ul><li><a href="{up}index.html">Home</a></li>
<li><a href="{up}tokens/index.html">Tokens</a></li></ul></nav></div>
<div class="md-content"><article class="md-content__inner md-typeset">
<h1 id="title">{title}<a class="headerlink" href="#title">&para;</a></h1>
{body}
</article></div></div></main>
<footer class="md-footer"><a href="{up}index.html">Previous: Home</a> Made with Material for MkDocs</footer>
</div></body></html>
"""

MKDOCS_PAGES = {
    "index.html": (
        "Quillon API",
        "<p>The Quillon API lets you manage backup repositories over HTTP.</p>",
    ),
    "tokens/index.html": (
        "Tokens",
        """<h2 id="rotate">Rotating a token</h2><p>Tokens expire after 90 days. Call
<code>POST /tokens/rotate</code> with the old token to get a new one.</p>""",
    ),
}


def build_sphinx_site(root: Path) -> Path:
    """A Sphinx HTML build: 4 content pages (one of them a table of contents only), genindex and
    search pages, `_sources/` copies, `_static/` assets, images, fonts and `objects.inv`."""
    for name, (title, body) in SPHINX_PAGES.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(SPHINX_PAGE.format(title=title, body=body), encoding="utf-8")
    sources = root / "_sources"
    (sources / "usage").mkdir(parents=True)
    (sources / "quickstart.rst.txt").write_text(
        "Quick start\n===========\n\nQuillon keeps copies.\n"
    )
    (sources / "faq.rst.txt").write_text("FAQ\n===\n\nDeleting does not free space.\n")
    (sources / "usage" / "prune.rst.txt").write_text("prune\n=====\n\nRemoves archives.\n")
    static = root / "_static"
    (static / "fonts").mkdir(parents=True)
    (static / "basic.css").write_text("body { margin: 0 }")
    (static / "doctools.js").write_text("var Documentation = {};")
    (static / "fonts" / "lato.ttf").write_bytes(b"\x00\x01\x00\x00" + b"\x00" * 60)
    (static / "favicon.ico").write_bytes(b"\x00\x00\x01\x00" + b"\x00" * 30)
    (root / "_images").mkdir()
    (root / "_images" / "diagram.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40)
    (root / "searchindex.js").write_text('Search.setIndex({"docnames": ["faq"]})')
    (root / "objects.inv").write_bytes(b"# Sphinx inventory version 2\n" + b"x\x9c" + b"\x00" * 10)
    (root / ".buildinfo").write_text("# Sphinx build info version 1\n")
    return root


def build_mkdocs_site(root: Path) -> Path:
    """An MkDocs build: 2 content pages, `search/`, `404.html`, `sitemap.xml` and assets."""
    for name, (title, body) in MKDOCS_PAGES.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        up = "../" * name.count("/")
        path.write_text(MKDOCS_PAGE.format(title=title, body=body, up=up), encoding="utf-8")
    (root / "search").mkdir()
    (root / "search" / "search_index.json").write_text('{"config": {}, "docs": []}')
    (root / "404.html").write_text(
        MKDOCS_PAGE.format(title="404", body="<p>Page not found</p>", up="")
    )
    (root / "sitemap.xml").write_text("<urlset></urlset>")
    (root / "assets" / "stylesheets").mkdir(parents=True)
    (root / "assets" / "stylesheets" / "main.css").write_text("body{}")
    return root
