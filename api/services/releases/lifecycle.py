"""Releases: what answers for a bot, and the alias that says which one clients reach.

A release is immutable (base model + optional adapter + prompt + mode); a change is a new release
with the next version. Moving the alias (`Bot.live_release_id`) promotes or rolls back, in one
compare-and-set UPDATE with an audit entry, so two admins racing can never both "win". Requests
already running keep the release they started with (the chat turn holds a snapshot), so a move
fails no request. An adapter is loaded into the backend *before* the alias or the candidate set
points at it; once no live or candidate release uses an adapter it is unloaded (the backend lets
requests still using it finish first), and a rollback loads it again from its folder.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, Field, field_validator
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from api.db import rowcount, transaction
from api.errors import Conflict, InvalidRequest, NotFound
from api.ids import new_id
from api.models import AuditEntry, Bot, Release
from api.runtime import Runtime
from api.services.access.audit import AuditActor, record
from api.services.bots.management import get_bot, next_release_version
from api.services.review.metrics import release_decision
from api.services.review.queue import retire_items
from api.unit_of_work import ACCESS, changed
from serving.backend import Backend, BackendError

log = logging.getLogger(__name__)

ReleaseMode = Literal["rag", "adapter", "adapter+rag", "retrieval", "holding"]
ADAPTER_MODES = {"adapter", "adapter+rag"}
MODEL_FREE_MODES = {"retrieval", "holding"}
PROMOTE, ROLLBACK = "release.promote", "release.rollback"
ADAPTER_NAME = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,199}$"

T = TypeVar("T")


class ReleaseCreate(BaseModel):
    """A new release. With `based_on`, every field left out is copied from that release."""

    based_on: str | None = Field(
        None, description="Id of a release of this bot to copy unset fields from."
    )
    base_model: str | None = Field(
        None,
        max_length=500,
        description="Base model (default: the live release's, else the server's model).",
    )
    adapter: str | None = Field(
        None,
        pattern=ADAPTER_NAME,
        description="Versioned LoRA adapter name (e.g. acme-support-v3); the same name must always mean "
        "the same weights.",
    )
    adapter_path: str | None = Field(
        None, max_length=1000, description="Where the backend loads the adapter from."
    )
    system_prompt: str | None = Field(
        None,
        max_length=20_000,
        description="A prompt frozen with the release (None: the bot's current prompt).",
    )
    mode: ReleaseMode = Field(
        "rag",
        description="rag | adapter | adapter+rag | retrieval (best passages, no model) | holding (fixed message).",
    )
    holding_message: str | None = Field(
        None, max_length=2_000, description="What a `holding` release answers."
    )
    notes: str = Field("", max_length=2_000)
    candidate: bool = Field(
        False, description="Attach as a candidate at once (it shadows live traffic)."
    )


class ReleaseView(BaseModel):
    """A release as the API and the CLI show it; `status` is live | candidate | retired."""

    id: str
    bot_id: str
    version: int
    base_model: str
    adapter: str | None
    adapter_path: str | None
    system_prompt: str | None
    mode: str
    holding_message: str | None
    notes: str
    candidate: bool
    status: str
    created_at: datetime

    @field_validator("created_at")
    @classmethod
    def _utc(cls, value: datetime) -> datetime:
        return (
            value if value.tzinfo is not None else value.replace(tzinfo=UTC)
        )  # SQLite drops the zone

    @classmethod
    def of(cls, release: Release, live_release_id: str | None) -> ReleaseView:
        status = (
            "live"
            if release.id == live_release_id
            else "candidate"
            if release.candidate
            else "retired"
        )
        return cls.model_validate({**_fields(release), "status": status})


class AliasMove(BaseModel):
    """A promotion or a rollback: the alias pointed at `before` and now points at `after`; the
    candidates shadowing afterwards; for a promotion, the review decision it went against, if any."""

    bot: str
    action: str
    before: str | None
    after: str
    candidates: list[str] = []
    decision: str | None = None
    decision_reason: str | None = None
    forced: bool = False


# -- reading ------------------------------------------------------------------------------------


def get_release(session: Session, bot: Bot, release_id: str) -> Release:
    """The bot's release by id, or by version (`3` or `v3`, handy on the command line)."""
    version = release_id.removeprefix("v")
    if version.isdigit():
        release = session.scalar(
            select(Release).where(Release.bot_id == bot.id, Release.version == int(version))
        )
    else:
        release = session.get(Release, release_id)
    if release is None or release.bot_id != bot.id:
        raise NotFound(f"Bot '{bot.slug}' has no release '{release_id}'.", param="release_id")
    return release


