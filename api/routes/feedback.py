"""`POST /v1/exchanges/{exchange_id}/feedback`: a client's thumbs-up or thumbs-down on an answer.
A thumbs-down puts the answer in front of reviewers (a priority in the review queue)."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from api.db import transaction
from api.deps import bearer_token, bootstrap_admin_secret
from api.runtime import Runtime
from api.services.access.keys import authenticate
from api.services.chat.exchanges import record_feedback

router = APIRouter()


class Feedback(BaseModel):
    model_config = ConfigDict(extra="forbid")
    rating: Literal["up", "down"]
    comment: str | None = Field(None, max_length=2000, description="What the client wants to add.")


@router.post("/v1/exchanges/{exchange_id}/feedback")
async def give_feedback(exchange_id: str, body: Feedback, request: Request) -> dict[str, str]:
    runtime: Runtime = request.app.state.runtime
    token = bearer_token(request)

    def record() -> None:
        with transaction(runtime.sessions) as session:
            key = authenticate(
                session, token, bootstrap_admin=bootstrap_admin_secret(runtime.settings)
            )
            record_feedback(session, key, exchange_id, body.rating, body.comment)

    await run_in_threadpool(
        record
    )  # a thumbs-down queues a review job: the commit wakes the worker
    return {"exchange_id": exchange_id, "rating": body.rating}
