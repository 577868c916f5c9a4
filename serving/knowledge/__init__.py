"""Knowledge retrieval for bots: parse documents, chunk them by structure, embed them (Instructor
or MiniLM), store them in Chroma (one collection per bot and model) and retrieve cited passages.

Typical use::

    store = ChromaStore.open(data_dir / "chroma")          # or "http://chroma:8000"
    kb = KnowledgeBase(store, load_embedder())              # offline default: all-MiniLM-L6-v2
    results = kb.ingest_files("demo", paths)                # one IngestResult per file
    passages = kb.retriever.search("demo", question, k=5, min_score=0.3)
    context = build_context(passages)                       # [1], [2] markers + citations
"""

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
