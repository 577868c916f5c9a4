"""The demo bot's knowledge: an original documentation set for a fictional product (Kestrel Glow
smart lamps, the Perch hub and the Kestrel Home app), its scope, and labelled questions.

All names, products and facts here are invented for the demo.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from serving.scope_guard import Scope

DEMO_DIR = Path(__file__).parent
DEMO_BOT = "demo"


@dataclass(frozen=True)
class LabelledQuestion:
    id: str
    question: str
    in_scope: bool
    #: Documents (file names) that answer it; any of them counts as a hit.
    expected_sources: tuple[str, ...] = ()


def demo_documents() -> list[Path]:
    """The demo's documents: Markdown and HTML manual pages, a PDF and a forum export."""
    return sorted(p for p in (DEMO_DIR / "docs").iterdir() if p.is_file())


def demo_scope() -> Scope:
    """The demo bot's scope (topics, examples on both sides, refusal message)."""
    raw = json.loads((DEMO_DIR / "scope.json").read_text(encoding="utf-8"))
    return Scope(
        topics=tuple(raw["topics"]),
        example_questions=tuple(raw["example_questions"]),
        out_of_scope_examples=tuple(raw["out_of_scope_examples"]),
        refusal_message=raw["refusal_message"],
        description=raw.get("description", ""),
    )


def demo_questions() -> list[LabelledQuestion]:
    """Labelled questions for measuring the guard and retrieval (bench/guard.py)."""
    raw = json.loads((DEMO_DIR / "questions.json").read_text(encoding="utf-8"))
    return [
        LabelledQuestion(
            q["id"], q["question"], q["in_scope"], tuple(q.get("expected_sources", ()))
        )
        for q in raw
    ]
