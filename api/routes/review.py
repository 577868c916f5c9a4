"""Review JSON API under `/api/review/`: the queue, items, locks, verdicts, metrics, thresholds and
annotations, for integrations. Auth: a staff session cookie (log in with `POST /api/review/session`;
unsafe methods then need the `X-CSRF-Token` header) or an admin API key (`Authorization: Bearer`)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, Response
from pydantic import BaseModel, Field

from api.deps import SessionDep, bearer_token, bootstrap_admin_secret
from api.errors import AuthenticationFailed, NotFound, PermissionDenied
from api.models import Annotation, Bot, Review
from api.services.access.keys import authenticate
from api.services.access.staff import Actor, require_bot, reviewable_bots
from api.services.access.staff_sessions import (
    CSRF_HEADER,
    SAFE_METHODS,
    SESSION_COOKIE,
    SessionCodec,
    csrf_ok,
    log_in,
    log_out,
    login_throttle,
    resolve_session,
)
from api.services.bots.management import get_bot
from api.services.review import annotations as annotation_service
from api.services.review import metrics as review_metrics
from api.services.review import verdicts as review_service
from api.services.review.answer_edits import word_diff
from api.services.review.queue import LockInfo, list_queue, resolve_filter
from api.services.review.verdicts import CandidateAnswer

router = APIRouter(prefix="/api/review", tags=["review"])


def review_actor(request: Request, session: SessionDep) -> Actor:
    """An admin API key, or a logged-in staff user (who must send the CSRF token on unsafe methods)."""
    settings = request.app.state.settings
    token = bearer_token(request)
    if token is not None:
        key = authenticate(session, token, bootstrap_admin=bootstrap_admin_secret(settings))
        if not key.is_admin:
            raise PermissionDenied("The review API takes an admin API key or a staff session.")
        return Actor.of_key(key)
    resolved = resolve_session(
        session, SessionCodec.from_settings(settings), request.cookies.get(SESSION_COOKIE)
    )
    if resolved is None:
        raise AuthenticationFailed(
            "Log in as staff (POST /api/review/session) or send an admin API key.",
            code="not_logged_in",
        )
    actor, data = resolved
    if request.method not in SAFE_METHODS and not csrf_ok(
        data.csrf, request.headers.get(CSRF_HEADER)
    ):
        raise PermissionDenied(f"Missing or wrong {CSRF_HEADER} header.", code="csrf_failed")
    return actor


ReviewActor = Annotated[Actor, Depends(review_actor)]


class LoginIn(BaseModel):
    email: str = Field(max_length=320)
    password: str = Field(max_length=1_000)


class MeOut(BaseModel):
    id: str
    email: str
    name: str
    role: str
    bots: list[str]
    csrf_token: str | None = Field(
        None, description="Send as X-CSRF-Token on unsafe requests (sessions only)."
    )


class LockOut(BaseModel):
    holder: str
    until: datetime
    mine: bool

    @classmethod
    def of(cls, lock: LockInfo | None) -> LockOut | None:
        return cls(holder=lock.holder, until=lock.until, mine=lock.mine) if lock else None


class QueueItemOut(BaseModel):
    id: str
    bot: str
    release_id: str | None
    release_version: int | None
    status: str
    priority: float
    reasons: list[str]
    group_key: str | None
    group_size: int
    question: str
    answer: str
    lock: LockOut | None
    created_at: datetime


class QueueOut(BaseModel):
    items: list[QueueItemOut]
    counts: dict[str, dict[str, int]] = Field(description="status -> {items, groups}")
    total_groups: int
    limit: int
    offset: int


class ReviewOut(BaseModel):
    id: str
    verdict: str
    original_text: str
    corrected_text: str | None
    reason: str | None
    comment: str
    edit_distance: float | None
    reviewer_id: str | None
    created_at: datetime

    @classmethod
    def of(cls, row: Review) -> ReviewOut:
        return cls.model_validate(row, from_attributes=True)


class ItemOut(BaseModel):
    id: str
    bot: str
    status: str
    priority: float
    reasons: list[str]
    group_key: str | None
    group_size: int
    exchange_id: str
    conversation: list[dict[str, Any]]
    question: str
    passages: list[dict[str, Any]]
    citations: list[dict[str, Any]]
    live_answer: str
    live_release_id: str | None
    release_id: str | None
    reviewed_answer: str
    candidates: list[CandidateAnswer]
    reviews: list[ReviewOut]
    lock: LockOut | None

    @classmethod
    def of(cls, d: review_service.ItemDetail) -> ItemOut:
        return cls(
            id=d.item.id,
            bot=d.bot.slug,
            status=d.item.status,
            priority=d.item.priority,
            reasons=d.item.reasons,
            group_key=d.item.group_key,
            group_size=d.group_size,
            exchange_id=d.exchange.id,
            conversation=d.exchange.messages,
            question=d.question,
            passages=d.exchange.passages or [],
            citations=d.exchange.citations or [],
            live_answer=d.exchange.answer,
            live_release_id=d.exchange.release_id,
            release_id=d.item.release_id,
            reviewed_answer=d.reviewed_answer,
            candidates=d.candidates,
            reviews=[ReviewOut.of(r) for r in d.reviews],
            lock=LockOut.of(d.lock),
        )


class VerdictIn(BaseModel):
    verdict: str = Field(description="approved | corrected | rejected | skipped")
    corrected_text: str | None = Field(
        None, description="The corrected answer (verdict=corrected)."
    )
    reason: str | None = Field(
        None, description="wrong | should_refuse | unsafe | outdated (verdict=rejected)."
    )
    comment: str = ""
    apply_to_group: bool = Field(
        False,
        description="Settle the other pending items of the group the same way (a deliberate "
        "choice: near-identical questions may still need different answers).",
    )


class OutcomeOut(BaseModel):
    review: ReviewOut
    item_id: str
    status: str
    settled: list[str]
    annotation_id: str | None
    diff: list[dict[str, str]] = Field(
        description="Word diff of the correction against the answer."
    )


class AnnotationOut(BaseModel):
    id: str
    bot_id: str
    question: str
    answer: str
    review_id: str | None
    enabled: bool
    awaiting_approval: bool = Field(
        description="Four-eyes: waiting for a second reviewer's approval."
    )
    answered: int = Field(description="Client questions it answered (exchanges marked with it).")
    created_at: datetime

    @classmethod
    def of(cls, row: Annotation, answered: dict[str, int]) -> AnnotationOut:
        return cls(
            id=row.id,
            bot_id=row.bot_id,
            question=row.question,
            answer=row.answer,
            review_id=row.review_id,
            enabled=row.enabled,
            awaiting_approval=row.awaiting_approval,
            answered=answered.get(row.id, 0),
            created_at=row.created_at,
        )


class AnnotationPatch(BaseModel):
    enabled: bool


def _bot(session: SessionDep, actor: Actor, slug: str) -> Bot:
    try:
        return require_bot(actor, get_bot(session, slug))
    except NotFound as exc:
        raise NotFound(f"No bot '{slug}'.", param="bot") from exc


@router.post("/session")
def login(data: LoginIn, request: Request, response: Response, session: SessionDep) -> MeOut:
    settings = request.app.state.settings
    client = request.client.host if request.client else "?"
    cookie, staff_session, actor = log_in(
        session,
        SessionCodec.from_settings(settings),
        login_throttle(request.app.state),
        email=data.email,
        password=data.password,
        client=client,
    )
    response.set_cookie(
        SESSION_COOKIE,
        cookie,
        max_age=settings.session_ttl_s,
        httponly=True,
        secure=settings.secure_cookies,
        samesite="lax",
        path="/",
    )
    return _me(session, actor, staff_session.csrf)


@router.delete("/session", status_code=204)
def logout(_: ReviewActor, request: Request, response: Response, session: SessionDep) -> Response:
    log_out(
        session,
        SessionCodec.from_settings(request.app.state.settings),
        request.cookies.get(SESSION_COOKIE),
    )
    response.delete_cookie(SESSION_COOKIE, path="/")
    response.status_code = 204
    return response


@router.get("/me")
def me(actor: ReviewActor, request: Request, session: SessionDep) -> MeOut:
    resolved = resolve_session(
        session,
        SessionCodec.from_settings(request.app.state.settings),
        request.cookies.get(SESSION_COOKIE),
    )
    return _me(
        session, actor, resolved[1].csrf if resolved and bearer_token(request) is None else None
    )


def _me(session: SessionDep, actor: Actor, csrf: str | None) -> MeOut:
    bots = [b.slug for b in reviewable_bots(session, actor)]
    return MeOut(
        id=actor.id, email=actor.label, name=actor.name, role=actor.role, bots=bots, csrf_token=csrf
    )


@router.get("/items")
def queue(
    actor: ReviewActor,
    session: SessionDep,
    bot: str | None = None,
    status: str = "pending",
    reason: str | None = None,
    release: str | None = None,
    limit: int = Query(50, ge=1, le=500),
    offset: int = Query(0, ge=0, le=10_000_000),
) -> QueueOut:
    flt, _ = resolve_filter(session, actor, bot=bot, status=status, reason=reason, release=release)
    page = list_queue(session, actor, flt, limit=limit, offset=offset)
    return QueueOut(
        items=[
            QueueItemOut(
                id=e.item.id,
                bot=e.bot_slug,
                release_id=e.item.release_id,
                release_version=e.release_version,
                status=e.item.status,
                priority=e.item.priority,
                reasons=e.item.reasons,
                group_key=e.item.group_key,
                group_size=e.group_size,
                question=e.question,
                answer=e.answer,
                lock=LockOut.of(e.lock),
                created_at=e.item.created_at,
            )
            for e in page.entries
        ],
        counts={s: {"items": n, "groups": g} for s, (n, g) in page.counts.items()},
        total_groups=page.total_groups,
        limit=page.limit,
        offset=page.offset,
    )


@router.post("/next")
def next_item(
    actor: ReviewActor,
    session: SessionDep,
    request: Request,
    bot: str | None = None,
    reason: str | None = None,
    release: str | None = None,
) -> dict[str, ItemOut | None]:
    """Lock the next pending item nobody holds and return it (`{"item": null}` when there is none)."""
    flt, _ = resolve_filter(session, actor, bot=bot, reason=reason, release=release)
    item = review_service.lock_next(
        session, actor, flt, lock_s=request.app.state.settings.review_lock_s
    )
    return {"item": ItemOut.of(review_service.get_item(session, actor, item.id)) if item else None}


@router.get("/items/{item_id}")
def get_item(item_id: str, actor: ReviewActor, session: SessionDep) -> ItemOut:
    return ItemOut.of(review_service.get_item(session, actor, item_id))


@router.post("/items/{item_id}/live")
def live_item(item_id: str, actor: ReviewActor, session: SessionDep) -> ItemOut:
    """The live answer's item for the same exchange (queued now if needed), to correct it too."""
    live = review_service.live_item(session, actor, item_id)
    return ItemOut.of(review_service.get_item(session, actor, live.id))


