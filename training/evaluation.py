"""The evaluation gate: held-out rows answered by the live release and by a candidate, scored
against the reference answers.

- similarity: embedding cosine between each answer and its reference, and ROUGE-L F1 (longest
  common word subsequence; rapidfuzz's LCS, so no extra dependency);
- refusals: whether each answer refuses exactly when the reference does (an off-topic question
  must be declined, an in-scope one answered);
- a per-question table, and a pass rule: the candidate must be at least as close to the references
  as the live release (by `min_gain`) and not worse at refusing (by more than `refusal_tolerance`).

Answering is a callable over chat messages, so the gate judges any release: a local model with or
without an adapter (`LocalAnswerer`), or a backend.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from rapidfuzz.distance import LCSseq

from serving.knowledge.embedders import Embedder
from training.rows import Row

Answerer = Callable[[Sequence[list[dict[str, str]]]], list[str]]

_WORD = re.compile(r"\w+", re.UNICODE)


def rouge_l(candidate: str, reference: str) -> float:
    """ROUGE-L F1 over lower-cased words."""
    a = [w.casefold() for w in _WORD.findall(candidate)]
    b = [w.casefold() for w in _WORD.findall(reference)]
    if not a or not b:
        return 0.0
    lcs = LCSseq.similarity(a, b)
    if lcs == 0:
        return 0.0
    precision, recall = lcs / len(a), lcs / len(b)
    return 2 * precision * recall / (precision + recall)


@dataclass(frozen=True)
class GateRule:
    min_gain: float = 0.0  # candidate similarity - live similarity must be at least this
    refusal_tolerance: float = 0.0  # candidate refusal accuracy may be this much below live's
    refusal_similarity: float = 0.8  # an answer this close (cosine) to the refusal is a refusal


@dataclass
class QuestionScore:
    question: str
    reference: str
    live: str
    candidate: str
    live_cosine: float
    candidate_cosine: float
    live_rouge_l: float
    candidate_rouge_l: float
    should_refuse: bool
    live_refused: bool
    candidate_refused: bool


@dataclass
class SideSummary:
    cosine: float
    rouge_l: float
    similarity: float  # the mean of cosine and ROUGE-L: what the rule compares
    refusal_accuracy: float | None


@dataclass
class GateReport:
    rows: int
    live: SideSummary
    candidate: SideSummary
    passed: bool
    reasons: list[str]
    questions: list[QuestionScore] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _cosines(embedder: Embedder, answers: Sequence[str], references: Sequence[str]) -> list[float]:
    a = np.asarray(embedder.embed_documents(list(answers)), dtype=np.float32)
    b = np.asarray(embedder.embed_documents(list(references)), dtype=np.float32)
    a /= np.linalg.norm(a, axis=1, keepdims=True) + 1e-12
    b /= np.linalg.norm(b, axis=1, keepdims=True) + 1e-12
    return [float(x) for x in (a * b).sum(axis=1)]


def _summary(cos: list[float], rouge: list[float], refusals_right: list[bool]) -> SideSummary:
    c, r = float(np.mean(cos)), float(np.mean(rouge))
    accuracy = float(np.mean(refusals_right)) if refusals_right else None
    return SideSummary(round(c, 4), round(r, 4), round((c + r) / 2, 4), accuracy)


def evaluate(
    rows: Sequence[Row],
    live: Answerer,
    candidate: Answerer,
    embedder: Embedder,
    *,
    refusal: str | None = None,
    rule: GateRule | None = None,
) -> GateReport:
    """Score both answerers on `rows` (their outputs are the references) and apply the rule.
    Rows of category "refusal" must be refused; `refusal` is the bot's refusal text."""
    if not rows:
        raise ValueError("no held-out rows to evaluate on")
    rule = rule or GateRule()
    conversations = [row.messages()[:-1] for row in rows]
    references = [row.output for row in rows]
    live_answers, candidate_answers = live(conversations), candidate(conversations)
    live_cos = _cosines(embedder, live_answers, references)
    cand_cos = _cosines(embedder, candidate_answers, references)
    should_refuse = [row.category == "refusal" for row in rows]
    judge_refusals = refusal is not None and any(should_refuse)
    if judge_refusals:
        assert refusal is not None
        live_ref = [
            c >= rule.refusal_similarity
            for c in _cosines(embedder, live_answers, [refusal] * len(rows))
        ]
        cand_ref = [
            c >= rule.refusal_similarity
            for c in _cosines(embedder, candidate_answers, [refusal] * len(rows))
        ]
    else:
        live_ref = cand_ref = [False] * len(rows)
    questions = [
        QuestionScore(
            question=row.instruction,
            reference=ref,
            live=la,
            candidate=ca,
            live_cosine=round(lc, 4),
            candidate_cosine=round(cc, 4),
            live_rouge_l=round(rouge_l(la, ref), 4),
            candidate_rouge_l=round(rouge_l(ca, ref), 4),
            should_refuse=sr,
            live_refused=lr,
            candidate_refused=cr,
        )
        for row, ref, la, ca, lc, cc, sr, lr, cr in zip(
            rows,
            references,
            live_answers,
            candidate_answers,
            live_cos,
            cand_cos,
            should_refuse,
            live_ref,
            cand_ref,
            strict=True,
        )
    ]
    live_summary = _summary(
        live_cos,
        [q.live_rouge_l for q in questions],
        [q.live_refused == q.should_refuse for q in questions] if judge_refusals else [],
    )
    cand_summary = _summary(
        cand_cos,
        [q.candidate_rouge_l for q in questions],
        [q.candidate_refused == q.should_refuse for q in questions] if judge_refusals else [],
    )
    reasons: list[str] = []
    gain = cand_summary.similarity - live_summary.similarity
    passed = gain >= rule.min_gain
    reasons.append(
        f"similarity to the references: candidate {cand_summary.similarity:.3f} vs live "
        f"{live_summary.similarity:.3f} ({gain:+.3f}; needs {rule.min_gain:+.3f})"
    )
    if cand_summary.refusal_accuracy is not None and live_summary.refusal_accuracy is not None:
        drop = live_summary.refusal_accuracy - cand_summary.refusal_accuracy
        ok = drop <= rule.refusal_tolerance
        passed = passed and ok
        reasons.append(
            f"refusal accuracy: candidate {cand_summary.refusal_accuracy:.0%} vs live "
            f"{live_summary.refusal_accuracy:.0%}"
            + ("" if ok else f" (worse by more than {rule.refusal_tolerance:.0%})")
        )
    return GateReport(len(rows), live_summary, cand_summary, passed, reasons, questions)


