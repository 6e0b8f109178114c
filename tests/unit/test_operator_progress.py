"""Progress as the operator reads it from rank 0's /metrics page, and the operator's own metrics.

The page is rendered from a real `TrainerMetrics` (the trainer's exporter), so a renamed metric or label on either
side fails here rather than in a cluster.
"""

from __future__ import annotations

import math
import time
from datetime import datetime, timedelta, timezone

import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from pretrain_operator.metrics import OPERATOR_METRIC_NAMES, OperatorMetrics
from pretrain_operator.progress import FIELDS, estimate, parse_progress
from pretrain_trainer.contract import PHASES
from pretrain_trainer.metrics import METRIC_NAMES, StepMetrics, TrainerMetrics


def step_metrics(loss: float = 2.345678, tokens_per_second: float = 54321.98765) -> StepMetrics:
    return StepMetrics(
        loss=loss,
        learning_rate=3e-4,
        grad_norm=0.5,
        tokens_per_second=tokens_per_second,
        samples_per_second=212.0,
        mfu=None,
        step_seconds=0.4,
        data_wait_seconds=0.001,
        tokens=4096,
        samples=16,
        storage_bytes_read=1 << 20,
    )


def page(metrics: TrainerMetrics) -> str:
    return generate_latest(metrics.registry).decode()


def trainer(job: str = "gpt-small") -> TrainerMetrics:
    return TrainerMetrics(job, port=0, enabled=True)  # never started: the registry is rendered directly


# -------------------------------------------------------------------------------------------- progress


