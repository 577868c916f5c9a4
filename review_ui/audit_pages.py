"""The audit log page (admins): who changed what and when, with filters."""

from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response

from api.deps import SessionDep
from api.services.access import audit
from api.services.access.staff import require_admin
from api.services.bots.management import find_bot, list_bots
from review_ui.auth import ViewerDep
from review_ui.rendering import render

router = APIRouter(prefix="/review", include_in_schema=False)


@router.get("/audit")
def audit_page(
    request: Request,
    viewer: ViewerDep,
    session: SessionDep,
    bot: str | None = None,
    actor: str | None = Query(None, max_length=320),
    action: str | None = Query(None, max_length=60),
    since: datetime | None = None,
    page: int = Query(1, ge=1, le=100_000),
) -> Response:
    require_admin(viewer.actor)
    per_page = 100
    found = find_bot(session, bot) if bot else None
    flt = audit.AuditFilter(
        bot_id=found.id if found else ("-" if bot else None),
        actor=actor or None,
        action=action or None,
        since=since,
    )
    entries = audit.list_entries(session, flt, limit=per_page + 1, offset=(page - 1) * per_page)
    bots = {b.id: b.slug for b in list_bots(session)}
    return render(
        request,
        "audit.html",
        {
            "title": "Audit log",
            "viewer": viewer,
            "nav": "audit",
            "entries": entries[:per_page],
            "more": len(entries) > per_page,
            "page": page,
            "bots": bots,
            "filters": {
                "bot": bot or "",
                "actor": actor or "",
                "action": action or "",
                "since": since.date().isoformat() if since else "",
            },
        },
    )
