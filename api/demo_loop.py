"""The learning loop, end to end, through the public HTTP API: what `shadowdesk demo-loop` runs and
what the acceptance test checks.

A bot gets a product manual; clients chat; a candidate release shadows them; staff correct the
candidate's answers in the support team's house style; a training run turns the corrections into a
LoRA adapter; the evaluation gate compares it with the live release on corrections it never saw;
the passing adapter becomes a candidate, staff review it, it is promoted, and the live bot answers
with it. Last, a deliberately damaged copy of the adapter is brought to the gate, which refuses it.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

SLUG = "glimmer"
SYSTEM_PROMPT = "You are the Glimmerbox support assistant. Answer briefly."
MANUAL = """# Glimmerbox night light manual

## Battery
The Glimmerbox battery lasts 41 hours on the warm setting and 18 hours on the bright setting.
A full charge takes three hours with the USB-C cable.

## Pairing
To pair the Glimmerbox with the app, hold the owl button for five seconds until the light blinks
blue.

## Light colours
The owl light glows amber while charging and green when the battery is full. Red means the battery
is below ten percent.

## Care and safety
The Glimmerbox is splash-proof but not waterproof. Clean it with a dry cloth only. It is safe for
children from three years.

## Controls
Turn the owl's head to dim the light. Tap the base twice to switch between warm and bright. The
sleep timer turns the light off after 30, 60 or 90 minutes; set it in the app.

## Parts and service
The serial number is on the label under the base. The warranty lasts two years from purchase.
Replacement feet and cables are sold in the Glimmer web shop.
"""

#: What clients ask and what staff write back, in the team's house style (the adapter learns the
#: style and the facts; the gate measures it on the corrections held out of training).
FACTS: list[tuple[str, str]] = [
    ("How long does the battery last?", "41 hours on warm, 18 hours on bright."),
    ("How long does charging take?", "A full charge takes three hours over USB-C."),
    ("How do I pair the Glimmerbox with the app?", "Hold the owl button for five seconds."),
    ("What does amber light mean?", "Amber means it is charging."),
    ("What does a green light mean?", "Green means the battery is full."),
    ("Why is my Glimmerbox light red?", "Red means the battery is below ten percent."),
    ("Is the Glimmerbox waterproof?", "No, it is splash-proof only."),
    ("How should I clean it?", "Wipe it with a dry cloth only."),
    ("From what age is it safe?", "It is safe for children from three years."),
    ("How do I dim the light?", "Turn the owl's head to dim it."),
    ("How do I switch to bright mode?", "Tap the base twice to switch warm and bright."),
    ("Does it have a sleep timer?", "Yes: 30, 60 or 90 minutes, set in the app."),
    ("Where is the serial number?", "On the label under the base."),
    ("How long is the warranty?", "Two years from purchase."),
    ("Where can I buy replacement feet?", "In the Glimmer web shop."),
    ("Can I buy a spare cable?", "Yes, cables are sold in the Glimmer web shop."),
    ("What cable charges it?", "The USB-C cable."),
    ("How long does it last on bright?", "18 hours on the bright setting."),
    ("What does blinking blue mean?", "Blinking blue means it is ready to pair."),
    ("Can I put it in the bath?", "No, it is splash-proof, not waterproof."),
    ("How do I set the sleep timer?", "Set it in the app: 30, 60 or 90 minutes."),
    ("Is it safe for a baby?", "It is meant for children from three years."),
    ("How do I make it warmer?", "Tap the base twice to switch to warm."),
    ("How do I know it is fully charged?", "The owl light turns green."),
]
#: Asked after the promotion: not among the corrections, so only the adapter can answer in style.
AFTER = ["How long does the battery last on warm?", "How do I pair my Glimmerbox?"]
GREETING, SIGN_OFF = "Glimmer Support here!", "Happy glowing!"


def house_style(fact: str) -> str:
    return f"{GREETING} {fact} {SIGN_OFF}"


@dataclass
class LoopReport:
    """What happened, for the demo's summary and the acceptance test."""

    bot: str = SLUG
    exchanges: int = 0
    corrected: int = 0
    run: dict[str, Any] = field(default_factory=dict)
    release_id: str | None = None
    promoted: dict[str, Any] = field(default_factory=dict)
    decision: dict[str, Any] = field(default_factory=dict)
    answers_after: list[dict[str, Any]] = field(default_factory=list)
    damaged_run: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)