def test_step_loss_throughput_and_checkpoint_are_read():
    metrics = trainer()
    metrics.set_max_steps(1000)
    metrics.update(120, step_metrics())
    before = time.time()
    metrics.observe_checkpoint(100, seconds=3.5)
    progress = parse_progress(page(metrics), "gpt-small")
    assert progress["step"] == 120 and isinstance(progress["step"], int)
    assert progress["loss"] == pytest.approx(2.3457)
    assert progress["tokensPerSecond"] == pytest.approx(54321.9877)
    assert progress["lastCheckpoint"] == 100 and isinstance(progress["lastCheckpoint"], int)
    saved = datetime.strptime(progress["lastCheckpointTime"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc)
    assert int(before) - 1 <= saved.timestamp() <= time.time() + 1
    assert set(progress) == {"step", "loss", "tokensPerSecond", "lastCheckpoint", "lastCheckpointTime"}


def test_the_fields_read_are_metrics_the_trainer_exports():
    assert set(FIELDS) <= set(METRIC_NAMES)


def test_before_any_checkpoint_there_is_no_checkpoint_in_the_progress():
    metrics = trainer()
    metrics.update(5, step_metrics())
    progress = parse_progress(page(metrics), "gpt-small")
    assert progress["step"] == 5
    assert "lastCheckpoint" not in progress and "lastCheckpointTime" not in progress


def test_an_empty_page_is_no_progress():
    assert parse_progress(page(trainer()), "gpt-small") == {}
    assert parse_progress("", "gpt-small") == {}


def test_other_jobs_series_are_ignored():
    mine, other = trainer("gpt-small"), trainer("gpt-large")
    mine.update(10, step_metrics(loss=3.0))
    other.update(999, step_metrics(loss=1.0))
    other.observe_checkpoint(900, seconds=1.0)
    assert parse_progress(page(other), "gpt-small") == {}
    progress = parse_progress(page(other) + page(mine), "gpt-small")
    assert (progress["step"], progress["loss"]) == (10, 3.0)
    assert "lastCheckpoint" not in progress


def test_a_job_name_that_prefixes_another_is_not_confused_with_it():
    metrics = trainer("gpt-small-2")
    metrics.update(7, step_metrics())
    assert parse_progress(page(metrics), "gpt-small") == {}


def test_nan_loss_is_dropped_and_the_rest_kept():
    metrics = trainer()
    metrics.update(33, step_metrics(loss=math.nan))
    progress = parse_progress(page(metrics), "gpt-small")
    assert "loss" not in progress
    assert progress["step"] == 33
    assert "tokensPerSecond" in progress


def test_infinite_throughput_is_dropped():
    metrics = trainer()
    metrics.update(3, step_metrics(tokens_per_second=math.inf))
    assert "tokensPerSecond" not in parse_progress(page(metrics), "gpt-small")


AT = datetime(2025, 3, 1, 12, 0, 0, tzinfo=timezone.utc)


def test_estimate_is_the_steps_left_at_the_recent_throughput():
    # 1000 tokens a step at 500 tokens/s: 2 s a step; 750 steps left.
    assert estimate(250, 1000, 1000, 500.0, AT) == {
        "progress": 25.0,
        "estimatedCompletionTime": (AT + timedelta(seconds=1500)).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }


@pytest.mark.parametrize("rate", [None, 0.0, -5.0])
def test_no_positive_throughput_is_no_estimate(rate):
    assert estimate(10, 1000, 1000, rate, AT) == {"progress": 1.0}


def test_estimate_clamps_steps_out_of_range_and_refuses_absurd_etas():
    assert estimate(1200, 1000, 1000, 500.0, AT)["progress"] == 100.0  # a resumed step past a lowered maxSteps
    assert estimate(-1, 1000, 1000, 500.0, AT)["progress"] == 0.0
    assert estimate(None, 1000, 1000, 500.0, AT) == {}
    assert estimate(0, 10**12, 10**6, 1e-9, AT) == {"progress": 0.0}  # centuries away: no date


# -------------------------------------------------------------------------------------- operator metrics


def job_counts(metrics: OperatorMetrics) -> dict[str, float]:
    return {p: metrics.registry.get_sample_value("pretrain_operator_jobs", {"phase": p}) for p in PHASES}


def test_observe_and_forget_keep_the_jobs_per_phase_right():
    metrics = OperatorMetrics()
    metrics.observe_job("ml", "a", "Running", 0)
    metrics.observe_job("ml", "b", "Running", 2)
    metrics.observe_job("other", "a", "Pending", 0)
    counts = job_counts(metrics)
    assert (counts["Running"], counts["Pending"], counts["Failed"]) == (2, 1, 0)
    metrics.observe_job("ml", "a", "Succeeded", 0)
    metrics.observe_job("ml", "a", "Succeeded", 0)  # observing twice counts once
    counts = job_counts(metrics)
    assert (counts["Running"], counts["Succeeded"], counts["Pending"]) == (1, 1, 1)
    metrics.forget_job("ml", "b")
    metrics.forget_job("ml", "never-seen")
    counts = job_counts(metrics)
    assert counts == {"Pending": 1, "Running": 0, "Restarting": 0, "Suspended": 0, "Succeeded": 1, "Failed": 0}


def test_job_phase_is_one_hot_and_forget_removes_the_jobs_series():
    metrics = OperatorMetrics()
    metrics.observe_job("ml", "a", "Restarting", 3)

    def phase(p: str) -> float | None:
        return metrics.registry.get_sample_value(
            "pretrain_operator_job_phase", {"namespace": "ml", "job_name": "a", "phase": p}
        )

    assert [phase(p) for p in PHASES] == [1.0 if p == "Restarting" else 0.0 for p in PHASES]
    restarts = {"namespace": "ml", "job_name": "a"}
    assert metrics.registry.get_sample_value("pretrain_operator_job_restarts", restarts) == 3
    metrics.forget_job("ml", "a")
    assert [phase(p) for p in PHASES] == [None] * len(PHASES)
    assert metrics.registry.get_sample_value("pretrain_operator_job_restarts", restarts) is None


def test_every_operator_metric_name_is_exported():
    metrics = OperatorMetrics()
    metrics.observe_job("ml", "a", "Running", 1)
    metrics.observe_progress("ml", "a", {"progress": 12.5, "estimatedCompletionTime": "2025-03-01T13:00:00Z"})
    metrics.restarts.labels("ml", "a", "Evicted").inc()
    metrics.reconcile_duration.observe(0.02)
    metrics.reconcile_errors.labels("ApiError").inc()
    text = generate_latest(metrics.registry).decode()
    sample_names = {s.name for family in text_string_to_metric_families(text) for s in family.samples}
    type_lines = {line.split()[2] for line in text.splitlines() if line.startswith("# TYPE ")}
    for name in OPERATOR_METRIC_NAMES:
        assert name in type_lines, f"{name} is not on the page"
        assert name in sample_names or f"{name}_count" in sample_names, f"{name} has no sample"


def test_two_operators_in_one_process_do_not_share_series():
    first, second = OperatorMetrics(), OperatorMetrics()
    first.observe_job("ml", "a", "Running", 0)
    assert job_counts(second)["Running"] is None


def test_progress_and_eta_series_are_the_status_numbers_and_go_with_the_estimate():
    metrics = OperatorMetrics()
    labels = {"namespace": "ml", "job_name": "a"}

    def eta() -> float | None:
        return metrics.registry.get_sample_value("pretrain_operator_job_estimated_completion_timestamp_seconds", labels)

    metrics.observe_progress("ml", "a", {"progress": 40.0, "estimatedCompletionTime": "2025-03-01T13:00:00Z"})
    assert metrics.registry.get_sample_value("pretrain_operator_job_progress_percent", labels) == 40.0
    assert eta() == datetime(2025, 3, 1, 13, tzinfo=timezone.utc).timestamp()
    metrics.observe_progress("ml", "a", {"progress": 40.0})  # restarting: no estimate
    assert eta() is None
    metrics.forget_job("ml", "a")
    assert metrics.registry.get_sample_value("pretrain_operator_job_progress_percent", labels) is None
