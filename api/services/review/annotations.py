"""Annotations: approved (question → answer) pairs that answer near-identical client questions
directly, before any retraining.

A review that approves or corrects a single-question exchange creates one (`create_annotation`,
called by `api.services.review.verdicts`); staff switch them off and on (`set_enabled`). On the chat path
`AnnotationIndex.match` compares the client's question with the bot's enabled annotations by cosine
similarity of embeddings, from vectors cached in memory.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

import numpy as np
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session, sessionmaker

from api.errors import Conflict, NotFound
from api.ids import new_id
from api.models import Annotation, Exchange, utcnow
from api.services.access import audit
from api.services.access.audit import AuditActor
from api.services.access.staff import Actor, can_review
from api.unit_of_work import annotations_of, changed

Embed = Callable[[list[str]], Sequence[Sequence[float]]]


@dataclass(frozen=True)
class AnnotationMatch:
    id: str
    answer: str
    similarity: float


def normalize_question(text: str) -> str:
    """Case, spacing and punctuation do not make a different question."""
    return " ".join(re.sub(r"[^\w\s]", " ", text).casefold().split())


def create_annotation(
    session: Session,
    actor: AuditActor,
    *,
    bot_id: str,
    question: str,
    answer: str,
    review_id: str | None,
    now: datetime | None = None,
    four_eyes: bool = False,
) -> Annotation:
    """Add an annotation. At once it is enabled, and enabled ones of the bot with the same question
    are switched off, so the newest verdict on a question is the one that answers. With
    `four_eyes` it waits, disabled, until another reviewer approves it (`approve`)."""
    now = now or utcnow()
    if not four_eyes:
        _supersede(session, actor, bot_id, question, now)
    row = Annotation(
        id=new_id("ann"),
        bot_id=bot_id,
        question=question.strip(),
        answer=answer,
        review_id=review_id,
        enabled=not four_eyes,
        awaiting_approval=four_eyes,
        created_by=actor.id,
        created_at=now,
        updated_at=now,
    )
    session.add(row)
    session.flush()
    changed(session, annotations_of(bot_id))
    audit.record(
        session,
        actor,
        "annotation.create",
        entity="annotation",
        entity_id=row.id,
        bot_id=bot_id,
        after=_snapshot(row),
        at=now,
    )
    return row


def approve(session: Session, actor: Actor, annotation_id: str) -> Annotation:
    """A second reviewer's approval: the waiting annotation starts answering clients. Its author
    cannot approve it."""
    row = get_annotation(session, actor, annotation_id)
    if not row.awaiting_approval:
        raise Conflict(
            "This annotation is not waiting for an approval.", code="not_awaiting_approval"
        )
    if row.created_by is not None and row.created_by == actor.id:
        raise Conflict(
            "The reviewer who wrote an answer cannot approve it: a second reviewer must.",
            code="four_eyes",
        )
    now = utcnow()
    _supersede(session, actor, row.bot_id, row.question, now)
    row.awaiting_approval = False
    _switch(session, actor, row, True, reason="approved by a second reviewer", now=now)
    return row


def _supersede(
    session: Session, actor: AuditActor, bot_id: str, question: str, now: datetime
) -> None:
    same = normalize_question(question)
    for older in session.scalars(
        select(Annotation).where(Annotation.bot_id == bot_id, Annotation.enabled.is_(True))
    ):
        if normalize_question(older.question) == same:
            _switch(session, actor, older, False, reason="superseded", now=now)


def get_annotation(session: Session, actor: Actor, annotation_id: str) -> Annotation:
    """The annotation, or NotFound (also when `actor` does not review its bot)."""
    row = session.get(Annotation, annotation_id)
    if row is None or not can_review(actor, row.bot_id):
        raise NotFound(f"No annotation with id '{annotation_id}'.", param="annotation_id")
    return row


def set_enabled(session: Session, actor: Actor, annotation_id: str, enabled: bool) -> Annotation:
    """Switch an annotation on or off (audited); staff of the annotation's bot only."""
    row = get_annotation(session, actor, annotation_id)
    if enabled and row.awaiting_approval:
        raise Conflict(
            "This annotation waits for a second reviewer's approval; it cannot simply be switched on.",
            code="four_eyes",
        )
    if row.enabled != enabled:
        _switch(session, actor, row, enabled)
    return row


