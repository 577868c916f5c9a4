"""reStructuredText (`.rst`, Sphinx's `.rst.txt` sources) through docutils' own parser.

Sphinx adds roles (`:ref:`, `:doc:`, `:option:` …) and directives (`toctree`, `code-block`,
`versionadded` …) that plain docutils does not know; they are registered here as their nearest
docutils equivalent (text, a literal block, or nothing), so a Sphinx source reads as its page does
instead of as error messages.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar, cast

from docutils import nodes
from docutils.core import publish_doctree
from docutils.parsers.rst import Directive, directives, roles
from docutils.parsers.rst.states import Inliner

from serving.knowledge.parsers.document import Section, SectionBuilder

_SPHINX_ROLES = (
    "ref doc term option envvar program command file kbd menuselection guilabel abbr "
    "class func meth attr mod data exc obj const any numref download samp manpage pep rfc "
    "py:class py:func py:meth py:attr py:mod py:data py:exc py:obj c:func c:type"
).split()
_LINK_TARGET = re.compile(r"\s*<[^<>]*>$")


class _Ignored(Directive):
    """Sphinx directives with no readable content (navigation, index entries, autodoc)."""

    has_content = True
    optional_arguments = 10
    final_argument_whitespace = True
    option_spec: ClassVar[Any] = None

    def run(self) -> list[nodes.Node]:
        return []


class _CodeBlock(Directive):
    has_content = True
    optional_arguments = 1
    option_spec: ClassVar[Any] = None

    def run(self) -> list[nodes.Node]:
        return [nodes.literal_block(text="\n".join(self.content))]


class _Paragraphs(Directive):
    """`versionadded`, `deprecated`, `only`, `seealso` …: their text, parsed as body content."""

    has_content = True
    optional_arguments = 10
    final_argument_whitespace = True
    option_spec: ClassVar[Any] = None

    def run(self) -> list[nodes.Node]:
        container = nodes.container()
        label = " ".join(self.arguments)
        if self.name in ("versionadded", "versionchanged", "deprecated") and label:
            container += nodes.paragraph(text=f"{self.name.replace('version', 'Version ')} {label}")
        self.state.nested_parse(self.content, self.content_offset, container)
        return [container]


def _text_role(
    name: str,
    rawtext: str,
    text: str,
    lineno: int,
    inliner: Inliner,
    options: Mapping[str, Any] | None = None,
    content: Sequence[str] | None = None,
) -> tuple[Sequence[nodes.reference], Sequence[nodes.reference]]:
    # `:ref:`Label <target>`` reads as "Label"; `:option:`--keep-daily`` as "--keep-daily".
    # docutils' stubs type a role's nodes as references; any inline node is accepted at run time.
    literal = cast(nodes.reference, nodes.literal(rawtext, _LINK_TARGET.sub("", text)))
    return [literal], []


def _register() -> None:
    for role in _SPHINX_ROLES:
        roles.register_local_role(role, _text_role)
    for name in (
        "toctree",
        "index",
        "highlight",
        "autoclass",
        "automodule",
        "autofunction",
        "literalinclude",
        "include",
        "raw",
        "image",
        "figure",
        "tabularcolumns",
        "currentmodule",
        "module",
        "sectionauthor",
        "codeauthor",
        "program",
    ):
        directives.register_directive(name, _Ignored)
    for name in ("code-block", "sourcecode", "code"):
        directives.register_directive(name, _CodeBlock)
    for name in (
        "versionadded",
        "versionchanged",
        "deprecated",
        "only",
        "seealso",
        "glossary",
        "hlist",
        "centered",
        "rubric",
        "ifconfig",
        "tab",
        "tabs",
    ):
        directives.register_directive(name, _Paragraphs)


_register()

_SETTINGS = {
    "report_level": 5,  # silence: unknown constructs become text, never error text in chunks
    "halt_level": 5,
    "file_insertion_enabled": False,  # never read other files named by an untrusted document
    "raw_enabled": False,
    "input_encoding": "unicode",
}


def parse_rst(text: str, fallback_title: str) -> tuple[str, list[Section]]:
    """Return (title, sections) for reStructuredText source."""
    doctree = publish_doctree(text, settings_overrides=_SETTINGS)
    builder = SectionBuilder()
    title = ""
    for child in doctree.children:
        if isinstance(child, nodes.title):
            title = child.astext()
            builder.heading(1, title)
    _walk(doctree, builder, 1)
    if not title:
        first = next(iter(doctree.findall(nodes.title)), None)
        title = first.astext() if first is not None else ""
    return title or fallback_title, builder.finish()


def _walk(node: nodes.Element, builder: SectionBuilder, level: int) -> None:
    for child in node.children:
        if isinstance(
            child,
            (
                nodes.system_message,
                nodes.comment,
                nodes.target,
                nodes.substitution_definition,
                nodes.title,
                nodes.docinfo,
            ),
        ):
            continue
        if isinstance(child, nodes.section):
            heading = child.next_node(nodes.title)
            builder.heading(level + 1, heading.astext() if heading is not None else "")
            _walk(child, builder, level + 1)
        elif isinstance(child, nodes.literal_block):
            builder.block("code", "```\n" + child.astext().strip("\n") + "\n```")
        elif isinstance(child, nodes.table):
            builder.block("table", _table(child))
        elif isinstance(child, (nodes.bullet_list, nodes.enumerated_list)):
            items = [" ".join(item.astext().split()) for item in child.children]
            builder.block("list", "\n".join(f"- {item}" for item in items if item))
        elif isinstance(child, (nodes.definition_list, nodes.field_list, nodes.option_list)):
            builder.block("list", _definitions(child))
        elif isinstance(child, nodes.Admonition):
            tag = str(getattr(child, "tagname", "admonition"))
            label = tag.capitalize() if tag != "admonition" else ""
            body = " ".join(child.astext().split())
            builder.block("text", f"{label}: {body}" if label else body)
        elif isinstance(child, (nodes.paragraph, nodes.line_block, nodes.block_quote)) and not (
            isinstance(child, nodes.block_quote) and child.next_node(nodes.section) is not None
        ):
            if isinstance(child, nodes.block_quote):
                _walk(child, builder, level)
            else:
                builder.block("text", " ".join(child.astext().split()))
        elif isinstance(child, nodes.Element):
            _walk(child, builder, level)


def _definitions(node: nodes.Element) -> str:
    lines = []
    for item in node.children:
        if not isinstance(item, nodes.Element) or not item.children:
            continue
        term, *rest = item.children
        lines.append(f"{' '.join(term.astext().split())}:")
        body = " ".join(" ".join(r.astext().split()) for r in rest)
        if body:
            lines.append(f"  {body}")
    return "\n".join(lines)


def _table(node: nodes.table) -> str:
    rows: list[str] = []
    for i, row in enumerate(node.findall(nodes.row)):
        cells = [" ".join(e.astext().split()).replace("|", "\\|") for e in row.children]
        rows.append("| " + " | ".join(cells) + " |")
        if i == 0:
            rows.append("|" + "---|" * len(cells))
    return "\n".join(rows)