@router.post("/items/{item_id}/lock")
def lock_item(item_id: str, actor: ReviewActor, session: SessionDep, request: Request) -> LockOut:
    lock = review_service.lock_item(
        session, actor, item_id, lock_s=request.app.state.settings.review_lock_s
    )
    return LockOut(holder=lock.holder, until=lock.until, mine=True)


@router.delete("/items/{item_id}/lock", status_code=204)
def unlock_item(item_id: str, actor: ReviewActor, session: SessionDep) -> Response:
    review_service.unlock_item(session, actor, item_id)
    return Response(status_code=204)


@router.post("/items/{item_id}/review")
def review_item(
    item_id: str, data: VerdictIn, actor: ReviewActor, session: SessionDep, request: Request
) -> OutcomeOut:
    outcome = review_service.act(
        session, actor, item_id, review_service.Verdict(**data.model_dump())
    )
    review = outcome.review
    diff = (
        word_diff(review.original_text, review.corrected_text)
        if review.corrected_text is not None
        else []
    )
    return OutcomeOut(
        review=ReviewOut.of(review),
        item_id=outcome.item.id,
        status=outcome.item.status,
        settled=outcome.settled,
        annotation_id=outcome.annotation.id if outcome.annotation else None,
        diff=[{"op": s.op, "text": s.text} for s in diff],
    )


