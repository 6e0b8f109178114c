"""The PretrainJob state machine, `lifecycle.plan()`, driven step by step with hand-built pods.

`Cluster` plays the API server and the kubelet in the simplest way: it applies a plan's creates, replaces and
deletes (a deleted pod gets a deletionTimestamp and stays until `gone()`), feeds the returned status back as the
job's status, and moves time with `advance()`. Pod states are set by hand with the status builders below
(running, exited, evicted, preempted, stuck pulling its image, unschedulable).

Every reconcile also checks three properties of the plan: it does not mutate its inputs; the status it returns
fits the CRD's status schema (the API server would silently drop anything else); and planning again with the
new status and the same observations emits no event and returns the same status (events only on transitions).
"""

from __future__ import annotations

import copy
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from pretrain_operator import children, naming
from pretrain_operator.admission import check
from pretrain_operator.conditions import get_condition
from pretrain_operator.lifecycle import Plan, Settings, plan, timestamp, tokens_after
from pretrain_trainer.contract import (
    API_VERSION,
    EXIT_BAD_CONFIG,
    EXIT_PREEMPTED,
    EXIT_STALLED,
    EXIT_STORAGE_UNAVAILABLE,
    KIND,
    RESTART_ROUND_ANNOTATION,
)
from pretrain_trainer.report import failure_record, termination_record
from tests.support.crd_schema import schema_errors
from tests.support.jobs import deep_merge

T0 = datetime(2025, 3, 1, 12, 0, 0, tzinfo=timezone.utc)
SETTINGS = Settings(image="trainer:test", stuck_grace_s=300.0, backoff_base_s=10.0, backoff_max_s=600.0, resync_s=10.0)
SEQ = 256
BATCH_TOKENS = 8192  # 32 samples per step: splits over 2 or 4 workers × micro batch 4, not over 3
BASE_SPEC: dict[str, Any] = {
    "tokenizer": {"uri": "s3://corpus/tokenizer.json"},
    "data": {"train": "s3://corpus/train", "sequenceLength": SEQ},
    "workers": {"replicas": 2},
    "training": {"maxSteps": 100, "globalBatchTokens": BATCH_TOKENS, "microBatchSize": 4},
    "checkpoint": {"uri": "s3://ckpt/demo", "everySteps": 10},
    "failurePolicy": {"maxRestarts": 3},
}


# ------------------------------------------------------------------------------------ pod statuses


def running(ip: str = "10.0.0.7") -> dict[str, Any]:
    return {
        "phase": "Running",
        "podIP": ip,
        "conditions": [{"type": "PodScheduled", "status": "True"}, {"type": "Ready", "status": "True"}],
        "containerStatuses": [{"name": "trainer", "ready": True, "state": {"running": {"startedAt": timestamp(T0)}}}],
    }


def exited(code: int, message: str = "") -> dict[str, Any]:
    term = {"exitCode": code, "reason": "Completed" if code == 0 else "Error"}
    if message:
        term["message"] = message
    return {
        "phase": "Succeeded" if code == 0 else "Failed",
        "containerStatuses": [{"name": "trainer", "ready": False, "state": {"terminated": term}}],
    }


def evicted() -> dict[str, Any]:
    return {
        "phase": "Failed",
        "reason": "Evicted",
        "message": "The node was low on resource: memory. Threshold quantity: 100Mi, available: 20Mi.",
    }


def preempted() -> dict[str, Any]:
    status = exited(EXIT_PREEMPTED)
    status["conditions"] = [
        {
            "type": "DisruptionTarget",
            "status": "True",
            "reason": "PreemptionByScheduler",
            "message": "Preempted in order to admit critical pod",
        }
    ]
    return status


def image_pull_backoff() -> dict[str, Any]:
    waiting = {"reason": "ImagePullBackOff", "message": 'Back-off pulling image "trainer:typo"'}
    return {
        "phase": "Pending",
        "containerStatuses": [{"name": "trainer", "ready": False, "state": {"waiting": waiting}}],
    }


def unschedulable() -> dict[str, Any]:
    message = "0/12 nodes are available: 12 Insufficient nvidia.com/gpu."
    return {
        "phase": "Pending",
        "conditions": [{"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": message}],
    }


def make_pod(
    job: dict[str, Any], index: int, attempt: int, status: dict[str, Any] | None = None, created: datetime = T0
) -> dict[str, Any]:
    """A worker pod as children.build_pod makes it, as the API server returns it (creationTimestamp, status)."""
    ref = children.JobRef.from_body(job)
    spec = check(ref.name, ref.namespace, job["spec"])
    pod = children.build_pod(ref, spec, index, attempt, SETTINGS.image)
    pod["metadata"]["creationTimestamp"] = timestamp(created)
    pod["status"] = status or {"phase": "Pending"}
    return pod


# ----------------------------------------------------------------------------------------- the cluster


def new_job(spec: dict[str, Any] | None = None, name: str = "demo", **extra: Any) -> dict[str, Any]:
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "metadata": {"name": name, "namespace": "ml", "uid": "uid-123", "generation": 1, "labels": {}},
        # A copy: tests edit their job's spec in place, and deep_merge shares the nested dicts it leaves alone.
        "spec": copy.deepcopy(deep_merge(BASE_SPEC, extra) if spec is None else spec),
    }


