"""Prometheus metrics, one registry per service so tests can build many apps."""

from __future__ import annotations

from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


@dataclass
class Metrics:
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self) -> None:
        r = self.registry
        self.deliveries = Counter(
            "compound_webhook_deliveries_total",
            "Webhook deliveries received, by event and outcome "
            "(accepted, duplicate, rejected_signature, rejected_body, too_large).",
            ["event", "outcome"],
            registry=r,
        )
        self.handler_seconds = Histogram(
            "compound_handler_duration_seconds",
            "Time spent in one webhook handler.",
            ["event", "handler"],
            registry=r,
        )
        self.handler_results = Counter(
            "compound_handler_results_total",
            "Handler runs by outcome (ok, error).",
            ["event", "handler", "outcome"],
            registry=r,
        )
        self.deliveries_processed = Counter(
            "compound_deliveries_processed_total",
            "Stored deliveries finished, by outcome (processed, skipped, retrying, held, failed).",
            ["outcome"],
            registry=r,
        )
        self.deliveries_pending = Gauge(
            "compound_deliveries_pending",
            "Deliveries stored but not yet processed by this process.",
            registry=r,
        )
        self.github_calls = Counter(
            "compound_github_api_calls_total",
            "GitHub REST calls, by method and status code.",
            ["method", "status"],
            registry=r,
        )
        self.github_rate_remaining = Gauge(
            "compound_github_rate_limit_remaining",
            "Remaining GitHub REST rate limit, per installation (0 = the App itself).",
            ["installation"],
            registry=r,
        )
        self.github_rate_limit = Gauge(
            "compound_github_rate_limit_limit",
            "GitHub REST rate limit, per installation (0 = the App itself).",
            ["installation"],
            registry=r,
        )
        self.token_requests = Counter(
            "compound_installation_token_requests_total",
            "Installation access tokens requested from GitHub.",
            registry=r,
        )