def list_releases(session: Session, slug: str) -> list[ReleaseView]:
    """The bot's releases, newest version first."""
    bot = get_bot(session, slug)
    rows = session.scalars(
        select(Release).where(Release.bot_id == bot.id).order_by(Release.version.desc())
    )
    return [ReleaseView.of(r, bot.live_release_id) for r in rows]


def view_release(session: Session, slug: str, release_id: str) -> ReleaseView:
    bot = get_bot(session, slug)
    return ReleaseView.of(get_release(session, bot, release_id), bot.live_release_id)


# -- writing (one transaction each; the async wrappers below add adapter loading) ---------------


def create_release(
    session: Session, slug: str, data: ReleaseCreate, *, default_base_model: str, actor: AuditActor
) -> ReleaseView:
    """Add a release with the bot's next version (never changes an existing one)."""
    bot = get_bot(session, slug)
    fields = _resolve_fields(session, bot, data, default_base_model)
    release = Release(
        id=new_id("rel"),
        bot_id=bot.id,
        version=next_release_version(session, bot.id),
        candidate=data.candidate,
        **fields,
    )
    session.add(release)
    session.flush()
    _audit(session, actor, "release.create", "release", release.id, bot.id, None, _fields(release))
    if data.candidate:
        changed(session, ACCESS)
    return ReleaseView.of(release, bot.live_release_id)


def set_candidate(
    session: Session, slug: str, release_id: str, candidate: bool, *, actor: AuditActor
) -> ReleaseView:
    """Attach (`candidate=True`) or detach a release as a shadowing candidate."""
    bot = get_bot(session, slug)
    release = get_release(session, bot, release_id)
    if candidate and release.id == bot.live_release_id:
        raise Conflict(
            f"Release v{release.version} is live; only other releases can be candidates.",
            param="release_id",
            code="release_is_live",
        )
    if release.candidate != candidate:
        release.candidate = candidate
        _audit(
            session,
            actor,
            "release.attach" if candidate else "release.detach",
            "release",
            release.id,
            bot.id,
            {"candidate": not candidate},
            {"candidate": candidate},
        )
        session.flush()
        retire_items(session, bot)
        changed(session, ACCESS)
    return ReleaseView.of(release, bot.live_release_id)


def promote(
    session: Session, slug: str, release_id: str, *, actor: AuditActor, force: bool = False
) -> AliasMove:
    """Point the bot's alias at `release_id` (it stops being a candidate). Unless `force`, only a
    release whose review decision is "promote" may go live: a redo or a release still collecting
    reviews is refused with the decision, and a forced promotion is recorded as such."""
    bot = get_bot(session, slug)
    release = get_release(session, bot, release_id)
    if release.id == bot.live_release_id:
        raise Conflict(
            f"Release v{release.version} is already live.", param="release_id", code="already_live"
        )
    decision = release_decision(session, bot, release.id)
    if decision.action != "promote" and not force:
        raise Conflict(
            f"The review decision for v{release.version} is {decision.action.upper()} "
            f"({decision.reason}); promote it anyway with force.",
            param="release_id",
            code="decision_not_promote",
        )
    candidates = sorted(_candidates(session, bot) - {release.id})
    return _move_alias(
        session,
        bot,
        release,
        PROMOTE,
        actor,
        candidates,
        decision=decision.action,
        decision_reason=decision.reason,
        forced=decision.action != "promote",
    )


def rollback(session: Session, slug: str, *, actor: AuditActor) -> AliasMove:
    """Restore the bot as it was before the last promotion not yet rolled back: the same live
    release and the same candidates. Repeated rollbacks walk further back through the promotions."""
    bot = get_bot(session, slug)
    target = rollback_target(session, bot)
    if target is None:
        raise Conflict(
            f"Bot '{bot.slug}' has no earlier release to roll back to.", code="nothing_to_roll_back"
        )
    live, candidates = target
    return _move_alias(session, bot, get_release(session, bot, live), ROLLBACK, actor, candidates)