class Cluster:
    def __init__(self, job: dict[str, Any], now: datetime = T0, settings: Settings = SETTINGS) -> None:
        self.job, self.now, self.settings = job, now, settings
        self.pods: dict[str, dict[str, Any]] = {}
        self.config_map: dict[str, Any] | None = None
        self.service: dict[str, Any] | None = None
        self.last: Plan | None = None
        self.nodes: dict[str, bool] | None = None  # node readiness, as the operator read it (in-place restarts)

    @property
    def status(self) -> dict[str, Any]:
        return self.job.get("status") or {}

    def condition(self, kind: str) -> dict[str, Any]:
        return get_condition(self.status.get("conditions") or [], kind) or {}

    def reconcile(self, progress: dict[str, Any] | None = None) -> Plan:
        inputs = (self.job, list(self.pods.values()), self.config_map, self.service, progress)
        before = copy.deepcopy(inputs)
        out = plan(*inputs, self.now, self.settings, self.nodes)
        assert inputs == before, "plan() mutated its inputs"
        manifest = {"apiVersion": API_VERSION, "kind": KIND, "metadata": {"name": "x"}, "spec": BASE_SPEC}
        assert schema_errors({**manifest, "status": out.status}) == []
        if not out.delete_job:
            fed_back = {**self.job, "status": out.status}
            pods = list(self.pods.values())
            again = plan(fed_back, pods, self.config_map, self.service, progress, self.now, self.settings, self.nodes)
            assert again.events == [], "a second plan with the same observations emitted events"
            assert again.status == out.status, "a second plan with the same observations changed the status"
        self.apply(out)
        return out

    def apply(self, out: Plan) -> None:
        self.last = out
        self.job["status"] = out.status
        for obj in out.create:
            name = obj["metadata"]["name"]
            if obj["kind"] == "ConfigMap":
                assert self.config_map is None, "ConfigMap created twice"
                self.config_map = copy.deepcopy(obj)
            elif obj["kind"] == "Service":
                assert self.service is None, "Service created twice"
                self.service = copy.deepcopy(obj)
            else:
                assert obj["kind"] == "Pod"
                assert name not in self.pods, f"{name} created while a pod of that name exists"
                pod = copy.deepcopy(obj)
                pod["metadata"]["creationTimestamp"] = timestamp(self.now)
                pod["status"] = {"phase": "Pending"}
                self.pods[name] = pod
        for obj in out.replace:
            assert obj["kind"] == "ConfigMap"
            self.config_map = copy.deepcopy(obj)
        for name in out.delete_pods:
            if name in self.pods:
                self.pods[name]["metadata"].setdefault("deletionTimestamp", timestamp(self.now))
        for name, round_ in out.annotate.items():
            self.pods[name]["metadata"].setdefault("annotations", {})[RESTART_ROUND_ANNOTATION] = str(round_)

    # what happens in the cluster between reconciles

    def set_pod(self, index: int, status: dict[str, Any]) -> None:
        self.pods[naming.pod_name(self.job["metadata"]["name"], index)]["status"] = status

    def all_pods(self, status: dict[str, Any]) -> None:
        for pod in self.pods.values():
            pod["status"] = copy.deepcopy(status)

    def gone(self) -> None:
        """The kubelet finished the deletions: terminating pods disappear."""
        self.pods = {n: p for n, p in self.pods.items() if "deletionTimestamp" not in p["metadata"]}

    def vanish(self, index: int) -> None:
        del self.pods[naming.pod_name(self.job["metadata"]["name"], index)]

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)

    def edit(self, **changes: Any) -> None:
        """`kubectl edit`: deep-merge into the spec; the generation goes up."""
        self.job["spec"] = deep_merge(self.job["spec"], changes)
        self.job["metadata"]["generation"] += 1

    def attempts(self) -> set[str]:
        return {p["metadata"]["labels"][naming.ATTEMPT_LABEL] for p in self.pods.values()}

    def terminating(self) -> set[str]:
        return {n for n, p in self.pods.items() if "deletionTimestamp" in p["metadata"]}


def created_kinds(out: Plan) -> list[str]:
    return [o["kind"] for o in out.create]


def reasons(out: Plan) -> list[str]:
    return [e.reason for e in out.events]


def started(replicas: int = 2, **extra: Any) -> Cluster:
    """A job whose first attempt's workers all run."""
    cluster = Cluster(new_job(**deep_merge({"workers": {"replicas": replicas}}, extra)))
    cluster.reconcile()
    cluster.all_pods(running())
    cluster.reconcile()
    assert cluster.status["phase"] == "Running"
    return cluster


def failed_once(cluster: Cluster, index: int = 1, status: dict[str, Any] | None = None) -> Plan:
    cluster.set_pod(index, status or exited(1))
    return cluster.reconcile()


# ---------------------------------------------------------------------------------------------- start


def test_new_job_creates_config_map_service_and_one_pod_per_worker():
    cluster = Cluster(new_job())
    out = cluster.reconcile()
    assert created_kinds(out) == ["ConfigMap", "Service", "Pod", "Pod"]
    assert sorted(cluster.pods) == ["demo-worker-0", "demo-worker-1"]
    assert cluster.attempts() == {"1"}
    st = cluster.status
    assert st["phase"] == "Pending"
    assert (st["attempt"], st["worldSize"], st["maxSteps"], st["workersReady"]) == (1, 2, 100, 0)
    assert st["startTime"] == timestamp(T0)
    assert st["observedGeneration"] == 1
    assert [(e.type, e.reason) for e in out.events] == [("Normal", "WorkersCreated")]
    assert cluster.condition("SpecAccepted")["status"] == "True"
    assert out.requeue_after == SETTINGS.resync_s


def test_created_children_are_what_the_builders_make():
    cluster = Cluster(new_job())
    out = cluster.reconcile()
    ref = children.JobRef.from_body(cluster.job)
    spec = check("demo", "ml", BASE_SPEC)
    assert out.create == [
        children.build_config_map(ref, spec),
        children.build_service(ref),
        *children.build_pods(ref, spec, 1, SETTINGS.image),
    ]


def test_pending_workers_keep_the_job_pending():
    cluster = Cluster(new_job())
    cluster.reconcile()
    cluster.set_pod(0, running())
    out = cluster.reconcile()
    assert cluster.status["phase"] == "Pending"
    assert cluster.status["workersReady"] == 1
    assert out.create == [] and out.delete_pods == [] and out.events == []


def test_all_workers_running_makes_the_job_running():
    cluster = Cluster(new_job())
    cluster.reconcile()
    cluster.all_pods(running())
    out = cluster.reconcile()
    assert cluster.status["phase"] == "Running"
    assert cluster.status["workersReady"] == 2
    running_cond = cluster.condition("Running")
    assert (running_cond["status"], running_cond["reason"]) == ("True", "WorkersRunning")
    assert running_cond["observedGeneration"] == 1
    assert reasons(out) == ["WorkersRunning"]
    assert out.create == [] and out.delete_pods == []


def test_existing_children_are_not_created_again():
    cluster = started()
    cluster.advance(60)
    out = cluster.reconcile()
    assert out.create == [] and out.replace == [] and out.delete_pods == []


def test_a_deleted_config_map_or_service_is_recreated():
    cluster = started()
    cluster.config_map, cluster.service = None, None
    out = cluster.reconcile()
    assert created_kinds(out) == ["ConfigMap", "Service"]
    assert cluster.status["phase"] == "Running"


# --------------------------------------------------------------------------------------- gang restarts


