"""Prometheus metrics, one registry per app (tests build many apps in one process)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "shadowdesk_chat_requests",
            "Chat requests by bot and outcome.",
            ["bot", "status"],
            registry=self.registry,
        )
        self.errors = Counter(
            "shadowdesk_chat_errors",
            "Chat errors by bot and error type.",
            ["bot", "type"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "shadowdesk_chat_latency_seconds",
            "Whole-answer latency.",
            ["bot"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.ttft = Histogram(
            "shadowdesk_chat_time_to_first_token_seconds",
            "Time to the first streamed token.",
            ["bot"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.annotation_hits = Counter(
            "shadowdesk_annotation_hits",
            "Answers served from an approved annotation.",
            ["bot"],
            registry=self.registry,
        )
        self.tokens = Counter(
            "shadowdesk_tokens",
            "Tokens by bot and kind (prompt, completion).",
            ["bot", "kind"],
            registry=self.registry,
        )