def rollback_target(session: Session, bot: Bot) -> tuple[str, list[str]] | None:
    """Replay the bot's alias moves from the audit log as a stack: a promotion pushes the state it
    replaced (live release and candidates), a rollback pops. The top is where a rollback goes."""
    moves = session.scalars(
        select(AuditEntry)
        .where(
            AuditEntry.entity == "bot",
            AuditEntry.entity_id == bot.id,
            AuditEntry.action.in_((PROMOTE, ROLLBACK)),
        )
        .order_by(AuditEntry.created_at, AuditEntry.id)
    )
    stack: list[tuple[str, list[str]]] = []
    for move in moves:
        before = move.before or {}
        if move.action == PROMOTE and before.get("live_release_id"):
            stack.append((str(before["live_release_id"]), list(before.get("candidates") or [])))
        elif move.action == ROLLBACK and stack:
            stack.pop()
    return stack[-1] if stack else None


def _candidates(session: Session, bot: Bot) -> set[str]:
    return set(
        session.scalars(
            select(Release.id).where(Release.bot_id == bot.id, Release.candidate.is_(True))
        )
    )


def _move_alias(
    session: Session,
    bot: Bot,
    release: Release,
    action: str,
    actor: AuditActor,
    candidates: list[str],
    *,
    decision: str | None = None,
    decision_reason: str | None = None,
    forced: bool = False,
) -> AliasMove:
    before = bot.live_release_id
    candidates_before = sorted(_candidates(session, bot))
    # Compare-and-set: if another promotion committed since we read the bot, refuse instead of
    # writing an audit entry whose "before" is wrong.
    moved = session.execute(
        update(Bot)
        .where(Bot.id == bot.id, Bot.live_release_id.is_not_distinct_from(before))
        .values(live_release_id=release.id)
        .execution_options(synchronize_session=False)
    )
    if rowcount(moved) != 1:
        raise Conflict(
            f"Bot '{bot.slug}' changed its live release meanwhile; try again.", code="alias_moved"
        )
    wanted = set(candidates) - {release.id}
    for row in session.scalars(select(Release).where(Release.bot_id == bot.id)):
        row.candidate = row.id in wanted
    after: dict[str, Any] = {
        "live_release_id": release.id,
        "version": release.version,
        "candidates": sorted(wanted),
    }
    if decision is not None:
        after |= {"decision": decision, "decision_reason": decision_reason, "forced": forced}
    _audit(
        session,
        actor,
        action,
        "bot",
        bot.id,
        bot.id,
        {"live_release_id": before, "candidates": candidates_before},
        after,
    )
    session.flush()
    session.refresh(bot)
    retire_items(session, bot)
    changed(session, ACCESS)
    return AliasMove(
        bot=bot.slug,
        action=action,
        before=before,
        after=release.id,
        candidates=sorted(wanted),
        decision=decision,
        decision_reason=decision_reason,
        forced=forced,
    )


def _resolve_fields(
    session: Session, bot: Bot, data: ReleaseCreate, default_base_model: str
) -> dict[str, Any]:
    """The new release's fields (copied from `based_on` where unset), validated."""
    given = data.model_dump(exclude_unset=True, exclude={"based_on", "candidate"})
    base: dict[str, Any] = {}
    if data.based_on is not None:
        base = _fields(get_release(session, bot, data.based_on))
    elif bot.live_release is not None:
        base = {"base_model": bot.live_release.base_model}
    fields = {
        "base_model": default_base_model,
        "adapter": None,
        "adapter_path": None,
        "system_prompt": None,
        "mode": "rag",
        "holding_message": None,
        "notes": "",
    }
    fields.update({k: v for k, v in base.items() if k in fields})
    if given.get("adapter", "") is None and "adapter_path" not in given:
        fields["adapter_path"] = None  # dropping the adapter drops where it came from
    fields.update({k: v for k, v in given.items() if not (k == "base_model" and v is None)})
    if fields["mode"] in ADAPTER_MODES and not fields["adapter"]:
        raise InvalidRequest(f"Mode '{fields['mode']}' needs an adapter.", param="adapter")
    if fields["mode"] in MODEL_FREE_MODES and fields["adapter"]:
        raise InvalidRequest(
            f"Mode '{fields['mode']}' answers without a model; it takes no adapter.",
            param="adapter",
        )
    if fields["adapter_path"] and not fields["adapter"]:
        raise InvalidRequest("adapter_path needs an adapter name.", param="adapter")
    if fields["adapter"] and fields["adapter_path"]:
        clash = session.scalar(
            select(Release.adapter_path)
            .where(
                Release.adapter == fields["adapter"],
                Release.adapter_path.is_not(None),
                Release.adapter_path != fields["adapter_path"],
            )
            .limit(1)
        )
        if clash is not None:
            raise Conflict(
                f"Adapter '{fields['adapter']}' already names the weights at {clash}; adapter names are "
                "immutable, give the new weights a new version.",
                param="adapter",
                code="adapter_name_taken",
            )
    return fields