def test_worker_failure_restarts_the_whole_gang_after_backoff():
    cluster = started()
    out = failed_once(cluster, index=1)
    st = cluster.status
    assert sorted(out.delete_pods) == ["demo-worker-0", "demo-worker-1"]
    assert (st["phase"], st["restarts"], st["attempt"], st["workersReady"]) == ("Restarting", 1, 2, 0)
    assert st["nextStartTime"] == timestamp(T0 + timedelta(seconds=10))
    [event] = out.events
    assert event.type == "Warning"
    assert "demo-worker-1 failed (Error, exit code 1)" in event.message
    assert "gang restart 1/3 in 10 s" in event.message
    assert out.restart_reason == "Error"
    assert out.create == []
    restarting = cluster.condition("Restarting")
    assert restarting["status"] == "True"
    assert cluster.condition("Running")["status"] == "False"


def test_no_new_pods_while_the_old_attempts_pods_exist_or_before_the_backoff_ends():
    cluster = started()
    failed_once(cluster)
    cluster.advance(1)
    out = cluster.reconcile()  # old pods still terminating
    assert out.create == []
    assert out.requeue_after == 1.0
    cluster.gone()
    cluster.advance(3)
    out = cluster.reconcile()  # pods gone, 6 s of backoff left
    assert out.create == [] and out.events == []
    assert out.requeue_after == pytest.approx(6.0)
    assert cluster.status["phase"] == "Restarting"


def test_new_attempt_waits_for_the_old_pods_even_after_the_backoff():
    cluster = started()
    failed_once(cluster)
    cluster.advance(30)
    assert cluster.reconcile().create == []
    cluster.gone()
    out = cluster.reconcile()
    assert created_kinds(out) == ["Pod", "Pod"]
    assert cluster.attempts() == {"2"}
    assert "nextStartTime" not in cluster.status
    assert cluster.status["phase"] == "Restarting"
    assert reasons(out) == ["WorkersCreated"]


def test_restarted_gang_runs_again_with_a_fresh_rendezvous():
    cluster = started()
    failed_once(cluster)
    cluster.gone()
    cluster.advance(10)
    cluster.reconcile()
    rdzv = {
        e["value"]
        for p in cluster.pods.values()
        for e in p["spec"]["containers"][0]["env"]
        if e["name"] == "PET_RDZV_ID"
    }
    assert rdzv == {"uid-123-2"}
    cluster.all_pods(running())
    out = cluster.reconcile()
    assert cluster.status["phase"] == "Running"
    assert "(attempt 2)" in cluster.status["message"]
    assert reasons(out) == ["WorkersRunning"]
    assert cluster.condition("Restarting")["status"] == "False"


def test_backoff_doubles_with_each_restart():
    cluster = started()
    delays = []
    for attempt in (1, 2, 3):
        failed_once(cluster, index=attempt % 2)
        delays.append((datetime.fromisoformat(cluster.status["nextStartTime"]) - cluster.now).total_seconds())
        cluster.gone()
        cluster.advance(delays[-1])
        cluster.reconcile()
        cluster.all_pods(running())
        cluster.reconcile()
        assert cluster.status["restarts"] == attempt
        assert cluster.attempts() == {str(attempt + 1)}
    assert delays == [10, 20, 40]


def test_backoff_is_capped():
    settings = Settings(image="trainer:test", backoff_base_s=10.0, backoff_max_s=15.0)
    cluster = Cluster(new_job(failurePolicy={"maxRestarts": 5}), settings=settings)
    cluster.reconcile()
    cluster.all_pods(running())
    cluster.reconcile()
    failed_once(cluster)
    cluster.gone()
    cluster.advance(10)
    cluster.reconcile()
    cluster.all_pods(running())
    cluster.reconcile()
    failed_once(cluster)
    assert cluster.status["nextStartTime"] == timestamp(cluster.now + timedelta(seconds=15))


def test_more_failures_than_max_restarts_fail_the_job_and_stop_its_workers():
    cluster = started(failurePolicy={"maxRestarts": 1})
    failed_once(cluster)
    cluster.gone()
    cluster.advance(10)
    cluster.reconcile()
    cluster.all_pods(running())
    cluster.reconcile()
    out = failed_once(cluster, index=1)
    st = cluster.status
    assert st["phase"] == "Failed"
    assert st["restarts"] == 1
    assert st["completionTime"] == timestamp(cluster.now)
    failed = cluster.condition("Failed")
    assert (failed["status"], failed["reason"]) == ("True", "BackoffLimitExceeded")
    assert "no restarts left (failurePolicy.maxRestarts: 1)" in failed["message"]
    assert out.delete_pods == ["demo-worker-0"]  # the running one; the failed pod stays for its logs
    assert [(e.type, e.reason) for e in out.events] == [("Warning", "BackoffLimitExceeded")]
    assert "nextStartTime" not in st


def test_max_restarts_zero_fails_at_the_first_failure():
    cluster = started(failurePolicy={"maxRestarts": 0})
    failed_once(cluster)
    assert cluster.status["phase"] == "Failed"
    assert cluster.condition("Failed")["reason"] == "BackoffLimitExceeded"


def test_bad_config_exit_code_fails_at_once_without_a_restart():
    cluster = started()
    out = failed_once(cluster, index=0, status=exited(EXIT_BAD_CONFIG, "ConfigError: spec.data.train: no index.json"))
    st = cluster.status
    assert st["phase"] == "Failed"
    assert st.get("restarts", 0) == 0
    failed = cluster.condition("Failed")
    assert failed["reason"] == "InvalidConfig"
    assert "demo-worker-0 failed (InvalidConfig, exit code 2)" in failed["message"]
    assert "no index.json" in failed["message"]
    assert out.delete_pods == ["demo-worker-1"]
    assert [e.type for e in out.events] == ["Warning"]


@pytest.mark.parametrize(
    ("status", "reason"),
    [
        pytest.param(exited(1), "Error", id="exit-1"),
        pytest.param(exited(137), "Error", id="oom-killed-137"),
        pytest.param(exited(EXIT_STORAGE_UNAVAILABLE), "StorageUnavailable", id="storage-unavailable-75"),
        pytest.param(exited(EXIT_STALLED), "Stalled", id="stalled-76"),
    ],
)
def test_worker_failures_count_against_max_restarts(status, reason):
    cluster = started()
    out = failed_once(cluster, index=1, status=status)
    assert cluster.status["phase"] == "Restarting"
    assert cluster.status["restarts"] == 1 and "preemptions" not in cluster.status
    assert out.restart_reason == reason
    assert cluster.condition("Restarting")["reason"] == reason
    assert sorted(out.delete_pods) == ["demo-worker-0", "demo-worker-1"]


