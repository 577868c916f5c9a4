"""The demo bot every embedded install starts with (slug `demo`)."""

from __future__ import annotations

from sqlalchemy.orm import Session

from api.services.bots import BotCreate, create_bot, find_bot

DEMO_SLUG = "demo"

DEMO_BOT = BotCreate(
    slug=DEMO_SLUG,
    name="Demo support bot",
    system_prompt=(
        "You are a friendly, concise customer-support assistant. Answer the customer's question in a few "
        "sentences. If you do not know the answer, say so."
    ),
    scope="Questions about the product, its setup, features, troubleshooting and accounts.",
    refusal_message="Sorry, I can only help with questions about our product.",
    temperature=0.2,
    max_tokens=200,
)


def ensure_demo_bot(session: Session, *, base_model: str) -> bool:
    """Create the demo bot if it is missing; True when it was created."""
    if find_bot(session, DEMO_SLUG) is not None:
        return False
    create_bot(session, DEMO_BOT, base_model=base_model)
    return True