def _fields(release: Release) -> dict[str, Any]:
    return {
        "id": release.id,
        "bot_id": release.bot_id,
        "version": release.version,
        "base_model": release.base_model,
        "adapter": release.adapter,
        "adapter_path": release.adapter_path,
        "system_prompt": release.system_prompt,
        "mode": release.mode,
        "holding_message": release.holding_message,
        "notes": release.notes,
        "candidate": release.candidate,
        "created_at": release.created_at,
    }


def _audit(
    session: Session,
    actor: AuditActor,
    action: str,
    entity: str,
    entity_id: str,
    bot_id: str,
    before: dict[str, Any] | None,
    after: dict[str, Any] | None,
) -> None:
    record(
        session,
        actor,
        action,
        entity=entity,
        entity_id=entity_id,
        bot_id=bot_id,
        before=_jsonable(before),
        after=_jsonable(after),
    )


def _jsonable(values: dict[str, Any] | None) -> dict[str, Any] | None:
    if values is None:
        return None
    return {k: v.isoformat() if isinstance(v, datetime) else v for k, v in values.items()}


# -- with the backend: load adapters first, then move, then drop cached bot lookups -------------


async def ensure_servable(
    runtime: Runtime, *, adapter: str | None, adapter_path: str | None
) -> None:
    """Make sure the backend can answer with this adapter (loading it, idempotently); a clear 400 if not."""
    backend = runtime.backend
    if adapter is None:
        return
    if adapter_path is None:
        # Named but not loadable by us: only a backend that serves adapters can already have it.
        if type(backend).load_adapter is Backend.load_adapter:
            raise InvalidRequest(
                f"The {backend.kind} backend cannot serve adapters ('{adapter}').",
                param="adapter",
                code="adapter_unsupported",
            )
        return
    try:
        await runtime.ensure_adapter(adapter, adapter_path)
    except BackendError as exc:
        raise InvalidRequest(
            f"Could not load adapter '{adapter}' from {adapter_path}: {exc}",
            param="adapter",
            code="adapter_load_failed",
        ) from exc


async def create(
    runtime: Runtime, slug: str, data: ReleaseCreate, actor: AuditActor
) -> ReleaseView:
    """Create a release; with `candidate`, its adapter is loaded first (nothing is stored if that fails)."""
    if data.candidate:

        def resolve(session: Session) -> dict[str, Any]:
            return _resolve_fields(session, get_bot(session, slug), data, runtime.settings.model)

        fields = await _in_transaction(runtime, resolve)
        await ensure_servable(
            runtime, adapter=fields["adapter"], adapter_path=fields["adapter_path"]
        )
    view = await _in_transaction(
        runtime,
        lambda s: create_release(
            s, slug, data, default_base_model=runtime.settings.model, actor=actor
        ),
    )
    return view


async def attach(runtime: Runtime, slug: str, release_id: str, actor: AuditActor) -> ReleaseView:
    release = await _in_transaction(runtime, lambda s: view_release(s, slug, release_id))
    await ensure_servable(runtime, adapter=release.adapter, adapter_path=release.adapter_path)
    view = await _in_transaction(
        runtime, lambda s: set_candidate(s, slug, release_id, True, actor=actor)
    )
    return view


async def detach(runtime: Runtime, slug: str, release_id: str, actor: AuditActor) -> ReleaseView:
    view = await _in_transaction(
        runtime, lambda s: set_candidate(s, slug, release_id, False, actor=actor)
    )
    await unload_retired_adapters(runtime)
    return view


async def promote_release(
    runtime: Runtime, slug: str, release_id: str, actor: AuditActor, *, force: bool = False
) -> AliasMove:
    release = await _in_transaction(runtime, lambda s: view_release(s, slug, release_id))
    await ensure_servable(runtime, adapter=release.adapter, adapter_path=release.adapter_path)
    move = await _in_transaction(
        runtime, lambda s: promote(s, slug, release_id, actor=actor, force=force)
    )
    await unload_retired_adapters(runtime)
    return move


