"""The item page: conversation, passages, answers, actions (approve, edit, reject, skip), locks."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import RedirectResponse, Response

from api.deps import SessionDep
from api.errors import ApiError
from api.services.review import queue as review_queue
from api.services.review import verdicts as reviews
from api.services.review.answer_edits import word_diff
from review_ui.auth import ViewerDep
from review_ui.queue_pages import filter_query, page_filter
from review_ui.rendering import render

router = APIRouter(prefix="/review/items", include_in_schema=False)

REASON_LABELS = {
    "wrong": "Wrong",
    "should_refuse": "Should refuse",
    "unsafe": "Unsafe",
    "outdated": "Outdated",
}
ITEM_SHORTCUTS = [
    ("a", "approve the answer"),
    ("e", "edit, then approve the edit"),
    ("Ctrl+Enter", "save the edit"),
    ("r", "reject: 1–4 for the reason, then a comment, Ctrl+Enter saves"),
    ("s", "skip"),
    ("l", "review the live answer too (on a candidate's answer)"),
    ("g", "apply to the whole group or not"),
    ("j / k", "next / previous item"),
    ("q", "back to the queue"),
    ("Esc", "close the edit or reject panel"),
    ("?", "show / hide shortcuts"),
]

FilterBot = Annotated[str | None, Form()]


@router.get("/{item_id}")
def item_page(
    request: Request,
    item_id: str,
    viewer: ViewerDep,
    session: SessionDep,
    bot: str | None = None,
    status: str = "pending",
    reason: str | None = None,
    release: str | None = None,
    prev: str | None = None,
) -> Response:
    flt, selected = page_filter(session, viewer.actor, bot, status, reason, release)
    lock_error = None
    try:  # opening an item holds it; a held item is shown read-only
        reviews.lock_item(
            session, viewer.actor, item_id, lock_s=request.app.state.settings.review_lock_s
        )
    except reviews.ItemLocked as exc:
        lock_error = exc.message
    detail = reviews.get_item(session, viewer.actor, item_id)
    order = review_queue.ordered_ids(session, viewer.actor, flt)
    here = order.index(item_id) if item_id in order else None
    latest = detail.latest_review
    previous = None
    if prev:
        try:
            previous = reviews.visible_item(session, viewer.actor, prev)
        except ApiError:
            previous = None
    return render(
        request,
        "item.html",
        {
            "viewer": viewer,
            "d": detail,
            "flt": flt,
            "selected": selected,
            "lock_error": lock_error,
            "query": filter_query(flt, selected),
            "next_id": order[here + 1] if here is not None and here + 1 < len(order) else None,
            "prev_id": prev or (order[here - 1] if here else None),
            "previous": previous,
            "correction": word_diff(latest.original_text, latest.corrected_text)
            if latest is not None and latest.corrected_text is not None
            else None,
            "reasons": REASON_LABELS,
            "shortcuts": ITEM_SHORTCUTS,
            "title": f"Review {detail.bot.slug}",
            "nav": "queue",
            "error": None,
        },
    )


@router.post("/{item_id}/review", response_model=None)
def review_item(
    request: Request,
    item_id: str,
    viewer: ViewerDep,
    session: SessionDep,
    action: Annotated[str, Form()],
    corrected_text: Annotated[str | None, Form(max_length=40_000)] = None,
    comment: Annotated[str, Form(max_length=2_000)] = "",
    reject_reason: Annotated[str | None, Form()] = None,
    apply_to_group: Annotated[bool, Form()] = False,
    bot: FilterBot = None,
    status: Annotated[str, Form()] = "pending",
    filter_reason: Annotated[str | None, Form()] = None,
    release: Annotated[str | None, Form()] = None,
) -> Response:
    """The verdict form: `action` is approved | corrected | skipped | rejected (with
    `reject_reason`, or as rejected:<reason>). Then on to the next pending item."""
    flt, selected = page_filter(session, viewer.actor, bot, status, filter_reason, release)
    verdict, _, reason = action.partition(":")
    reason = reason or (reject_reason or "")
    reviews.act(
        session,
        viewer.actor,
        item_id,
        reviews.Verdict(
            verdict,
            corrected_text if verdict == "corrected" else None,
            reason or None,
            comment,
            apply_to_group,
        ),
    )
    query = filter_query(
        review_queue.QueueFilter(flt.bot_id, "pending", flt.reason, flt.release_id),
        selected,
        status=None,
        prev=item_id,
    )
    return RedirectResponse(f"/review/next?{query}", status_code=303)


@router.post("/{item_id}/live", response_model=None)
def open_live_item(item_id: str, viewer: ViewerDep, session: SessionDep) -> Response:
    """From a candidate's answer to the live answer of the same exchange, to correct that too."""
    live = reviews.live_item(session, viewer.actor, item_id)
    return RedirectResponse(f"/review/items/{live.id}", status_code=303)


@router.post("/{item_id}/leave", response_model=None)
def leave_item(
    item_id: str,
    viewer: ViewerDep,
    session: SessionDep,
    to: Annotated[str, Form()],
    target: Annotated[str | None, Form()] = None,
    bot: FilterBot = None,
    status: Annotated[str, Form()] = "pending",
    filter_reason: Annotated[str | None, Form()] = None,
    release: Annotated[str | None, Form()] = None,
) -> Response:
    """Let go of the item and go to `target` (next / previous item), to the next pending item
    (`to=pending`: from an item already reviewed), or back to the queue."""
    flt, selected = page_filter(session, viewer.actor, bot, status, filter_reason, release)
    reviews.unlock_item(session, viewer.actor, item_id)
    if to == "pending":
        return RedirectResponse(
            f"/review/next?{filter_query(flt, selected, status=None)}", status_code=303
        )
    if to == "queue" or not target:
        return RedirectResponse(f"/review/queue?{filter_query(flt, selected)}", status_code=303)
    return RedirectResponse(
        f"/review/items/{target}?{filter_query(flt, selected)}", status_code=303
    )


@router.post("/{item_id}/lock")
def renew_lock(request: Request, item_id: str, viewer: ViewerDep, session: SessionDep) -> Response:
    """htmx heartbeat while the page is open: keep holding the item."""
    try:
        lock = reviews.lock_item(
            session, viewer.actor, item_id, lock_s=request.app.state.settings.review_lock_s
        )
        message, held = f"You hold this item until {lock.until:%H:%M} UTC.", True
    except reviews.ItemLocked as exc:
        message, held = exc.message, False
    return render(
        request, "partials/lock.html", {"message": message, "held": held, "item_id": item_id}
    )


@router.post("/{item_id}/diff")
def diff_preview(
    request: Request,
    item_id: str,
    viewer: ViewerDep,
    session: SessionDep,
    corrected_text: Annotated[str, Form(max_length=40_000)] = "",
) -> Response:
    """htmx: the word diff of the edit so far against the answer under review."""
    item = reviews.visible_item(session, viewer.actor, item_id)
    original = reviews.reviewed_answer(session, item)
    return render(
        request,
        "partials/diff.html",
        {
            "spans": word_diff(original, corrected_text),
            "changed": corrected_text.strip() != original.strip(),
        },
    )