@pytest.mark.parametrize(
    ("status", "reason"),
    [
        pytest.param(evicted(), "Evicted", id="evicted"),
        pytest.param(preempted(), "PreemptionByScheduler", id="disruption-target"),
        pytest.param(exited(EXIT_PREEMPTED), "Preempted", id="sigterm-143"),
    ],
)
def test_preemptions_restart_the_gang_without_spending_restarts(status, reason):
    cluster = started(failurePolicy={"maxRestarts": 0})
    out = failed_once(cluster, index=1, status=status)
    st = cluster.status
    assert (st["phase"], st["preemptions"], st.get("restarts", 0), st["attempt"]) == ("Restarting", 1, 0, 2)
    assert out.restart_reason == reason
    assert "preemption 1 (failurePolicy.maxPreemptions: unlimited)" in st["message"]
    assert "not counted against failurePolicy.maxRestarts" in st["message"]
    assert st["nextStartTime"] == timestamp(T0 + timedelta(seconds=10))
    assert sorted(out.delete_pods) == ["demo-worker-0", "demo-worker-1"]


def _preempt_and_restart(cluster: Cluster) -> None:
    cluster.set_pod(1, exited(EXIT_PREEMPTED))
    cluster.reconcile()
    cluster.gone()
    cluster.advance(SETTINGS.backoff_max_s)
    cluster.reconcile()
    cluster.all_pods(running())
    cluster.reconcile()


def test_preemptions_are_unlimited_by_default_and_their_backoff_does_not_grow():
    cluster = started(failurePolicy={"maxRestarts": 1})
    for n in range(1, 6):
        cluster.set_pod(1, exited(EXIT_PREEMPTED))
        cluster.reconcile()
        assert cluster.status["nextStartTime"] == timestamp(cluster.now + timedelta(seconds=SETTINGS.backoff_base_s))
        cluster.gone()
        cluster.advance(SETTINGS.backoff_max_s)
        cluster.reconcile()
        cluster.all_pods(running())
        cluster.reconcile()
        assert (cluster.status["phase"], cluster.status["preemptions"]) == ("Running", n)
    assert cluster.status.get("restarts", 0) == 0
    failed_once(cluster, index=0)  # a real failure still has its own budget
    assert (cluster.status["phase"], cluster.status["restarts"], cluster.status["preemptions"]) == ("Restarting", 1, 5)


def test_more_preemptions_than_max_preemptions_fail_the_job():
    cluster = started(failurePolicy={"maxPreemptions": 1})
    _preempt_and_restart(cluster)
    assert cluster.status["phase"] == "Running"
    out = failed_once(cluster, index=0, status=evicted())
    assert cluster.status["phase"] == "Failed"
    assert cluster.condition("Failed")["reason"] == "PreemptionLimitExceeded"
    assert "no restarts left after preemptions (failurePolicy.maxPreemptions: 1)" in cluster.status["message"]
    assert "demo-worker-1" in out.delete_pods


def test_a_storage_outage_restarts_the_gang_and_the_status_names_the_store():
    cluster = started()
    error = (
        "object store unavailable: s3://ckpt/demo/step-00000010/__0_0.distcp: PutObject still failing after 97 "
        "attempt(s) in 300.0 s; last error: ServiceUnavailable (HTTP 503)."
    )
    out = failed_once(cluster, index=1, status=exited(EXIT_STORAGE_UNAVAILABLE, failure_record(error)))
    assert cluster.status["phase"] == "Restarting" and out.restart_reason == "StorageUnavailable"
    message = cluster.status["message"]
    assert message.startswith("demo-worker-1 failed (StorageUnavailable, exit code 75): object store unavailable: ")
    assert "s3://ckpt/demo/step-00000010/__0_0.distcp" in message and "gang restart 1/3" in message


def test_the_worker_that_said_why_is_named_over_a_lower_index_that_only_followed():
    cluster = started(replicas=4)
    cluster.set_pod(0, exited(1))  # rank 0 lost its peer in a collective
    report = "stalled: rank 3 on host demo-worker-3 made no progress for 600 s after step 41"
    cluster.set_pod(3, exited(EXIT_STALLED, failure_record(report)))
    out = cluster.reconcile()
    assert out.restart_reason == "Stalled"
    assert cluster.status["message"].startswith(f"demo-worker-3 failed (Stalled, exit code 76): {report}")


def test_eviction_message_is_in_the_status():
    cluster = started()
    failed_once(cluster, index=0, status=evicted())
    assert "demo-worker-0 failed (Evicted)" in cluster.status["message"]
    assert "low on resource: memory" in cluster.status["message"]


def test_a_vanished_pod_is_a_lost_worker():
    cluster = started()
    cluster.vanish(1)
    out = cluster.reconcile()
    assert cluster.status["phase"] == "Restarting"
    assert out.restart_reason == "WorkerLost"
    assert "demo-worker-1 disappeared" in cluster.status["message"]
    assert out.delete_pods == ["demo-worker-0"]


def test_the_lowest_failed_index_is_named_as_the_cause():
    cluster = started(replicas=4)
    cluster.set_pod(3, exited(1))
    cluster.set_pod(1, evicted())
    out = cluster.reconcile()
    assert out.restart_reason == "Evicted"
    assert cluster.status["message"].startswith("demo-worker-1 failed (Evicted)")


def test_image_pull_errors_are_tolerated_within_the_grace_period():
    cluster = Cluster(new_job())
    cluster.reconcile()
    cluster.set_pod(0, running())
    cluster.set_pod(1, image_pull_backoff())
    cluster.advance(SETTINGS.stuck_grace_s - 1)
    out = cluster.reconcile()
    assert cluster.status["phase"] == "Pending"
    assert out.delete_pods == [] and out.events == []


def test_image_pull_errors_past_the_grace_period_are_a_failure():
    cluster = Cluster(new_job())
    cluster.reconcile()
    cluster.set_pod(0, running())
    cluster.set_pod(1, image_pull_backoff())
    cluster.advance(SETTINGS.stuck_grace_s)
    out = cluster.reconcile()
    assert cluster.status["phase"] == "Restarting"
    assert out.restart_reason == "ImagePullBackOff"
    assert 'demo-worker-1: ImagePullBackOff: Back-off pulling image "trainer:typo"' in cluster.status["message"]