def disable_for_reviews(
    session: Session, actor: AuditActor, review_ids: Sequence[str]
) -> list[Annotation]:
    """Switch off the enabled annotations that came from these reviews (a verdict was replaced)."""
    if not review_ids:
        return []
    rows = list(
        session.scalars(
            select(Annotation).where(
                Annotation.review_id.in_(review_ids), Annotation.enabled.is_(True)
            )
        )
    )
    for row in rows:
        _switch(session, actor, row, False, reason="verdict replaced")
    return rows


def list_annotations(session: Session, bot_id: str, *, limit: int = 200) -> list[Annotation]:
    """The bot's annotations, newest first."""
    query = (
        select(Annotation)
        .where(Annotation.bot_id == bot_id)
        .order_by(Annotation.created_at.desc(), Annotation.id.desc())
        .limit(limit)
    )
    return list(session.scalars(query))


def answered_counts(session: Session, bot_id: str) -> dict[str, int]:
    """Annotation id -> client exchanges it answered (from the exchanges themselves, which are
    durable, so the count is right even where `record_hit` was not called)."""
    rows = session.execute(
        select(Exchange.annotation_id, func.count())
        .where(Exchange.bot_id == bot_id, Exchange.annotation_id.is_not(None))
        .group_by(Exchange.annotation_id)
    )
    return {str(annotation_id): int(n) for annotation_id, n in rows}


def record_hit(session: Session, annotation_id: str) -> None:
    """Count one client question answered by the annotation (an atomic increment)."""
    # updated_at is kept as it is: it fingerprints the set of annotations for AnnotationIndex, and a
    # hit must not make every replica reload its vectors.
    session.execute(
        update(Annotation)
        .where(Annotation.id == annotation_id)
        .values(hits=Annotation.hits + 1, updated_at=Annotation.updated_at)
        .execution_options(synchronize_session=False)
    )


def _switch(
    session: Session,
    actor: AuditActor,
    row: Annotation,
    enabled: bool,
    *,
    reason: str | None = None,
    now: datetime | None = None,
) -> None:
    before = _snapshot(row)
    row.enabled = enabled
    row.updated_at = now or utcnow()
    session.flush()
    changed(session, annotations_of(row.bot_id))
    after = _snapshot(row) | ({"reason": reason} if reason else {})
    audit.record(
        session,
        actor,
        "annotation.enable" if enabled else "annotation.disable",
        entity="annotation",
        entity_id=row.id,
        bot_id=row.bot_id,
        before=before,
        after=after,
    )


def _snapshot(row: Annotation) -> dict[str, object]:
    return {
        "question": row.question,
        "answer": row.answer,
        "enabled": row.enabled,
        "review_id": row.review_id,
    }


@dataclass(frozen=True)
class _BotVectors:
    fingerprint: tuple[int, str]
    checked_at: float
    ids: tuple[str, ...]
    answers: tuple[str, ...]
    matrix: np.ndarray  # one unit row per annotation question, newest first


