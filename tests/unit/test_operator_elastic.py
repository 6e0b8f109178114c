"""Elastic worker counts (`elastic.py`): the size a gang restarts on after a preemption, when it shrinks because
pods cannot be scheduled, and when it grows back through spare pods, with its cool-down."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from pretrain_operator.elastic import SCALED_DOWN, SCALED_UP, Bounds, Observed, decide, restart_size
from pretrain_operator.workers import Worker, read_worker
from pretrain_trainer.config import WorkersSpec

NOW = datetime(2026, 1, 1, 12, 0, tzinfo=timezone.utc)
ELASTIC = Bounds(fewest=2, most=4, scale_down_after_s=60, cooldown_s=300)


def worker(index: int, state: str = "running", **kw: object) -> Worker:
    return Worker(name=f"j-worker-{index}", index=index, attempt=1, state=state, **kw)  # type: ignore[arg-type]


def stuck(index: int, seconds: float) -> Worker:
    return worker(index, "pending", reason="Unschedulable", unschedulable_since=NOW - timedelta(seconds=seconds))


def spare(index: int, state: str = "pending") -> Worker:
    return Worker(name=f"j-spare-{index}", index=index, attempt=1, state=state)


def test_bounds_come_from_the_spec_and_a_job_without_min_replicas_is_not_elastic() -> None:
    assert Bounds.of(WorkersSpec(replicas=4, min_replicas=2, scale_down_after_seconds=30)) == Bounds(2, 4, 30, 600)
    fixed = Bounds.of(WorkersSpec(replicas=4))
    assert (fixed.fewest, fixed.most, fixed.elastic) == (4, 4, False)
    assert [ELASTIC.clamp(n) for n in (1, 2, 3, 4, 7)] == [2, 2, 3, 4, 4]


def test_a_fixed_size_job_never_resizes_whatever_the_pods_say() -> None:
    fixed = Bounds(4, 4, 0, 0)
    gang = [worker(0), worker(1), stuck(2, 3600), stuck(3, 3600)]
    assert decide(fixed, Observed(4, gang, NOW)).size == 4
    assert restart_size(fixed, 4, [worker(0, "failed", preempted=True, displaced=True)]).size == 4


def test_pods_unschedulable_past_the_grace_period_shrink_the_gang_to_the_pods_that_were_placed() -> None:
    gang = [worker(0), worker(1), worker(2, "pending"), stuck(3, 61)]
    decision = decide(ELASTIC, Observed(4, gang, NOW))
    assert (decision.size, decision.reason) == (3, SCALED_DOWN)
    assert "1 of 4 workers unschedulable for 61 s (workers.scaleDownAfterSeconds: 60)" in decision.message
    assert "restarting on 3 workers (workers.minReplicas 2)" in decision.message


def test_within_the_grace_period_the_gang_waits_and_says_when_to_look_again() -> None:
    gang = [worker(0), worker(1), stuck(2, 20), stuck(3, 45)]
    decision = decide(ELASTIC, Observed(4, gang, NOW))
    assert (decision.size, decision.reason, decision.recheck_in) == (4, "", pytest.approx(15))


def test_the_gang_never_shrinks_below_min_replicas_and_at_the_minimum_it_waits_for_the_scheduler() -> None:
    three_stuck = [worker(0), stuck(1, 600), stuck(2, 600), stuck(3, 600)]
    assert decide(ELASTIC, Observed(4, three_stuck, NOW)).size == 2
    at_minimum = [worker(0), stuck(1, 600)]
    decision = decide(ELASTIC, Observed(2, at_minimum, NOW))
    assert (decision.size, decision.reason, decision.recheck_in) == (2, "", None)


def test_pods_pending_for_another_reason_than_the_scheduler_do_not_shrink_the_gang() -> None:
    pulling = [worker(0), worker(1), worker(2, "pending", reason="ContainerCreating"), worker(3, "terminating")]
    assert decide(ELASTIC, Observed(4, pulling, NOW)).size == 4


def test_a_preemption_restarts_without_the_workers_that_were_taken_away() -> None:
    evicted = worker(3, "failed", reason="Evicted", preempted=True, displaced=True)
    stopped = [worker(i, "failed", reason="Preempted", exit_code=143, preempted=True) for i in range(3)]
    decision = restart_size(ELASTIC, 4, [*stopped, evicted])
    assert (decision.size, decision.reason) == (3, SCALED_DOWN)
    assert decision.message.startswith("1 of 4 workers taken away (evicted or preempted): restarting on 3 workers")
    # Workers that exited 143 because the gang stopped (a drain, a suspend) lost nothing: the size stays.
    assert restart_size(ELASTIC, 4, stopped).size == 4
    # Never below the minimum.
    everything = [worker(i, "failed", preempted=True, displaced=True) for i in range(4)]
    assert restart_size(ELASTIC, 4, everything).size == 2


def test_growth_waits_for_the_cool_down_then_holds_a_spare_pod_per_missing_worker() -> None:
    gang = [worker(0), worker(1)]
    resized = NOW - timedelta(seconds=100)
    waiting = decide(ELASTIC, Observed(2, gang, NOW, [], resized))
    assert (waiting.size, waiting.spares, waiting.recheck_in) == (2, 0, pytest.approx(200))
    after = decide(ELASTIC, Observed(2, gang, NOW, [spare(2), spare(3)], NOW - timedelta(seconds=300)))
    assert (after.size, after.reason, after.spares) == (2, "", 2)


def test_spares_the_scheduler_placed_grow_the_gang_by_that_many() -> None:
    gang = [worker(0), worker(1)]
    long_ago = NOW - timedelta(hours=1)
    one = decide(ELASTIC, Observed(2, gang, NOW, [spare(2, "running"), spare(3)], long_ago))
    assert (one.size, one.reason) == (3, SCALED_UP)
    assert (
        one.message
        == "capacity for 1 more workers (spare pods scheduled): restarting on 3 workers (workers.replicas 4)"
    )
    both = decide(ELASTIC, Observed(2, gang, NOW, [spare(2, "running"), spare(3, "running")], long_ago))
    assert both.size == 4


def test_no_growth_while_the_gang_itself_is_not_all_running_or_already_at_the_most() -> None:
    long_ago = NOW - timedelta(hours=1)
    starting = [worker(0), worker(1, "pending")]
    decision = decide(ELASTIC, Observed(2, starting, NOW, [spare(2, "running")], long_ago))
    assert (decision.size, decision.spares) == (2, 0)
    full = [worker(i) for i in range(4)]
    decision = decide(ELASTIC, Observed(4, full, NOW, [spare(2, "running")], long_ago))
    assert (decision.size, decision.spares) == (4, 0)


def test_a_spare_left_from_a_larger_size_is_no_capacity_signal() -> None:
    gang = [worker(0), worker(1), worker(2)]
    decision = decide(ELASTIC, Observed(3, gang, NOW, [spare(2, "running")], NOW - timedelta(hours=1)))
    assert (decision.size, decision.spares) == (3, 1)


POD_CREATED = "2026-01-01T11:00:00Z"


def pod(status: dict[str, object]) -> dict[str, object]:
    labels = {"pretrain-operator.dev/replica-index": "1", "pretrain-operator.dev/attempt": "1"}
    meta = {"name": "j-worker-1", "labels": labels, "creationTimestamp": POD_CREATED}
    return {"metadata": meta, "status": status}


def test_reading_a_pod_gives_since_when_the_scheduler_could_not_place_it_and_whether_it_was_taken_away() -> None:
    since = "2026-01-01T11:58:00Z"
    unschedulable = {"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "lastTransitionTime": since}
    w = read_worker(pod({"phase": "Pending", "conditions": [unschedulable]}), NOW, 300)
    assert (w.state, w.unschedulable_since) == ("pending", NOW - timedelta(minutes=2))
    no_time = {k: v for k, v in unschedulable.items() if k != "lastTransitionTime"}
    assert read_worker(
        pod({"phase": "Pending", "conditions": [no_time]}), NOW, 300
    ).unschedulable_since == NOW - timedelta(hours=1)
    gated = {"type": "PodScheduled", "status": "False", "reason": "SchedulingGated"}
    assert read_worker(pod({"phase": "Pending", "conditions": [gated]}), NOW, 300).unschedulable_since is None
    evicted = read_worker(pod({"phase": "Failed", "reason": "Evicted"}), NOW, 300)
    assert (evicted.preempted, evicted.displaced) == (True, True)
    target = {"type": "DisruptionTarget", "status": "True", "reason": "PreemptionByScheduler"}
    term = {"terminated": {"exitCode": 143}}
    preempted = read_worker(
        pod({"phase": "Failed", "conditions": [target], "containerStatuses": [{"state": term}]}), NOW, 300
    )
    assert (preempted.reason, preempted.displaced) == ("PreemptionByScheduler", True)
    stopped = read_worker(pod({"phase": "Failed", "containerStatuses": [{"state": term}]}), NOW, 300)
    assert (stopped.reason, stopped.preempted, stopped.displaced) == ("Preempted", True, False)