def test_unschedulable_worker_is_named_in_the_message():
    cluster = Cluster(new_job())
    cluster.reconcile()
    cluster.set_pod(0, running())
    cluster.set_pod(1, unschedulable())
    cluster.advance(600)
    out = cluster.reconcile()
    st = cluster.status
    assert st["phase"] == "Pending"
    assert "demo-worker-1" in st["message"]
    assert "Unschedulable" in st["message"]
    assert "Insufficient nvidia.com/gpu" in st["message"]
    assert out.delete_pods == []


def test_message_stops_saying_unschedulable_once_the_worker_is_scheduled():
    cluster = Cluster(new_job())
    cluster.reconcile()
    cluster.set_pod(0, running())
    cluster.set_pod(1, unschedulable())
    cluster.reconcile()
    assert "not scheduled" in cluster.status["message"]
    waiting = {"reason": "ContainerCreating"}
    cluster.set_pod(
        1,
        {
            "phase": "Pending",
            "conditions": [{"type": "PodScheduled", "status": "True"}],
            "containerStatuses": [{"name": "trainer", "ready": False, "state": {"waiting": waiting}}],
        },
    )
    cluster.reconcile()
    assert cluster.status["phase"] == "Pending"
    assert "not scheduled" not in cluster.status["message"]


# ------------------------------------------------------------------------------------------ success


def test_all_workers_succeeded_completes_the_job():
    cluster = started()
    cluster.advance(3600)
    cluster.all_pods(exited(0))
    out = cluster.reconcile()
    st = cluster.status
    assert st["phase"] == "Succeeded"
    assert st["completionTime"] == timestamp(cluster.now)
    assert st["step"] == 100
    assert st["tokensSeen"] == 100 * BATCH_TOKENS
    succeeded = cluster.condition("Succeeded")
    assert (succeeded["status"], succeeded["reason"]) == ("True", "Completed")
    assert cluster.condition("Running")["status"] == "False"
    assert [(e.type, e.reason) for e in out.events] == [("Normal", "Completed")]
    assert out.delete_pods == []


def test_a_finished_job_stays_finished():
    cluster = started()
    cluster.all_pods(exited(0))
    cluster.reconcile()
    cluster.advance(600)
    cluster.pods.clear()
    out = cluster.reconcile()
    assert cluster.status["phase"] == "Succeeded"
    assert out.create == [] and out.events == [] and not out.delete_job


def test_one_worker_done_while_others_run_is_still_running():
    cluster = started()
    cluster.set_pod(1, exited(0))
    out = cluster.reconcile()
    assert cluster.status["phase"] == "Running"
    assert out.delete_pods == []


@pytest.mark.parametrize(
    ("policy", "deleted"),
    [("Running", []), ("All", ["demo-worker-0", "demo-worker-1"]), ("None", [])],
)
def test_clean_pod_policy_on_success(policy, deleted):
    cluster = started(cleanPodPolicy=policy)
    cluster.all_pods(exited(0))
    out = cluster.reconcile()
    assert sorted(out.delete_pods) == deleted


@pytest.mark.parametrize(
    ("policy", "deleted"),
    [
        ("Running", ["demo-worker-1", "demo-worker-2"]),
        ("All", ["demo-worker-0", "demo-worker-1", "demo-worker-2"]),
        ("None", ["demo-worker-1", "demo-worker-2"]),
    ],
)
def test_clean_pod_policy_on_failure_and_the_gang_rule(policy, deleted):
    """Failed jobs stop every worker that could still run (gang semantics), whatever the policy keeps."""
    cluster = Cluster(new_job(workers={"replicas": 3}, training={"globalBatchTokens": 3 * 4 * SEQ}))
    cluster.job["spec"]["failurePolicy"]["maxRestarts"] = 0
    cluster.job["spec"]["cleanPodPolicy"] = policy
    cluster.reconcile()
    cluster.set_pod(0, exited(1))
    cluster.set_pod(1, running())
    # worker 2 is still pending (scheduling, pulling its image)
    out = cluster.reconcile()
    assert cluster.status["phase"] == "Failed"
    assert sorted(out.delete_pods) == deleted


@pytest.mark.parametrize(("policy", "deleted"), [("Running", []), ("All", ["demo-worker-0", "demo-worker-1"])])
def test_clean_pod_policy_applies_to_pods_left_after_the_job_finished(policy, deleted):
    cluster = started(cleanPodPolicy=policy)
    cluster.all_pods(exited(0))
    cluster.reconcile()
    for pod in cluster.pods.values():
        pod["metadata"].pop("deletionTimestamp", None)
    cluster.advance(5)
    out = cluster.reconcile()
    assert sorted(out.delete_pods) == deleted


# ------------------------------------------------------------------------------------------------ TTL


def test_ttl_deletes_the_finished_job_when_due():
    cluster = started(ttlSecondsAfterFinished=600)
    cluster.all_pods(exited(0))
    out = cluster.reconcile()
    assert not out.delete_job
    cluster.advance(100)
    out = cluster.reconcile()
    assert not out.delete_job
    assert out.requeue_after == pytest.approx(500)
    cluster.advance(500)
    out = cluster.reconcile()
    assert out.delete_job
    assert [(e.type, e.reason) for e in out.events] == [("Normal", "Expired")]


def test_without_ttl_a_finished_job_is_kept():
    cluster = started()
    cluster.all_pods(exited(0))
    cluster.reconcile()
    cluster.advance(10**7)
    out = cluster.reconcile()
    assert not out.delete_job
    assert out.requeue_after is None


def test_ttl_also_applies_to_failed_jobs():
    cluster = started(ttlSecondsAfterFinished=60, failurePolicy={"maxRestarts": 0})
    failed_once(cluster)
    cluster.advance(60)
    assert cluster.reconcile().delete_job


def test_ttl_applies_to_a_job_whose_spec_was_never_valid():
    spec = {**copy.deepcopy(BASE_SPEC), "ttlSecondsAfterFinished": 30}
    del spec["data"]["train"]
    cluster = Cluster(new_job(spec))
    cluster.reconcile()
    assert cluster.status["phase"] == "Failed"
    cluster.advance(29)
    out = cluster.reconcile()
    assert not out.delete_job and out.requeue_after == pytest.approx(1)
    cluster.advance(1)
    assert cluster.reconcile().delete_job