class LocalAnswerer:
    """Greedy answers from a local model, optionally with an adapter (for the gate on this machine)."""

    def __init__(
        self, base_model: str | Path, adapter: Path | None = None, *, max_new_tokens: int = 96
    ) -> None:
        from training.trainer import load_tokenizer, load_trained

        self.tokenizer = load_tokenizer(base_model)
        if adapter is not None:
            self.model = load_trained(base_model, adapter)
        else:
            from transformers import AutoModelForCausalLM

            self.model = AutoModelForCausalLM.from_pretrained(str(base_model))
        self.model.eval()
        self.max_new_tokens = max_new_tokens

    def __call__(self, conversations: Sequence[list[dict[str, str]]]) -> list[str]:
        import torch

        answers = []
        for messages in conversations:
            encoded = self.tokenizer.apply_chat_template(
                messages, add_generation_prompt=True, return_tensors="pt", return_dict=True
            )
            with torch.no_grad():
                out = self.model.generate(
                    **encoded,
                    max_new_tokens=self.max_new_tokens,
                    do_sample=False,
                    pad_token_id=self.tokenizer.pad_token_id,
                )
            new = out[0, encoded["input_ids"].shape[1] :]
            answers.append(self.tokenizer.decode(new, skip_special_tokens=True).strip())
        return answers