class AnnotationIndex:
    """Finds the enabled annotation whose question is most similar to a client's question.

    Each bot's enabled annotations and their question vectors are cached in memory. The cache is
    dropped at once by `invalidate(bot_id)` (this process's changes) and re-checked against the
    database at most every `recheck_s` seconds with one small query (changes made by other
    replicas); only questions not embedded before are embedded again. Thread-safe; `match` blocks
    (it embeds the question), so call it from a worker thread.
    """

    def __init__(
        self,
        sessions: sessionmaker[Session],
        embed: Embed,
        *,
        recheck_s: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._sessions = sessions
        self._embed = embed
        self.recheck_s = recheck_s
        self._clock = clock
        self._bots: dict[str, _BotVectors] = {}
        # bot id -> (annotation id, question) -> unit vector: reloads embed only new questions.
        self._vectors: dict[str, dict[tuple[str, str], np.ndarray]] = {}
        self._lock = threading.Lock()
        self._bot_locks: dict[str, threading.Lock] = {}

    def match(self, bot_id: str, question: str, threshold: float) -> AnnotationMatch | None:
        """The best enabled annotation at least `threshold` similar (cosine, -1..1), or None."""
        entries = self._entries(bot_id)
        if not entries.ids or not question.strip():
            return None
        scores = entries.matrix @ _unit(self._embed([question])[0])
        best = int(np.argmax(scores))  # the first of equals: the newest annotation
        similarity = float(scores[best])
        if similarity < threshold:
            return None
        return AnnotationMatch(entries.ids[best], entries.answers[best], similarity)

    def known_empty(self, bot_id: str) -> bool:
        """True when the bot is known (freshly) to have no enabled annotation: callers may then skip
        the thread hop for `match`."""
        entries = self._bots.get(bot_id)
        return (
            entries is not None
            and not entries.ids
            and self._clock() - entries.checked_at < self.recheck_s
        )

    def invalidate(self, bot_id: str | None = None) -> None:
        """Forget the cached annotations of `bot_id` (of every bot when None); the next match reloads."""
        with self._lock:
            if bot_id is None:
                self._bots.clear()
            else:
                self._bots.pop(bot_id, None)

    def _entries(self, bot_id: str) -> _BotVectors:
        cached = self._bots.get(bot_id)
        if cached is not None and self._clock() - cached.checked_at < self.recheck_s:
            return cached
        with self._lock:
            bot_lock = self._bot_locks.setdefault(bot_id, threading.Lock())
        with bot_lock:  # one loader per bot; matches on other bots go on
            cached = self._bots.get(bot_id)
            now = self._clock()
            if cached is not None and now - cached.checked_at < self.recheck_s:
                return cached
            with self._sessions() as session:
                fingerprint = self._fingerprint(session, bot_id)
                if cached is not None and cached.fingerprint == fingerprint:
                    fresh = _BotVectors(fingerprint, now, cached.ids, cached.answers, cached.matrix)
                else:
                    fresh = self._load(session, bot_id, fingerprint, now)
            with self._lock:
                self._bots[bot_id] = fresh
            return fresh

    @staticmethod
    def _fingerprint(session: Session, bot_id: str) -> tuple[int, str]:
        count, latest = session.execute(
            select(func.count(), func.max(Annotation.updated_at)).where(
                Annotation.bot_id == bot_id, Annotation.enabled.is_(True)
            )
        ).one()
        return int(count), str(latest)

    def _load(
        self, session: Session, bot_id: str, fingerprint: tuple[int, str], now: float
    ) -> _BotVectors:
        rows = session.execute(
            select(Annotation.id, Annotation.question, Annotation.answer)
            .where(Annotation.bot_id == bot_id, Annotation.enabled.is_(True))
            .order_by(Annotation.created_at.desc(), Annotation.id.desc())
        ).all()
        known = self._vectors.get(bot_id, {})
        vectors = {
            (r.id, r.question): known[(r.id, r.question)]
            for r in rows
            if (r.id, r.question) in known
        }
        missing = [(r.id, r.question) for r in rows if (r.id, r.question) not in vectors]
        if missing:
            for key, vector in zip(missing, self._embed([q for _, q in missing]), strict=True):
                vectors[key] = _unit(vector)
        self._vectors[bot_id] = (
            vectors  # only this bot's loader (holding its lock) writes this entry
        )
        matrix = (
            np.stack([vectors[(r.id, r.question)] for r in rows])
            if rows
            else np.zeros((0, 0), dtype=np.float32)
        )
        return _BotVectors(
            fingerprint, now, tuple(r.id for r in rows), tuple(r.answer for r in rows), matrix
        )


def _unit(vector: Sequence[float]) -> np.ndarray:
    array = np.asarray(vector, dtype=np.float32)
    norm = float(np.linalg.norm(array))
    return array / norm if norm > 0 else array
