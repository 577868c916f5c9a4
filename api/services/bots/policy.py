"""A bot's shadow, review and promotion policy (stored as JSON on the bot, defaults documented here)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field


class BotPolicy(BaseModel):
    # Shadow
    shadow_sample_rate: float = Field(
        1.0, ge=0.0, le=1.0, description="Share of live exchanges each candidate also answers."
    )
    # Review queue
    review_enabled: bool = Field(
        True, description="Feed this bot's answers to the review queue at all."
    )
    review_sample_rate: float = Field(
        1.0,
        ge=0.0,
        le=1.0,
        description="Share of answers queued for review at random (1.0: everything). Priority cases "
        "(low retrieval score, strong live/candidate disagreement, client thumbs-down, a question unlike "
        "anything reviewed) are queued regardless.",
    )
    low_retrieval_score: float = Field(
        0.40, description="Top passage score below this is a priority."
    )
    disagreement_distance: float = Field(
        0.60,
        description="Normalised edit distance between live and candidate answers above this is a priority.",
    )
    novelty_similarity: float = Field(
        0.50,
        description="A question less similar than this to every reviewed question is a priority.",
    )
    group_similarity: float = Field(
        0.92, description="Questions at least this similar share a review group (reviewed once)."
    )
    live_review_sample_rate: float = Field(
        0.1,
        ge=0.0,
        le=1.0,
        description="While candidates shadow, the share of live answers queued too, so a wrong "
        "live answer can still be corrected (without candidates, review_sample_rate applies).",
    )
    refusal_review_sample_rate: float = Field(
        0.2,
        ge=0.0,
        le=1.0,
        description="Share of refusals queued for review: a wrong refusal is as bad as a wrong answer.",
    )
    # Decision
    min_reviews: int = Field(20, ge=1, description="Reviews of a release needed before a decision.")
    promote_threshold: float = Field(
        0.20,
        ge=0.0,
        le=1.0,
        description="Modified share (corrected + rejected) at or below this: promote.",
    )
    retrain_threshold: float = Field(
        0.50,
        ge=0.0,
        le=1.0,
        description="Modified share at or below this (above promote): retrain; above: redo.",
    )
    # Evaluation gate (a trained adapter against the live release on held-out rows)
    gate_min_gain: float = Field(
        0.0,
        ge=-1.0,
        le=1.0,
        description="The adapter passes when its similarity to the references (mean of embedding "
        "cosine and ROUGE-L) is at least the live release's plus this.",
    )
    gate_refusal_tolerance: float = Field(
        0.0,
        ge=0.0,
        le=1.0,
        description="How much lower than live's the adapter's refusal accuracy may be.",
    )
    gate_auto_candidate: bool = Field(
        True,
        description="A passing adapter becomes a candidate release at once (it starts shadowing).",
    )
    # Annotation reply
    annotations_enabled: bool = True
    annotation_approval: Literal["immediate", "four_eyes"] = Field(
        "immediate",
        description="immediate: a reviewer's approved or corrected answer answers near-identical "
        "client questions at once; four_eyes: only after a second reviewer approves it.",
    )
    annotation_similarity: float = Field(
        0.90,
        ge=0.0,
        le=1.0,
        description="A client question this similar to an approved one gets its answer.",
    )
    # Training data
    training_pii: Literal["flag", "redact"] = Field(
        "flag",
        description="Personal data (e-mails, phones, cards, IBANs, ...) in training rows: flag the "
        "rows for review, or redact it (replace it with [EMAIL], [PHONE], ...) and flag them.",
    )
    training_pii_allow: list[str] = Field(
        default_factory=list,
        description="E-mails and numbers that are not personal data (the company's own support "
        "address or phone line): never flagged or redacted.",
    )


def policy_of(raw: dict[str, Any] | None) -> BotPolicy:
    return BotPolicy.model_validate(raw or {})