@pytest.mark.parametrize("ttl", ["600", -5, 1.5, True])
def test_a_malformed_ttl_on_an_invalid_spec_keeps_the_job(ttl):
    # Not of the field's type or out of its bounds: the field's default (0, keep) applies, as the CRD would have it.
    spec = {**copy.deepcopy(BASE_SPEC), "ttlSecondsAfterFinished": ttl}
    cluster = Cluster(new_job(spec))
    cluster.reconcile()
    assert "spec.ttlSecondsAfterFinished" in cluster.condition("Failed")["message"]
    cluster.advance(10**7)
    out = cluster.reconcile()
    assert not out.delete_job and out.requeue_after is None


# -------------------------------------------------------------------------------------------- suspend


def test_suspend_stops_the_workers_and_resume_starts_a_new_attempt():
    cluster = started()
    cluster.edit(suspend=True)
    out = cluster.reconcile()
    st = cluster.status
    assert st["phase"] == "Suspended"
    assert sorted(out.delete_pods) == ["demo-worker-0", "demo-worker-1"]
    assert st["workersReady"] == 0
    assert "2 workers stopping" in st["message"]
    assert reasons(out) == ["Suspended"]
    assert cluster.condition("Suspended")["status"] == "True"
    assert cluster.condition("Running")["status"] == "False"
    assert [o["kind"] for o in out.replace] == ["ConfigMap"]  # suspend is a mutable field
    cluster.gone()
    out = cluster.reconcile()
    assert "no workers run" in cluster.status["message"]
    assert out.requeue_after is None

    cluster.edit(suspend=False)
    out = cluster.reconcile()
    st = cluster.status
    assert st["phase"] == "Pending"
    assert "Resumed" in reasons(out)
    assert st["attempt"] == 2
    assert st.get("restarts", 0) == 0  # a suspension is not a failure
    assert created_kinds(out) == ["Pod", "Pod"]
    assert cluster.attempts() == {"2"}
    assert cluster.condition("Suspended")["status"] == "False"


def test_resume_before_the_suspended_pods_are_gone_waits_for_them():
    cluster = started()
    cluster.edit(suspend=True)
    cluster.reconcile()
    cluster.edit(suspend=False)
    out = cluster.reconcile()
    assert cluster.status["phase"] == "Pending"
    assert reasons(out) == ["Resumed"]
    assert out.create == []
    cluster.gone()
    out = cluster.reconcile()
    assert created_kinds(out) == ["Pod", "Pod"]
    assert cluster.attempts() == {"2"}


def test_a_job_created_suspended_starts_no_workers():
    cluster = Cluster(new_job(suspend=True))
    out = cluster.reconcile()
    assert created_kinds(out) == ["ConfigMap", "Service"]
    assert cluster.status["phase"] == "Suspended"
    cluster.edit(suspend=False)
    out = cluster.reconcile()
    assert created_kinds(out) == ["Pod", "Pod"]
    assert cluster.status["attempt"] == 1


# --------------------------------------------------------------------------------------------- resize


def test_resize_restarts_the_gang_with_the_new_world_size():
    cluster = started()
    cluster.edit(workers={"replicas": 4})
    out = cluster.reconcile()
    st = cluster.status
    assert st["phase"] == "Restarting"
    assert cluster.condition("Restarting")["reason"] == "Resized"
    assert "world size 4 (was 2)" in st["message"]
    assert sorted(out.delete_pods) == ["demo-worker-0", "demo-worker-1"]
    assert st.get("restarts", 0) == 0  # not a failure
    assert "nextStartTime" not in st  # no backoff
    assert out.restart_reason == ""
    assert [o["kind"] for o in out.replace] == ["ConfigMap"]
    assert children.accepted_spec_of(cluster.config_map)["workers"]["replicas"] == 4
    cluster.gone()
    out = cluster.reconcile()
    assert created_kinds(out) == ["Pod"] * 4
    assert cluster.status["worldSize"] == 4
    assert cluster.attempts() == {"2"}
    env = {e["name"]: e.get("value") for e in cluster.pods["demo-worker-3"]["spec"]["containers"][0]["env"]}
    assert (env["PET_NNODES"], env["PET_NPROC_PER_NODE"]) == ("4", "1")  # world size 4
    cluster.all_pods(running())
    cluster.reconcile()
    assert cluster.status["phase"] == "Running"
    assert cluster.status.get("restarts", 0) == 0


def test_resize_that_breaks_batch_divisibility_is_refused():
    cluster = started()
    cluster.edit(workers={"replicas": 3})
    out = cluster.reconcile()
    st = cluster.status
    accepted = cluster.condition("SpecAccepted")
    assert (accepted["status"], accepted["reason"]) == ("False", "ChangeRefused")
    assert "spec.training.globalBatchTokens" in accepted["message"]
    assert "over 3 processes" in accepted["message"]
    assert st["phase"] == "Running"
    assert st["worldSize"] == 2
    assert out.delete_pods == [] and out.replace == []
    assert [(e.type, e.reason) for e in out.events] == [("Warning", "SpecChangeRefused")]


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"model": {"architecture": "llama"}}, "spec.model.architecture"),
        ({"training": {"maxSteps": 5000}}, "spec.training.maxSteps"),
        ({"data": {"train": "s3://corpus/other"}}, "spec.data.train"),
        ({"tokenizer": {"uri": "s3://corpus/other.json"}}, "spec.tokenizer.uri"),
    ],
    ids=["architecture", "maxSteps", "data", "tokenizer"],
)
def test_immutable_change_is_refused_and_the_job_runs_on(change, field):
    cluster = started()
    config_map = copy.deepcopy(cluster.config_map)
    cluster.edit(**change)
    out = cluster.reconcile()
    st = cluster.status
    accepted = cluster.condition("SpecAccepted")
    assert (accepted["status"], accepted["reason"]) == ("False", "ChangeRefused")
    assert f"{field} cannot change on an existing job" in accepted["message"]
    assert accepted["observedGeneration"] == 2
    assert st["phase"] == "Running"
    assert st["maxSteps"] == 100
    assert out.replace == [] and out.delete_pods == [] and out.create == []
    assert cluster.config_map == config_map
    [event] = out.events
    assert (event.type, event.reason) == ("Warning", "SpecChangeRefused")
    assert field in event.message