async def rollback_release(runtime: Runtime, slug: str, actor: AuditActor) -> AliasMove:
    def target(session: Session) -> ReleaseView | None:
        bot = get_bot(session, slug)
        found = rollback_target(session, bot)
        return (
            None
            if found is None
            else ReleaseView.of(get_release(session, bot, found[0]), bot.live_release_id)
        )

    release = await _in_transaction(runtime, target)
    if release is not None:
        await ensure_servable(runtime, adapter=release.adapter, adapter_path=release.adapter_path)
    move = await _in_transaction(runtime, lambda s: rollback(s, slug, actor=actor))
    await unload_retired_adapters(runtime)
    return move


async def load_active_adapters(runtime: Runtime) -> None:
    """Load the adapters of every live and candidate release (at start: an upstream that restarted
    has forgotten them). Failures are logged, not raised: the server must still start."""

    runtime.forget_adapters()
    for adapter, path in await _in_transaction(runtime, _active_adapters):
        try:
            await runtime.ensure_adapter(adapter, path)
        except BackendError as exc:
            log.error("could not load adapter %s from %s: %s", adapter, path, exc)


async def reconcile_adapters(runtime: Runtime, seen_extra: set[str]) -> set[str]:
    """Make the backend hold the adapters of every live and candidate release: load the missing
    ones (a restarted vLLM holds none), unload those of retired releases. Adapters no release
    names are left alone (the server may serve other clients of its operator). A retired adapter
    is unloaded only when it was extra the previous time too (`seen_extra`): another replica may
    have just loaded it for a release it is about to commit. Returns the extras to check next
    time."""
    listed = await runtime.backend.listed_adapters()
    if listed is None:
        return set()
    wanted, ours = await _in_transaction(runtime, _adapter_names)
    # Only release adapters count as ours: a promotion unloads retired ones from this record.
    runtime.sync_adapters({name: path for name, path in listed.items() if name in ours})
    for name, path in wanted.items():
        if name in listed:
            continue
        try:
            await runtime.ensure_adapter(name, path)
            log.info("loaded adapter %s, which the backend did not hold", name)
        except BackendError as exc:
            log.error("could not load adapter %s from %s: %s", name, path, exc)
    extra = (set(listed) - set(wanted)) & ours
    for name in sorted(extra & seen_extra):
        try:
            await runtime.drop_adapter(name)
            log.info("unloaded adapter %s: no live or candidate release uses it", name)
        except BackendError as exc:
            log.error("could not unload adapter %s: %s", name, exc)
    return extra - seen_extra


async def unload_retired_adapters(runtime: Runtime) -> list[str]:
    """Unload the adapters this process loaded that no live or candidate release uses any more;
    returns their names. Failures are logged: a leftover adapter costs memory, not answers."""
    active = {name for name, _ in await _in_transaction(runtime, _active_adapters)}
    retired = sorted(set(runtime.loaded_adapters) - active)
    for name in retired:
        try:
            await runtime.drop_adapter(name)
        except BackendError as exc:
            log.error("could not unload adapter %s: %s", name, exc)
    return retired


def _adapter_names(session: Session) -> tuple[dict[str, str], set[str]]:
    """The adapters live and candidate releases use (name -> folder), and every adapter name any
    release ever used."""
    ours = session.scalars(select(Release.adapter).where(Release.adapter.is_not(None))).all()
    return dict(_active_adapters(session)), {str(name) for name in ours}


def _active_adapters(session: Session) -> list[tuple[str, str]]:
    """(name, folder) of the adapters of every live and candidate release."""
    live = select(Bot.live_release_id).where(Bot.live_release_id.is_not(None))
    rows = session.execute(
        select(Release.adapter, Release.adapter_path)
        .where(
            Release.adapter.is_not(None),
            Release.adapter_path.is_not(None),
            (Release.candidate.is_(True)) | Release.id.in_(live),
        )
        .distinct()
    )
    return [(str(a), str(p)) for a, p in rows]


async def _in_transaction(runtime: Runtime, work: Callable[[Session], T]) -> T:
    def run() -> T:
        with transaction(runtime.sessions) as session:
            return work(session)

    return await asyncio.to_thread(run)
