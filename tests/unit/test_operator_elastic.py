"""Elastic worker counts (`elastic.py`): the size a gang restarts on after a preemption, when it shrinks because
pods cannot be scheduled, and when it grows back through spare pods, with its cool-down."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from pretrain_operator import naming
from pretrain_operator.elastic import SCALED_DOWN, SCALED_UP, Bounds, Decision, Observed, decide, restart_size
from pretrain_operator.lifecycle import timestamp
from pretrain_operator.workers import Worker, read_worker
from pretrain_trainer.contract import EXIT_PREEMPTED
from pretrain_trainer.spec_workers import WorkersSpec
from tests.unit.test_operator_lifecycle import (
    SEQ,
    Cluster,
    created_kinds,
    evicted,
    exited,
    new_job,
    preempted,
    running,
    unschedulable,
)

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


def test_within_the_grace_period_the_gang_waits_for_the_scheduler() -> None:
    gang = [worker(0), worker(1), stuck(2, 20), stuck(3, 59)]
    assert decide(ELASTIC, Observed(4, gang, NOW)) == decide(ELASTIC, Observed(4, gang[:2], NOW)) == Decision(4)


def test_the_gang_never_shrinks_below_min_replicas_and_at_the_minimum_it_waits_for_the_scheduler() -> None:
    three_stuck = [worker(0), stuck(1, 600), stuck(2, 600), stuck(3, 600)]
    assert decide(ELASTIC, Observed(4, three_stuck, NOW)).size == 2
    at_minimum = [worker(0), stuck(1, 600)]
    decision = decide(ELASTIC, Observed(2, at_minimum, NOW))
    assert decision == Decision(2)


def test_pods_pending_for_another_reason_than_the_scheduler_do_not_shrink_the_gang() -> None:
    pulling = [worker(0), worker(1), worker(2, "pending", reason="ContainerCreating"), worker(3, "terminating")]
    assert decide(ELASTIC, Observed(4, pulling, NOW)).size == 4


def test_a_preemption_restarts_without_the_workers_that_were_taken_away() -> None:
    evicted = worker(3, "failed", reason="Evicted", preempted=True, displaced=True)
    doomed = worker(2, "running", displaced=True)  # DisruptionTarget set, container not stopped yet
    assert restart_size(ELASTIC, 4, [worker(0), worker(1), doomed, evicted]).size == 2
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
    assert waiting == Decision(2)
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
    # Marked before its container stops: still running, already known to be taken away.
    doomed = read_worker(pod({"phase": "Running", "conditions": [target]}), NOW, 300)
    assert (doomed.state, doomed.displaced) == ("running", True)
    stopped = read_worker(pod({"phase": "Failed", "containerStatuses": [{"state": term}]}), NOW, 300)
    assert (stopped.reason, stopped.preempted, stopped.displaced) == ("Preempted", True, False)


# ------------------------------------------------------------------- the planner: lifecycle.plan() with elastic sizes

ELASTIC_JOB = {
    "workers": {"replicas": 4, "minReplicas": 2, "scaleDownAfterSeconds": 60, "scaleUpCooldownSeconds": 300},
    "training": {"globalBatchTokens": 48 * SEQ},  # splits over 2, 3 and 4 workers × micro batch 4
}


def nnodes(cluster: Cluster, index: int) -> str:
    container = cluster.pods[naming.pod_name("demo", index)]["spec"]["containers"][0]
    return next(e["value"] for e in container["env"] if e["name"] == "PET_NNODES")


def shrunk_to_two() -> Cluster:
    """An elastic job (2..4 workers) that started on 4, found room for 2, and now trains on 2."""
    cluster = Cluster(new_job(**ELASTIC_JOB))
    cluster.reconcile()
    for i in (0, 1):
        cluster.set_pod(i, running())
    for i in (2, 3):
        cluster.set_pod(i, unschedulable())
    cluster.advance(61)
    cluster.reconcile()
    cluster.gone()
    cluster.reconcile()
    cluster.all_pods(running())
    cluster.reconcile()
    return cluster


def test_an_elastic_job_starts_on_the_most_workers_and_shrinks_to_the_pods_placed_after_the_grace_period() -> None:
    cluster = Cluster(new_job(**ELASTIC_JOB))
    out = cluster.reconcile()
    assert created_kinds(out) == ["ConfigMap", "Service", *["Pod"] * 4]
    st = cluster.status
    assert (st["replicas"], st["desiredReplicas"], st["worldSize"]) == (4, 4, 4)
    for i in (0, 1):
        cluster.set_pod(i, running())
    for i in (2, 3):
        cluster.set_pod(i, unschedulable())
    cluster.advance(59)
    assert cluster.reconcile().delete_pods == []  # within workers.scaleDownAfterSeconds
    cluster.advance(1)
    out = cluster.reconcile()
    st = cluster.status
    assert (st["phase"], st["replicas"], st["desiredReplicas"], st["attempt"]) == ("Restarting", 4, 2, 2)
    assert [(e.type, e.reason) for e in out.events] == [("Warning", SCALED_DOWN)]
    assert "2 of 4 workers unschedulable for 60 s" in st["message"]
    assert sorted(out.delete_pods) == [naming.pod_name("demo", i) for i in range(4)]
    assert st.get("restarts", 0) == 0 and st.get("preemptions", 0) == 0  # a resize is no failure
    cluster.gone()
    out = cluster.reconcile()
    assert created_kinds(out) == ["Pod", "Pod"] and cluster.attempts() == {"2"}
    assert (nnodes(cluster, 0), nnodes(cluster, 1)) == ("2", "2")  # the world the trainer sees: 2 × 1 process
    st = cluster.status
    assert (st["replicas"], st["desiredReplicas"], st["worldSize"], st["lastResizeTime"]) == (
        2,
        2,
        2,
        timestamp(cluster.now),
    )
    cluster.all_pods(running())
    cluster.reconcile()
    assert cluster.status["phase"] == "Running"
    assert cluster.status["message"] == "2 workers × 1 processes training (attempt 2) (elastic: 2 to 4 workers)"


def test_a_job_that_is_not_elastic_waits_for_the_scheduler_however_long_it_takes() -> None:
    cluster = Cluster(new_job(workers={"replicas": 4}))
    cluster.reconcile()
    cluster.all_pods(unschedulable())
    cluster.advance(86400)
    out = cluster.reconcile()
    assert out.delete_pods == [] and out.create == [] and cluster.status["phase"] == "Pending"


def test_after_the_cool_down_spare_pods_hold_places_and_a_placed_spare_grows_the_gang() -> None:
    cluster = shrunk_to_two()
    assert not [n for n in cluster.pods if "spare" in n]  # cooling down
    cluster.advance(300)
    out = cluster.reconcile()
    spares = [o for o in out.create if o["kind"] == "Pod"]
    assert [s["metadata"]["name"] for s in spares] == ["demo-spare-2", "demo-spare-3"]
    worker = cluster.pods[naming.pod_name("demo", 0)]
    for s in spares:  # scheduled like a worker, running nothing, gone at once when deleted
        assert s["metadata"]["labels"][naming.COMPONENT_LABEL] == naming.SPARE_COMPONENT
        assert s["spec"]["containers"][0]["command"] == ["sleep", "infinity"]
        assert s["spec"]["containers"][0]["resources"] == worker["spec"]["containers"][0]["resources"]
        assert s["spec"]["terminationGracePeriodSeconds"] == 0 and "env" not in s["spec"]["containers"][0]
    assert cluster.status["phase"] == "Running" and out.events == []
    assert cluster.reconcile().create == []  # held, not created again
    cluster.pods["demo-spare-2"]["status"] = running()
    cluster.pods["demo-spare-3"]["status"] = unschedulable()
    out = cluster.reconcile()
    st = cluster.status
    assert (st["phase"], st["replicas"], st["desiredReplicas"]) == ("Restarting", 2, 3)
    assert [(e.type, e.reason) for e in out.events] == [("Normal", SCALED_UP)]
    assert sorted(out.delete_pods) == ["demo-spare-2", "demo-spare-3", "demo-worker-0", "demo-worker-1"]
    cluster.gone()
    out = cluster.reconcile()
    assert [o["metadata"]["name"] for o in out.create] == [naming.pod_name("demo", i) for i in range(3)]
    assert nnodes(cluster, 2) == "3" and cluster.status["worldSize"] == 3


def test_spare_pods_go_when_the_job_is_suspended_and_an_exited_spare_is_replaced() -> None:
    cluster = shrunk_to_two()
    cluster.advance(300)
    cluster.reconcile()
    cluster.pods["demo-spare-3"]["status"] = {"phase": "Failed"}
    out = cluster.reconcile()
    assert out.delete_pods == ["demo-spare-3"] and out.create == []
    cluster.gone()
    assert [o["metadata"]["name"] for o in cluster.reconcile().create] == ["demo-spare-3"]
    cluster.edit(suspend=True)
    out = cluster.reconcile()
    assert {"demo-spare-2", "demo-spare-3"} <= set(out.delete_pods)


def test_a_preemption_that_takes_workers_away_restarts_an_elastic_job_without_them() -> None:
    cluster = Cluster(new_job(**ELASTIC_JOB))
    cluster.reconcile()
    cluster.all_pods(running())
    cluster.reconcile()
    cluster.set_pod(3, preempted())
    cluster.set_pod(2, evicted())
    for i in (0, 1):
        cluster.set_pod(i, exited(EXIT_PREEMPTED))
    out = cluster.reconcile()
    st = cluster.status
    assert (st["preemptions"], st["desiredReplicas"], st.get("restarts", 0)) == (1, 2, 0)
    assert ("Warning", SCALED_DOWN) in [(e.type, e.reason) for e in out.events]
    cluster.gone()
    cluster.advance(10)
    assert created_kinds(cluster.reconcile()) == ["Pod", "Pod"]


def test_an_edit_that_puts_the_gang_out_of_range_restarts_it_on_the_nearest_size() -> None:
    cluster = shrunk_to_two()
    cluster.edit(workers={"minReplicas": 3})
    out = cluster.reconcile()
    assert cluster.condition("SpecAccepted")["status"] == "True"
    assert (cluster.status["desiredReplicas"], cluster.condition("Restarting")["reason"]) == (3, "Resized")
    assert "workers.minReplicas changed: restarting with world size 3 (was 2) on 3 workers" in cluster.status["message"]
    assert sorted(out.delete_pods) == ["demo-worker-0", "demo-worker-1"]
    cluster.gone()
    assert created_kinds(cluster.reconcile()) == ["Pod"] * 3


def test_under_kueue_an_elastic_job_holds_no_spare_pods_outside_its_pod_group() -> None:
    cluster = shrunk_to_two()
    cluster.job["metadata"]["labels"][naming.KUEUE_QUEUE_LABEL] = "team-a"
    cluster.advance(300)
    assert cluster.reconcile().create == []


def test_an_elastic_job_made_fixed_size_again_restarts_on_all_its_workers_naming_min_replicas() -> None:
    cluster = shrunk_to_two()
    cluster.edit(workers={"minReplicas": 4})
    cluster.reconcile()
    assert "workers.minReplicas changed: restarting with world size 4 (was 2)" in cluster.status["message"]
    cluster.edit(workers={"replicas": 3, "minReplicas": 2})
    cluster.gone()
    cluster.reconcile()
    cluster.all_pods(running())
    cluster.reconcile()
    assert cluster.status["replicas"] == 3  # the new most: a gang is never larger than workers.replicas