@router.get("/bots")
def bots(actor: ReviewActor, session: SessionDep) -> list[dict[str, str]]:
    return [{"id": b.id, "slug": b.slug, "name": b.name} for b in reviewable_bots(session, actor)]


@router.get("/bots/{slug}/metrics")
def metrics(
    slug: str, actor: ReviewActor, session: SessionDep, days: int = Query(30, ge=1, le=366)
) -> dict[str, Any]:
    m = review_metrics.bot_metrics(session, actor, _bot(session, actor, slug), days=days)
    return {
        "bot": m.bot.slug,
        "days": m.days,
        "thresholds": review_metrics.thresholds(m.policy),
        "annotations": {
            "enabled": m.annotations_enabled,
            "total": m.annotations_total,
            "hits": m.annotation_hits,
            "hits_in_window": m.annotation_hits_window,
        },
        "releases": [
            {
                "release_id": r.release.id,
                "version": r.release.version,
                "adapter": r.release.adapter,
                "mode": r.release.mode,
                "live": r.live,
                "candidate": r.release.candidate,
                **r.tally.as_dict(),
                "decision": {"action": r.decision.action, "reason": r.decision.reason},
                "series": [{"day": p.day.isoformat(), **p.tally.as_dict()} for p in r.series],
            }
            for r in m.releases
        ],
    }


