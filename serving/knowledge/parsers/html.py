"""HTML (wiki exports, saved help-center pages): navigation and boilerplate are stripped, then the
main content is walked in order so headings become the section path and tables/code stay whole."""

from __future__ import annotations

import re

from selectolax.lexbor import LexborHTMLParser, LexborNode

from serving.knowledge.parsers.document import DocumentError, Section, SectionBuilder

_META_CHARSET = re.compile(rb"<meta[^>]+charset\s*=\s*[\"']?([A-Za-z0-9_\-]+)", re.IGNORECASE)
_DROP_TAGS = (
    "script, style, noscript, template, nav, footer, aside, form, iframe, svg, button, "
    "select, input, dialog, [role=navigation], [role=contentinfo], [role=search], "
    "[aria-hidden=true], [hidden]"
)
# Class/id words that mark site chrome rather than content (matched per word of class/id).
_CHROME_WORDS = frozenset(
    [
        "nav",
        "navbar",
        "navigation",
        "menu",
        "sidebar",
        "breadcrumb",
        "breadcrumbs",
        "footer",
        "cookie",
        "cookies",
        "consent",
        "banner",
        "toc",
        "skip",
        "share",
        "social",
        "related",
        "pagination",
        "pager",
        "feedback",
        "edit-link",
        "advert",
        "ads",
        "masthead",
        "topbar",
        "catlinks",
        "sitesub",
        # Sphinx (toctree lists, ¶ anchors, "related" bars), DocBook XSL (navheader/navfooter).
        "toctree",
        "headerlink",
        "navheader",
        "navfooter",
        "sphinxsidebar",
        "related",
        "md-sidebar",
        "md-header",
        "md-footer",
    ]
)
_ADMONITIONS = frozenset(["Note", "Tip", "Warning", "Important", "Caution"])
_CONTENT_ROOTS = ("main", "article", "[role=main]", "#content", "#main-content", ".content", "body")
_BLOCK_TAGS = frozenset(
    [
        "div",
        "section",
        "article",
        "main",
        "header",
        "p",
        "pre",
        "table",
        "ul",
        "ol",
        "dl",
        "blockquote",
        "figure",
        "details",
        "summary",
        "h1",
        "h2",
        "h3",
        "h4",
        "h5",
        "h6",
        "hr",
        "center",
    ]
)


def declared_charset(data: bytes) -> str | None:
    """The charset a page declares in a <meta> tag within its first 4 KiB, if any."""
    match = _META_CHARSET.search(data[:4096])
    return match.group(1).decode("ascii").lower() if match else None


def parse_html(text: str, fallback_title: str) -> tuple[str, list[Section]]:
    """Return (title, sections) for an HTML page, with site chrome removed. A page that held
    nothing but navigation raises `DocumentError("navigation_only")`."""
    tree = LexborHTMLParser(text)
    title_node = tree.css_first("title")
    page_title = _clean(title_node.text()) if title_node else ""
    has_links = tree.css_first("a[href]") is not None
    for node in tree.css(_DROP_TAGS):
        node.decompose()
    for node in tree.css("[class], [id]"):
        if _is_chrome(node):
            node.decompose()
    for node in tree.css("header"):
        # A page header is chrome unless it carries the article's heading.
        if node.css_first("h1, h2, h3") is None:
            node.decompose()
    root = next((n for n in (tree.css_first(s) for s in _CONTENT_ROOTS) if n is not None), None)
    builder = SectionBuilder()
    h1_title = ""
    if root is not None:
        h1 = root.css_first("h1")
        h1_title = _clean(h1.text()) if h1 else ""
        _walk(root, builder)
    sections = builder.finish()
    if not any(section.blocks for section in sections) and has_links:
        raise DocumentError(
            "navigation_only", f"{fallback_title}: only navigation links, nothing to index"
        )
    return h1_title or page_title or fallback_title, sections


def _is_chrome(node: LexborNode) -> bool:
    attrs = node.attributes
    words = f"{attrs.get('class') or ''} {attrs.get('id') or ''}".lower()
    tokens = set(re.split(r"[\s_]+", words)) | set(re.split(r"[\s_\-]+", words))
    return bool(tokens & _CHROME_WORDS)


def _walk(node: LexborNode, builder: SectionBuilder) -> None:
    inline: list[str] = []

    def flush_inline() -> None:
        if inline:
            builder.block("text", _clean(" ".join(inline)))
            inline.clear()

    child = node.child
    while child is not None:
        tag = child.tag
        if tag == "-text":
            inline.append(child.text(deep=False))
        elif tag in _BLOCK_TAGS:
            flush_inline()
            _block(child, builder)
        elif tag == "br":
            inline.append("\n")
        elif tag is not None and not tag.startswith("-"):
            inline.append(_inline_text(child))
        child = child.next
    flush_inline()


def _block(node: LexborNode, builder: SectionBuilder) -> None:
    tag = node.tag
    if tag in ("h1", "h2", "h3", "h4", "h5", "h6"):
        builder.heading(int(tag[1]), _clean(node.text()))
    elif tag == "p":
        builder.block("text", _clean(_inline_text(node)))
    elif tag == "pre":
        builder.block("code", "```\n" + node.text(deep=True).strip("\n") + "\n```")
    elif tag == "table":
        label = _admonition_label(node)
        if label:
            # DocBook lays out notes and tips as a table beside an icon: it reads as a paragraph.
            cells = (_clean(cell.text()) for cell in node.css("td"))
            body = " ".join(text for text in cells if text)
            builder.block("text", f"{label}: {body}")
        else:
            builder.block("table", _table(node))
    elif tag in ("ul", "ol"):
        if _is_link_list(node):
            return  # a table of contents or a link farm: navigation, not content
        items = [_clean(li.text()) for li in node.css("li")]
        builder.block("list", "\n".join(f"- {item}" for item in items if item))
    elif tag == "dl":
        lines = [
            f"{_clean(n.text())}:" if n.tag == "dt" else f"  {_clean(n.text())}"
            for n in node.css("dt, dd")
        ]
        builder.block("list", "\n".join(lines))
    elif tag == "hr":
        return
    else:
        _walk(node, builder)


def _admonition_label(table: LexborNode) -> str | None:
    """ "Note", "Tip" … when a table only lays out an admonition (DocBook XSL: an icon cell and a
    header cell naming the admonition)."""
    label = (table.attributes.get("summary") or "").strip()
    if label in _ADMONITIONS:
        return label
    header = table.css_first("th")
    if header is not None and _clean(header.text()) in _ADMONITIONS and len(table.css("tr")) <= 2:
        return _clean(header.text())
    return None


def _is_link_list(node: LexborNode) -> bool:
    """A list of at least three items whose text is (almost) all link text."""
    items = node.css("li")
    if len(items) < 3:
        return False
    total = len("".join(node.text(deep=True).split()))
    linked = sum(len("".join(a.text(deep=True).split())) for a in node.css("a"))
    return total > 0 and linked / total >= 0.9


def _inline_text(node: LexborNode) -> str:
    for br in node.css("br"):
        br.replace_with("\n")
    return node.text(deep=True)


def _table(node: LexborNode) -> str:
    rows: list[str] = []
    for i, tr in enumerate(node.css("tr")):
        cells = [_clean(c.text()).replace("|", "\\|") for c in tr.css("th, td")]
        if not cells:
            continue
        rows.append("| " + " | ".join(cells) + " |")
        if i == 0:
            rows.append("|" + "---|" * len(cells))
    return "\n".join(rows)


def _clean(text: str) -> str:
    lines = (" ".join(line.split()) for line in text.split("\n"))
    return "\n".join(line for line in lines if line)
