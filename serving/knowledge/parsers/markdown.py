"""Markdown: headings give the section path; tables, fenced code and lists stay whole blocks.

Blocks keep their Markdown source (sliced by line range from markdown-it's token map), so a table
stays a readable pipe table and code keeps its fences in the chunk the model sees.
"""

from __future__ import annotations

import re

from markdown_it import MarkdownIt

from serving.knowledge.parsers.document import BlockKind, Section, SectionBuilder

_FRONT_MATTER = re.compile(r"\A---\r?\n(.*?)\r?\n---\r?\n", re.DOTALL)
_KINDS: dict[str, BlockKind] = {
    "paragraph_open": "text",
    "bullet_list_open": "list",
    "ordered_list_open": "list",
    "table_open": "table",
    "blockquote_open": "text",
    "fence": "code",
    "code_block": "code",
    "html_block": "text",
}


def parse_markdown(text: str, fallback_title: str) -> tuple[str, list[Section]]:
    """Return (title, sections) for Markdown source."""
    title = ""
    match = _FRONT_MATTER.match(text)
    if match:
        text = text[match.end() :]
        for line in match.group(1).splitlines():
            key, _, value = line.partition(":")
            if key.strip().lower() == "title":
                title = value.strip().strip("\"'")
    lines = text.splitlines()
    tokens = MarkdownIt("commonmark").enable("table").parse(text)
    builder = SectionBuilder()
    i = 0
    while i < len(tokens):
        token = tokens[i]
        if token.level != 0 or token.map is None:
            i += 1
            continue
        start, end = token.map
        if token.type == "heading_open":
            heading = tokens[i + 1].content
            builder.heading(int(token.tag[1:]), heading)
            if not title and token.tag == "h1":
                title = heading
            i += 3
            continue
        kind = _KINDS.get(token.type)
        if kind is not None:
            builder.block(kind, "\n".join(lines[start:end]))
        i += 1
    return title or fallback_title, builder.finish()