def test_reverting_a_refused_change_accepts_the_spec_again():
    cluster = started()
    cluster.edit(model={"architecture": "llama"})
    cluster.reconcile()
    cluster.edit(model={"architecture": "gpt2"})
    out = cluster.reconcile()
    accepted = cluster.condition("SpecAccepted")
    assert (accepted["status"], accepted["reason"]) == ("True", "Accepted")
    assert out.events == []


def test_mutable_part_of_a_mixed_change_applies():
    cluster = started()
    cluster.edit(model={"architecture": "llama"}, failurePolicy={"maxRestarts": 7})
    out = cluster.reconcile()
    assert cluster.condition("SpecAccepted")["status"] == "False"
    written = children.accepted_spec_of(cluster.config_map)
    assert written["failurePolicy"]["maxRestarts"] == 7
    assert written["model"]["architecture"] == "gpt2"
    assert [o["kind"] for o in out.replace] == ["ConfigMap"]
    assert cluster.status["phase"] == "Running"


def test_an_invalid_edit_of_a_running_job_is_refused():
    cluster = started()
    cluster.edit(training={"precision": "fp16"})
    out = cluster.reconcile()
    accepted = cluster.condition("SpecAccepted")
    assert accepted["status"] == "False"
    assert "spec.training.precision" in accepted["message"]
    assert cluster.status["phase"] == "Running"
    assert out.delete_pods == []


# --------------------------------------------------------------------------------------- invalid specs


def test_invalid_spec_at_creation_fails_the_job_naming_the_field():
    spec = copy.deepcopy(BASE_SPEC)
    del spec["data"]["train"]
    cluster = Cluster(new_job(spec))
    out = cluster.reconcile()
    st = cluster.status
    assert st["phase"] == "Failed"
    failed = cluster.condition("Failed")
    assert (failed["status"], failed["reason"]) == ("True", "InvalidSpec")
    assert "spec.data.train: required" in failed["message"]
    assert out.create == [] and out.delete_pods == []
    assert [(e.type, e.reason) for e in out.events] == [("Warning", "InvalidSpec")]
    assert cluster.config_map is None and cluster.service is None and cluster.pods == {}


def test_fixing_an_invalid_spec_starts_the_job():
    spec = copy.deepcopy(BASE_SPEC)
    spec["training"]["microBatchSize"] = 3
    cluster = Cluster(new_job(spec))
    cluster.reconcile()
    assert cluster.condition("Failed")["reason"] == "InvalidSpec"
    cluster.advance(5)
    assert cluster.reconcile().create == []  # same generation: stays failed
    cluster.edit(training={"microBatchSize": 4})
    out = cluster.reconcile()
    st = cluster.status
    assert st["phase"] == "Pending"
    assert created_kinds(out) == ["ConfigMap", "Service", "Pod", "Pod"]
    assert "completionTime" not in st
    assert st["observedGeneration"] == 2
    assert cluster.condition("Failed")["status"] == "False"
    cluster.all_pods(running())
    cluster.reconcile()
    assert cluster.status["phase"] == "Running"


# ------------------------------------------------------------------------------------------- progress


def test_progress_goes_into_the_status_and_tokens_seen_follows_the_step():
    cluster = started()
    progress = {
        "step": 42,
        "loss": 3.1416,
        "tokensPerSecond": 123456.5,
        "lastCheckpoint": 40,
        "lastCheckpointTime": "2025-03-01T12:30:00Z",
    }
    out = cluster.reconcile(progress)
    st = cluster.status
    assert {k: st[k] for k in progress} == progress
    assert st["tokensSeen"] == 42 * BATCH_TOKENS == tokens_after(check("demo", "ml", BASE_SPEC), 42)
    assert out.events == []


def test_progress_tokens_seen_is_derived_not_copied():
    """pretrain_tokens_total restarts from 0 with the trainer; the status derives tokensSeen from the step."""
    cluster = started()
    cluster.reconcile({"step": 10, "tokensSeen": 7})
    assert cluster.status["tokensSeen"] == 10 * BATCH_TOKENS


def test_progress_survives_a_restart():
    cluster = started()
    cluster.reconcile({"step": 30, "loss": 4.0})
    failed_once(cluster)
    assert (cluster.status["step"], cluster.status["loss"]) == (30, 4.0)


def test_rank_zero_termination_message_is_merged():
    cluster = started()
    record = termination_record(
        {
            "steps": 37,
            "final_loss": 2.75,
            "tokens_seen": 999,
            "tokens_per_second": 5000.04,
            "last_checkpoint_step": 30,
            "preempted": False,
        }
    )
    failed_once(cluster, index=0, status=exited(1, record))
    st = cluster.status
    assert (st["step"], st["loss"], st["tokensPerSecond"], st["lastCheckpoint"]) == (37, 2.75, 5000.0, 30)
    assert st["tokensSeen"] == 37 * BATCH_TOKENS
    assert "preempted" not in st
    assert record not in st["message"]  # JSON is the result, not a log line for the message


def test_the_downstream_probe_reaches_the_status_from_a_scrape_and_from_the_termination_message():
    cluster = started()
    cluster.reconcile({"step": 20, "probeAccuracy": {"language": 0.61}, "probeStep": 20})
    assert (cluster.status["probeAccuracy"], cluster.status["probeStep"]) == ({"language": 0.61}, 20)
    probes = {"language": {"step": 37, "accuracy": 0.83456, "low": 0.8, "high": 0.87}}
    record = termination_record({"steps": 37, "final_loss": 2.0, "tokens_seen": 1, "tokens_per_second": 1.0,
                                 "probes": probes})  # fmt: skip
    failed_once(cluster, index=0, status=exited(1, record))
    assert (cluster.status["probeAccuracy"], cluster.status["probeStep"]) == ({"language": 0.8346}, 37)


def test_termination_message_wins_over_an_older_scrape():
    cluster = started()
    cluster.set_pod(0, exited(0, '{"step": 100, "loss": 1.5}'))
    cluster.reconcile({"step": 90, "loss": 1.9})
    assert (cluster.status["step"], cluster.status["loss"]) == (100, 1.5)


def test_a_log_tail_termination_message_is_not_progress():
    cluster = started()
    failed_once(cluster, index=0, status=exited(1, "Traceback ...\nRuntimeError: NCCL error"))
    assert "step" not in cluster.status
    assert "RuntimeError: NCCL error" in cluster.status["message"]


