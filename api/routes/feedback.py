"""`POST /v1/exchanges/{exchange_id}/feedback`: a client's thumbs-up or thumbs-down on an answer.
A thumbs-down puts the answer in front of reviewers (a priority in the review queue)."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict
from starlette.concurrency import run_in_threadpool

from api.db import transaction
from api.deps import bearer_token
from api.errors import NotFound
from api.jobs.queue import enqueue
from api.models import Exchange
from api.runtime import Runtime
from api.services.keys import authenticate

router = APIRouter()


class Feedback(BaseModel):
    model_config = ConfigDict(extra="forbid")
    rating: Literal["up", "down"]


@router.post("/v1/exchanges/{exchange_id}/feedback")
async def give_feedback(exchange_id: str, body: Feedback, request: Request) -> dict[str, str]:
    runtime: Runtime = request.app.state.runtime
    token = bearer_token(request)

    def record() -> None:
        with transaction(runtime.sessions) as session:
            admin = runtime.settings.admin_key.get_secret_value() if runtime.settings.admin_key else None
            key = authenticate(session, token, bootstrap_admin=admin)
            exchange = session.get(Exchange, exchange_id)
            # Another bot's exchange looks exactly like a missing one: nothing leaks across tenants.
            if exchange is None or not (key.is_admin or any(b.id == exchange.bot_id for b in key.bots)):
                raise NotFound(f"No exchange with id '{exchange_id}'.", param="exchange_id")
            exchange.feedback = 1 if body.rating == "up" else -1
            if body.rating == "down":
                enqueue(session, "review_feed", {"exchange_id": exchange_id}, bot_id=exchange.bot_id)

    await run_in_threadpool(record)
    if body.rating == "down":
        runtime.notify_worker()
    return {"exchange_id": exchange_id, "rating": body.rating}
