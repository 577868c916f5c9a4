"""What a release's mode means for answering."""

from __future__ import annotations

#: Modes whose answers are grounded on retrieved passages (`retrieval` answers with them alone).
RAG_MODES = frozenset({"rag", "adapter+rag", "retrieval"})