def test_progress_percent_eta_and_report_time_follow_the_throughput():
    cluster = started()
    cluster.advance(30)
    # 8192 tokens per step at 4096 tokens/s: 2 s a step; 75 steps left → 150 s from the report.
    cluster.reconcile({"step": 25, "tokensPerSecond": 4096.0})
    st = cluster.status
    assert st["progress"] == 25.0
    assert st["progressTime"] == timestamp(T0 + timedelta(seconds=30))
    assert st["estimatedCompletionTime"] == timestamp(T0 + timedelta(seconds=30 + 150))
    cluster.advance(10)
    cluster.reconcile({"step": 30, "tokensPerSecond": 8192.0})  # faster now: 1 s a step, 70 left
    assert (cluster.status["progress"], cluster.status["estimatedCompletionTime"]) == (
        30.0,
        timestamp(T0 + timedelta(seconds=40 + 70)),
    )


def test_without_a_new_report_the_last_report_time_and_eta_stay():
    cluster = started()
    cluster.reconcile({"step": 50, "tokensPerSecond": 8192.0})
    reported = {k: cluster.status[k] for k in ("progressTime", "estimatedCompletionTime", "progress")}
    cluster.advance(20)
    cluster.reconcile(None)  # rank 0 busy (checkpointing): no scrape
    assert {k: cluster.status[k] for k in reported} == reported


def test_no_throughput_gives_progress_but_no_eta():
    cluster = started()
    cluster.reconcile({"step": 1})
    assert cluster.status["progress"] == 1.0 and "estimatedCompletionTime" not in cluster.status
    cluster.reconcile({"step": 2, "tokensPerSecond": 0.0})
    assert "estimatedCompletionTime" not in cluster.status


def test_eta_goes_away_when_training_stops_and_success_is_100_percent():
    cluster = started()
    cluster.reconcile({"step": 50, "tokensPerSecond": 8192.0})
    failed_once(cluster)
    assert "estimatedCompletionTime" not in cluster.status and cluster.status["progress"] == 50.0
    done = started()
    done.reconcile({"step": 99, "tokensPerSecond": 8192.0})
    done.all_pods(exited(0))
    done.reconcile()
    assert (done.status["phase"], done.status["progress"]) == ("Succeeded", 100.0)
    assert "estimatedCompletionTime" not in done.status


# -------------------------------------------------------------------------------------- active deadline


def test_a_job_past_its_active_deadline_fails_and_stops_its_workers():
    cluster = started(activeDeadlineSeconds=600)
    cluster.advance(300)
    out = cluster.reconcile()
    assert cluster.status["phase"] == "Running" and out.delete_pods == []
    assert out.requeue_after == SETTINGS.resync_s
    cluster.advance(295)
    assert cluster.reconcile().requeue_after == pytest.approx(5.0)  # looks again when the deadline passes
    cluster.advance(5)
    out = cluster.reconcile()
    st = cluster.status
    assert (st["phase"], cluster.condition("Failed")["reason"]) == ("Failed", "DeadlineExceeded")
    assert sorted(out.delete_pods) == ["demo-worker-0", "demo-worker-1"]
    [event] = out.events
    assert (event.type, event.reason) == ("Warning", "DeadlineExceeded")
    assert "spec.activeDeadlineSeconds (600 s since 2025-03-01T12:00:00Z)" in event.message
    assert st["completionTime"] == timestamp(T0 + timedelta(seconds=600))


def test_the_deadline_counts_restarts_and_backoffs_and_stops_pods_of_any_attempt():
    cluster = started(activeDeadlineSeconds=100)
    failed_once(cluster)
    cluster.gone()
    cluster.advance(10)
    cluster.reconcile()  # the second attempt starts after the backoff
    cluster.set_pod(0, running())  # one of its workers runs, the other is still pending
    cluster.advance(90)
    out = cluster.reconcile()
    assert cluster.condition("Failed")["reason"] == "DeadlineExceeded"
    assert out.create == []
    assert sorted(out.delete_pods) == ["demo-worker-0", "demo-worker-1"]
    cluster.gone()
    assert cluster.reconcile().create == []  # no new attempt after the deadline


def test_a_gang_that_succeeded_wins_over_a_deadline_that_passed_meanwhile():
    cluster = started(activeDeadlineSeconds=60)
    cluster.all_pods(exited(0))
    cluster.advance(120)
    cluster.reconcile()
    assert cluster.status["phase"] == "Succeeded"


def test_the_deadline_counts_from_the_resume_after_a_suspension_and_can_be_extended():
    cluster = started(activeDeadlineSeconds=100)
    cluster.edit(suspend=True)
    cluster.reconcile()
    cluster.gone()
    cluster.advance(500)  # suspended time does not count
    cluster.reconcile()
    cluster.edit(suspend=False)
    cluster.reconcile()
    assert cluster.status["startTime"] == timestamp(T0 + timedelta(seconds=500))
    cluster.advance(90)
    cluster.all_pods(running())
    cluster.reconcile()
    cluster.edit(activeDeadlineSeconds=1000)  # a mutable field
    cluster.advance(60)
    cluster.reconcile()
    assert cluster.status["phase"] == "Running"
    assert cluster.condition("SpecAccepted")["status"] == "True"


def test_no_deadline_by_default():
    cluster = started()
    cluster.advance(10 * 365 * 24 * 3600)
    assert cluster.reconcile().requeue_after == SETTINGS.resync_s
    assert cluster.status["phase"] == "Running"


# ------------------------------------------------------------------------------------------- idempotence


def test_the_same_inputs_give_the_same_plan():
    cluster = started()
    failed_once(cluster)
    job, pods = copy.deepcopy(cluster.job), list(cluster.pods.values())
    first = plan(job, pods, cluster.config_map, cluster.service, {"step": 5}, cluster.now, SETTINGS)
    second = plan(job, pods, cluster.config_map, cluster.service, {"step": 5}, cluster.now, SETTINGS)
    assert first == second


def test_steady_state_emits_no_events_and_keeps_condition_times():
    cluster = started()
    running_since = cluster.condition("Running")["lastTransitionTime"]
    for _ in range(3):
        cluster.advance(60)
        out = cluster.reconcile({"step": 1})
        assert out.events == []
    assert cluster.condition("Running")["lastTransitionTime"] == running_since == timestamp(T0)


def test_kopf_bookkeeping_is_not_copied_into_the_status():
    cluster = started()
    cluster.job["status"]["kopf"] = {"progress": {}}
    out = cluster.reconcile()
    assert "kopf" not in out.status
