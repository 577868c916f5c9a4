"""build_prompt: one prompt for live and shadow answers, plain or grounded on numbered sources."""

from __future__ import annotations

from serving.knowledge import Passage, build_context
from serving.knowledge.context import GROUNDING_RULES
from serving.prompting import build_prompt


def passage(text: str) -> Passage:
    return Passage("c1", "d1", text, 0.9, "file1.md", "File 1", ("Setup",), None)


def test_plain_prompt_keeps_the_conversation_and_reads_developer_as_system() -> None:
    conversation = [
        {"role": "developer", "content": "Answer in French."},
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "Hello!"},
        {"role": "user", "content": "How do I reset?"},
    ]
    assert build_prompt("You are Kestrel's assistant.", conversation) == [
        {"role": "system", "content": "You are Kestrel's assistant."},
        {"role": "system", "content": "Answer in French."},
        *conversation[1:],
    ]
    assert build_prompt("", conversation[-1:]) == conversation[-1:]


def test_grounded_prompt_puts_rules_and_sources_in_the_system_message() -> None:
    context = build_context([passage("Hold 10 s.")])
    conversation = [
        {"role": "system", "content": "client system text"},
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "Hello!"},
        {"role": "user", "content": "How do I reset?"},
    ]
    messages = build_prompt("You are Kestrel's assistant.", conversation, context)
    assert messages[0]["role"] == "system"
    assert messages[0]["content"].startswith("You are Kestrel's assistant.\n\n" + GROUNDING_RULES)
    assert messages[0]["content"].endswith("Sources:\n[1] file1.md › Setup\nHold 10 s.")
    assert messages[1:] == conversation[1:]  # the client's own system text gives way to the sources