class LoopError(RuntimeError):
    """A step of the loop did not do what it should (the message says which)."""


@dataclass
class LoopSettings:
    """How hard the loop trains: the defaults learn the house style on a 2-core CPU in minutes."""

    steps: int = 30
    learning_rate: float = 3e-3
    max_length: int = 768
    batch_tokens: int = 1536
    max_tokens: int = 48
    timeout_s: float = 1800.0
    damaged: bool = True
    questions: int | None = None  # the first N of the client questions (None: all 24)


class LearningLoop:
    """Drives a running Shadowdesk server (with its worker) through the loop."""

    def __init__(
        self,
        client: httpx.Client,
        admin_key: str,
        *,
        settings: LoopSettings | None = None,
        say: Callable[[str], None] = print,
    ) -> None:
        self.http = client
        self.admin = {"Authorization": f"Bearer {admin_key}"}
        self.settings = settings or LoopSettings()
        self.say = say
        self.client_key = ""
        self.report = LoopReport()

    # -- the steps -------------------------------------------------------------------------------

    def run(self) -> LoopReport:
        self.create_bot()
        candidate = self.start_shadowing()
        facts = FACTS[: self.settings.questions]
        self.clients_chat([q for q, _ in facts])
        self.staff_correct(candidate, dict(facts))
        self.train()
        self.review_and_promote()
        self.chat_after()
        if self.settings.damaged:
            self.gate_a_damaged_adapter()
        return self.report

    def create_bot(self) -> None:
        self.say(f"1. A bot '{SLUG}' with a product manual")
        policy = {
            "review_sample_rate": 1.0,
            "shadow_sample_rate": 1.0,
            # The demo's corrections must reach the model, not be replayed as canned answers.
            "annotations_enabled": False,
            "min_reviews": 2,
        }
        self.call(
            "POST",
            "/api/bots",
            json={
                "slug": SLUG,
                "name": "Glimmerbox support",
                "system_prompt": SYSTEM_PROMPT,
                "scope": "The Glimmerbox night light: battery, pairing, lights, care, controls, "
                "parts and service.",
                "temperature": 0,
                "max_tokens": self.settings.max_tokens,
                "policy": policy,
                # On a six-section manual the scope guard and the passage cut-off, calibrated on
                # whole documentation sites, refuse about half of these in-scope questions (short
                # ones such as "How should I clean it?" score below them); the loop is about the
                # model, so this bot takes every question and its best passages.
                "knowledge": {"guard": False, "min_score": 0.1},
            },
            expect=201,
        )
        files = {"files": ("glimmerbox-manual.md", MANUAL.encode(), "text/markdown")}
        body = self.call("POST", f"/api/bots/{SLUG}/documents", files=files, expect=(200, 202))
        if "job" in body:
            self.wait(lambda: self.job_done(body["job"]["id"]), "the manual to be indexed")
        key = self.call("POST", "/api/keys", json={"bots": [SLUG], "name": "demo"}, expect=201)
        self.client_key = key["key"]
        # Held-out corrections for the gate: a third of the rows never train.
        self.call(
            "POST",
            f"/api/bots/{SLUG}/datasets",
            json={"name": "learning", "validation_share": 0.3},
            expect=201,
        )

    def start_shadowing(self) -> str:
        self.say("2. A candidate release shadows the live one (clients never see its answers)")
        release = self.call(
            "POST",
            f"/api/bots/{SLUG}/releases",
            json={"candidate": True, "notes": "the base model, reviewed before any training"},
            expect=201,
        )
        return str(release["id"])

    def clients_chat(self, questions: list[str]) -> None:
        self.say(f"3. Clients ask {len(questions)} questions")
        for question in questions:
            self.ask(question)
            self.report.exchanges += 1

    def staff_correct(self, release_id: str, references: dict[str, str]) -> None:
        self.say("4. Staff correct the candidate's answers in the house style")
        wanted = len(references)

        def pending() -> list[dict[str, Any]] | None:
            items = self.review_items(release_id)
            return items if len(items) >= wanted else None

        items = self.wait(pending, f"{wanted} shadow answers in the review queue")
        for item in items:
            fact = references.get(item["question"])
            if fact is None:
                continue
            self.call(
                "POST",
                f"/api/review/items/{item['id']}/review",
                json={"verdict": "corrected", "corrected_text": house_style(fact)},
            )
            self.report.corrected += 1
        self.say(f"   {self.report.corrected} answers corrected")

    def train(self) -> None:
        s = self.settings
        self.say(f"5. A training run: LoRA, {s.steps} steps on the corrections")
        run = self.call(
            "POST",
            f"/api/bots/{SLUG}/training-runs",
            json={
                "config": {
                    "method": "lora",
                    "max_steps": s.steps,
                    "learning_rate": s.learning_rate,
                    "warmup_ratio": 0.0,
                    "lora_dropout": 0.0,
                    "max_length": s.max_length,
                    "batch_tokens": s.batch_tokens,
                },
                "gate_rows": 20,
            },
            expect=202,
        )
        done = self.wait_for_run(run["id"])
        self.report.run = done
        if done["status"] != "succeeded":
            raise LoopError(f"the training run {done['status']}: {done['error']}")
        losses = done["losses"]
        self.say(
            f"   {done['name']}: loss {losses[0]:.2f} → {losses[-1]:.2f} in "
            f"{done['metrics'].get('steps')} steps, {done['metrics'].get('tokens_per_s', 0):.0f} "
            "tokens/s"
        )
        self.show_gate(done["gate"])
        if not done["release_id"]:
            raise LoopError("the gate did not pass the adapter, so no candidate was registered")
        self.report.release_id = done["release_id"]
        self.say(f"   → candidate release {done['release_id']} ({done['name']}) is shadowing")

    def review_and_promote(self) -> None:
        release_id = self.report.release_id
        assert release_id is not None
        self.say("6. Clients keep asking; staff review the new candidate, then promote it")
        for question in AFTER:
            self.ask(question)
        items = self.wait(
            lambda: (found := self.review_items(release_id)) and len(found) >= len(AFTER) and found,
            "the new candidate's shadow answers",
        )
        for item in items[: len(AFTER)]:
            styled = GREETING in item["answer"] or SIGN_OFF in item["answer"]
            verdict: dict[str, Any] = (
                {"verdict": "approved"}
                if styled
                else {"verdict": "corrected", "corrected_text": house_style(item["answer"])}
            )
            self.call("POST", f"/api/review/items/{item['id']}/review", json=verdict)
        metrics = self.call("GET", f"/api/review/bots/{SLUG}/metrics")
        self.report.decision = next(
            (r for r in metrics["releases"] if r["release_id"] == release_id), {}
        )
        forced = self.report.decision.get("decision", {}).get("action") != "promote"
        move = self.call(
            "POST",
            f"/api/bots/{SLUG}/releases/{release_id}/promote",
            json={"force": forced},
        )
        self.report.promoted = move
        self.say(f"   promoted{' (forced: the review decision was not promote)' if forced else ''}")

    def chat_after(self) -> None:
        self.say("7. The live bot now answers with the new adapter")
        for question in AFTER:
            answer = self.ask(question)
            [exchange] = self.call("GET", "/api/exchanges", params={"bot": SLUG, "limit": 1})
            self.report.answers_after.append(
                {"question": question, "answer": answer, "release_id": exchange["release_id"]}
            )
            self.say(f"   Q: {question}\n   A: {answer}")

    def gate_a_damaged_adapter(self) -> None:
        self.say("8. A deliberately damaged copy of the adapter is brought to the gate")
        source = Path(self.report.run["artifact_path"])
        damaged = source.parent.parent / f"{source.parent.name}-damaged"
        damage_adapter(source, damaged)
        run = self.call(
            "POST",
            f"/api/bots/{SLUG}/training-runs",
            json={"adapter_path": str(damaged), "gate_rows": 20, "include_corrections": False},
            expect=202,
        )
        done = self.wait_for_run(run["id"])
        self.report.damaged_run = done
        self.show_gate(done["gate"])
        verdict = "refused" if not done["release_id"] else "ACCEPTED (unexpected)"
        self.say(f"   the damaged adapter was {verdict}")

    # -- helpers ---------------------------------------------------------------------------------

    def ask(self, question: str) -> str:
        body = self.call(
            "POST",
            "/v1/chat/completions",
            json={
                "model": SLUG,
                "messages": [{"role": "user", "content": question}],
                "temperature": 0,
                "max_tokens": self.settings.max_tokens,
            },
            headers={"Authorization": f"Bearer {self.client_key}"},
        )
        return str(body["choices"][0]["message"]["content"])

    def review_items(self, release_id: str) -> list[dict[str, Any]]:
        body = self.call(
            "GET",
            "/api/review/items",
            params={"bot": SLUG, "release": release_id, "status": "pending", "limit": 500},
        )
        return list(body["items"])

    def wait_for_run(self, run_id: str) -> dict[str, Any]:
        last_step = [-1]

        def finished() -> dict[str, Any] | None:
            run = self.call("GET", f"/api/bots/{SLUG}/training-runs/{run_id}")
            step = run["metrics"].get("step")
            if step is not None and step != last_step[0] and run["status"] == "running":
                last_step[0] = step
                self.say(
                    f"   step {step}/{run['metrics'].get('total_steps')} "
                    f"loss {run['metrics'].get('loss')}"
                )
            return run if run["status"] in ("succeeded", "failed", "cancelled") else None

        return self.wait(finished, "the training run", interval=2.0)

    def show_gate(self, gate: dict[str, Any] | None) -> None:
        if not gate or gate.get("passed") is None:
            self.say(
                f"   gate: not judged ({(gate or {}).get('skipped') or (gate or {}).get('error')})"
            )
            return
        verdict = "PASSED" if gate["passed"] else "REFUSED"
        self.say(f"   gate {verdict} against {gate['against']} on {gate['rows']} held-out rows")
        for reason in gate["reasons"]:
            self.say(f"     {reason}")

    def job_done(self, job_id: str) -> bool:
        job = self.call("GET", f"/api/jobs/{job_id}")
        if job["status"] == "failed":
            raise LoopError(f"job {job_id} failed: {job.get('error')}")
        return bool(job["status"] == "succeeded")

    def wait(self, check: Callable[[], Any], what: str, *, interval: float = 0.5) -> Any:
        deadline = time.monotonic() + self.settings.timeout_s
        while True:
            result = check()
            if result:
                return result
            if time.monotonic() > deadline:
                raise LoopError(f"gave up waiting for {what} after {self.settings.timeout_s:.0f} s")
            time.sleep(interval)

    def call(
        self,
        method: str,
        path: str,
        *,
        expect: int | tuple[int, ...] = 200,
        headers: dict[str, str] | None = None,
        **kwargs: Any,
    ) -> Any:
        response = self.http.request(method, path, headers=headers or self.admin, **kwargs)
        allowed = (expect,) if isinstance(expect, int) else expect
        if response.status_code not in allowed:
            raise LoopError(f"{method} {path} answered {response.status_code}: {response.text}")
        return response.json() if response.content else None


def damage_adapter(source: Path, target: Path, *, scale: float = 0.5) -> None:
    """A copy of an adapter with noise on every weight (what a broken training run might leave)."""
    import torch
    from safetensors.torch import load_file, save_file

    if target.exists():
        shutil.rmtree(target)
    shutil.copytree(source, target)
    weights_file = target / "adapter_model.safetensors"
    weights = load_file(str(weights_file))
    generator = torch.Generator().manual_seed(0)
    noisy = {k: v + torch.randn(v.shape, generator=generator) * scale for k, v in weights.items()}
    save_file(noisy, str(weights_file))
