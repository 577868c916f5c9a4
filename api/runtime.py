"""Everything a running Shadowdesk process holds: settings, database, model backend, knowledge base,
job worker. Built once by the app factory (or the CLI / a standalone worker) and handed to services
and job handlers, so none of them reaches for globals."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from api.metrics import Metrics
from api.settings import Settings
from serving.backend import Backend

if TYPE_CHECKING:
    from api.jobs.worker import WorkerPool
    from api.services.access import AccessCache
    from api.services.annotations import AnnotationIndex
    from api.services.knowledge import KnowledgeHub

log = logging.getLogger(__name__)


@dataclass
class Runtime:
    settings: Settings
    engine: Engine
    sessions: sessionmaker[Session]
    backend: Backend
    metrics: Metrics = field(default_factory=Metrics)
    worker: WorkerPool | None = None
    access: AccessCache | None = None
    _knowledge: KnowledgeHub | None = None
    _annotations: AnnotationIndex | None = None

    @property
    def knowledge_opened(self) -> bool:
        return self._knowledge is not None

    @property
    def knowledge(self) -> KnowledgeHub:
        """The knowledge base (opened on first use: it loads the embedding model)."""
        if self._knowledge is None:
            from api.services.knowledge import open_knowledge_base

            self._knowledge = open_knowledge_base(self.settings)
        return self._knowledge

    def notify_worker(self) -> None:
        if self.worker is not None:
            self.worker.notify()

    @property
    def annotations(self) -> AnnotationIndex:
        """Matches client questions to approved annotations. Questions are embedded with the default
        embedding model, loaded only once a bot has annotations."""
        if self._annotations is None:
            from api.services.annotations import AnnotationIndex

            def embed(texts: list[str]) -> list[list[float]]:
                return self.knowledge.base(self.settings.embedder).embedder.embed_documents(texts)

            self._annotations = AnnotationIndex(self.sessions, embed)
        return self._annotations

    def notify_access_changed(self) -> None:
        """A key, bot or release alias changed in this process: drop cached lookups at once."""
        if self.access is not None:
            self.access.forget()
