"""Knowledge retrieval for bots: parse documents, chunk them by structure, embed them (Instructor
or MiniLM), store them in Chroma (one collection per bot and model) and retrieve cited passages.

Typical use::

    store = ChromaStore.open(data_dir / "chroma")          # or "http://chroma:8000"
    kb = KnowledgeBase(store, load_embedder())              # offline default: all-MiniLM-L6-v2
    results = kb.ingest_files("demo", paths)                # one IngestResult per file
    passages = kb.retriever.search("demo", question, k=5, min_score=0.3)
    context = build_context(passages)                       # [1], [2] markers + citations
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from serving.knowledge.chunking import Chunk, ChunkingConfig, chunk_document
    from serving.knowledge.context import (
        GROUNDING_RULES,
        Citation,
        ContextBlock,
        build_context,
    )
    from serving.knowledge.embedders import (
        Embedder,
        EmbedderError,
        EmbedderSpec,
        InstructorEmbedder,
        SentenceTransformerEmbedder,
        load_embedder,
    )
    from serving.knowledge.knowledge_base import (
        DocumentInfo,
        IngestResult,
        Instructions,
        KnowledgeBase,
        document_id,
    )
    from serving.knowledge.parsers import (
        SUPPORTED_FORMATS,
        DocumentError,
        ParsedDocument,
        ParseLimits,
        parse_document,
    )
    from serving.knowledge.retriever import Passage, Retriever
    from serving.knowledge.store import (
        BotIndex,
        ChromaStore,
        IndexMismatchError,
        StoreError,
        collection_name,
    )

__all__ = [
    "GROUNDING_RULES",
    "SUPPORTED_FORMATS",
    "BotIndex",
    "ChromaStore",
    "Chunk",
    "ChunkingConfig",
    "Citation",
    "ContextBlock",
    "DocumentError",
    "DocumentInfo",
    "Embedder",
    "EmbedderError",
    "EmbedderSpec",
    "IndexMismatchError",
    "IngestResult",
    "Instructions",
    "InstructorEmbedder",
    "KnowledgeBase",
    "ParseLimits",
    "ParsedDocument",
    "Passage",
    "Retriever",
    "SentenceTransformerEmbedder",
    "StoreError",
    "build_context",
    "chunk_document",
    "collection_name",
    "document_id",
    "load_embedder",
    "parse_document",
]

# Names load on first use: importing one part (`serving.knowledge.parsers`, in the document
# parser's child process) does not import Chroma and torch with the rest.
_LAZY = {
    "BotIndex": "serving.knowledge.store",
    "ChromaStore": "serving.knowledge.store",
    "Chunk": "serving.knowledge.chunking",
    "ChunkingConfig": "serving.knowledge.chunking",
    "Citation": "serving.knowledge.context",
    "ContextBlock": "serving.knowledge.context",
    "DocumentError": "serving.knowledge.parsers",
    "DocumentInfo": "serving.knowledge.knowledge_base",
    "Embedder": "serving.knowledge.embedders",
    "EmbedderError": "serving.knowledge.embedders",
    "EmbedderSpec": "serving.knowledge.embedders",
    "GROUNDING_RULES": "serving.knowledge.context",
    "IndexMismatchError": "serving.knowledge.store",
    "IngestResult": "serving.knowledge.knowledge_base",
    "Instructions": "serving.knowledge.knowledge_base",
    "InstructorEmbedder": "serving.knowledge.embedders",
    "KnowledgeBase": "serving.knowledge.knowledge_base",
    "ParseLimits": "serving.knowledge.parsers",
    "ParsedDocument": "serving.knowledge.parsers",
    "Passage": "serving.knowledge.retriever",
    "Retriever": "serving.knowledge.retriever",
    "SUPPORTED_FORMATS": "serving.knowledge.parsers",
    "SentenceTransformerEmbedder": "serving.knowledge.embedders",
    "StoreError": "serving.knowledge.store",
    "build_context": "serving.knowledge.context",
    "chunk_document": "serving.knowledge.chunking",
    "collection_name": "serving.knowledge.store",
    "document_id": "serving.knowledge.knowledge_base",
    "load_embedder": "serving.knowledge.embedders",
    "parse_document": "serving.knowledge.parsers",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
