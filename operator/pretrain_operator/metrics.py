"""The operator's own Prometheus metrics, served on its metrics port (`/metrics`).

Names follow Prometheus conventions; the Helm chart's dashboard and alert rules may use exactly these (and the
trainer's `pretrain_trainer.metrics.METRIC_NAMES`), which a test checks.
"""

from __future__ import annotations

import contextlib
from collections import Counter as Tally
from collections.abc import Iterable
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from pretrain_trainer.contract import PHASES

from .progress import ESTIMATED_COMPLETION_TIME, PROGRESS
from .workers import parse_time

OPERATOR_METRIC_NAMES: tuple[str, ...] = (
    "pretrain_operator_jobs",
    "pretrain_operator_job_phase",
    "pretrain_operator_job_restarts",
    "pretrain_operator_job_progress_percent",
    "pretrain_operator_job_estimated_completion_timestamp_seconds",
    "pretrain_operator_restarts_total",
    "pretrain_operator_reconcile_duration_seconds",
    "pretrain_operator_reconcile_errors_total",
)

# A reconcile is a few API calls: milliseconds against a healthy API server, seconds when it is overloaded.
RECONCILE_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, float("inf"))


class OperatorMetrics:
    """The operator's metrics in a registry of their own (so tests can run several operators in one process)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.jobs = Gauge("pretrain_operator_jobs", "PretrainJobs by phase.", ["phase"], registry=r)
        self.job_phase = Gauge(
            "pretrain_operator_job_phase",
            "1 for each PretrainJob's current phase, 0 for the others.",
            ["namespace", "job_name", "phase"],
            registry=r,
        )
        self.job_restarts = Gauge(
            "pretrain_operator_job_restarts",
            "Gang restarts of each PretrainJob so far (status.restarts).",
            ["namespace", "job_name"],
            registry=r,
        )
        self.job_progress = Gauge(
            "pretrain_operator_job_progress_percent",
            "Percent of training.maxSteps each PretrainJob has done (status.progress).",
            ["namespace", "job_name"],
            registry=r,
        )
        self.job_eta = Gauge(
            "pretrain_operator_job_estimated_completion_timestamp_seconds",
            "Unix time each training PretrainJob would reach maxSteps at its recent throughput "
            "(status.estimatedCompletionTime); absent while it does not train.",
            ["namespace", "job_name"],
            registry=r,
        )
        self.restarts = Counter(
            "pretrain_operator_restarts",
            "Gang restarts started by this operator process.",
            ["namespace", "job_name", "reason"],
            registry=r,
        )
        self.reconcile_duration = Histogram(
            "pretrain_operator_reconcile_duration_seconds",
            "Time of one reconcile of one PretrainJob.",
            registry=r,
            buckets=RECONCILE_BUCKETS,
        )
        self.reconcile_errors = Counter(
            "pretrain_operator_reconcile_errors",
            "Reconciles that raised (and will be retried).",
            ["reason"],
            registry=r,
        )
        self._phases: dict[tuple[str, str], str] = {}

    def observe_job(self, namespace: str, name: str, phase: str, restarts: int) -> None:
        """Record a job's phase and restart count (after each reconcile)."""
        self._phases[(namespace, name)] = phase
        for p in PHASES:
            self.job_phase.labels(namespace, name, p).set(1 if p == phase else 0)
        self.job_restarts.labels(namespace, name).set(restarts)
        self._recount()

    def observe_progress(self, namespace: str, name: str, status: dict[str, Any]) -> None:
        """A job's progress and estimated completion, the numbers of its status (after each reconcile)."""
        if status.get(PROGRESS) is not None:
            self.job_progress.labels(namespace, name).set(status[PROGRESS])
        eta = parse_time(status.get(ESTIMATED_COMPLETION_TIME))
        if eta is None:
            self._remove(self.job_eta, (namespace, name))
        else:
            self.job_eta.labels(namespace, name).set(eta.timestamp())

    def forget_job(self, namespace: str, name: str) -> None:
        """Drop a deleted job's series."""
        self._phases.pop((namespace, name), None)
        for p in PHASES:
            self._remove(self.job_phase, (namespace, name, p))
        for gauge in (self.job_restarts, self.job_progress, self.job_eta):
            self._remove(gauge, (namespace, name))
        self._recount()

    def _recount(self) -> None:
        tally = Tally(self._phases.values())
        for p in PHASES:
            self.jobs.labels(p).set(tally.get(p, 0))

    @staticmethod
    def _remove(metric: Gauge, labels: Iterable[str]) -> None:
        with contextlib.suppress(KeyError):  # never set
            metric.remove(*labels)

    def serve(self, port: int, addr: str = "0.0.0.0") -> None:
        """Serve /metrics on a background thread."""
        start_http_server(port, addr=addr, registry=self.registry)


__all__ = ["OPERATOR_METRIC_NAMES", "OperatorMetrics"]