@router.patch("/bots/{slug}/thresholds")
def update_thresholds(
    slug: str,
    data: review_metrics.ThresholdUpdate,
    actor: ReviewActor,
    session: SessionDep,
    request: Request,
) -> dict[str, Any]:
    bot = _bot(session, actor, slug)
    policy = review_metrics.update_thresholds(session, actor, bot, data)
    return review_metrics.thresholds(policy)


@router.get("/bots/{slug}/annotations")
def list_annotations(
    slug: str, actor: ReviewActor, session: SessionDep, limit: int = Query(200, ge=1, le=1000)
) -> list[AnnotationOut]:
    bot = _bot(session, actor, slug)
    answered = annotation_service.answered_counts(session, bot.id)
    return [
        AnnotationOut.of(a, answered)
        for a in annotation_service.list_annotations(session, bot.id, limit=limit)
    ]


@router.post("/annotations/{annotation_id}/approve")
def approve_annotation(
    annotation_id: str, actor: ReviewActor, session: SessionDep
) -> AnnotationOut:
    """A second reviewer approves a four-eyes annotation: from now on it answers clients."""
    row = annotation_service.approve(session, actor, annotation_id)
    return AnnotationOut.of(row, annotation_service.answered_counts(session, row.bot_id))


@router.patch("/annotations/{annotation_id}")
def patch_annotation(
    annotation_id: str,
    data: AnnotationPatch,
    actor: ReviewActor,
    session: SessionDep,
    request: Request,
) -> AnnotationOut:
    row = annotation_service.set_enabled(session, actor, annotation_id, data.enabled)
    return AnnotationOut.of(row, annotation_service.answered_counts(session, row.bot_id))
