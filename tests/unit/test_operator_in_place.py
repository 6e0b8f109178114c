"""In-place restarts in `lifecycle.plan()` (in_place.py): which path a trainer failure takes and why, the restart
round the pods are asked for, and the restarts both paths count. Driven with the lifecycle tests' `Cluster`; a
pod's readiness is what its worker says (its trainers run for the round asked), its node's readiness what the
operator read.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest

from pretrain_operator.in_place import nodes_to_check, restart_path
from pretrain_operator.lifecycle import Settings
from pretrain_operator.workers import Worker, read_worker
from pretrain_trainer.contract import RESTART_ROUND_ANNOTATION
from tests.unit.test_operator_lifecycle import SETTINGS, T0, Cluster, exited, new_job, reasons, running

NODES = {"node-a": True, "node-b": True}


def on_node(status: dict[str, Any], ready: bool = True) -> dict[str, Any]:
    """A running pod's status with its container ready (trainers running) or not."""
    status = copy.deepcopy(status)
    status["containerStatuses"][0]["ready"] = ready
    return status


def place(cluster: Cluster) -> None:
    """The scheduler put worker i on node-a or node-b."""
    for i, pod in enumerate(sorted(cluster.pods)):
        cluster.pods[pod]["spec"]["nodeName"] = "node-a" if i % 2 == 0 else "node-b"


def training(replicas: int = 2, settings: Settings = SETTINGS, **extra: Any) -> Cluster:
    """A job whose gang runs with every trainer running (round 0 seen ready), on Ready nodes."""
    cluster = Cluster(new_job(**{"workers": {"replicas": replicas}, **extra}), settings=settings)
    cluster.nodes = dict(NODES)
    cluster.reconcile()
    place(cluster)
    cluster.all_pods(running())
    cluster.reconcile()
    assert cluster.status["phase"] == "Running" and cluster.status["readyRound"] == 0
    return cluster


def trainers_stop(cluster: Cluster, *indices: int) -> None:
    for i in indices:
        cluster.set_pod(i, on_node(running(), ready=False))


def rounds(cluster: Cluster) -> dict[str, str]:
    return {n: p["metadata"]["annotations"][RESTART_ROUND_ANNOTATION] for n, p in cluster.pods.items()}


def test_a_trainer_failure_in_healthy_pods_restarts_the_trainers_in_place_at_once():
    cluster = training()
    trainers_stop(cluster, 1)
    out = cluster.reconcile()
    assert out.delete_pods == [] and out.create == []  # the pods stay
    assert out.annotate == {"demo-worker-0": 1, "demo-worker-1": 1}  # every worker of the gang, the failed one too
    assert rounds(cluster) == {"demo-worker-0": "1", "demo-worker-1": "1"}
    st = cluster.status
    assert (st["phase"], st["restarts"], st["restartRound"], st["attempt"]) == ("Restarting", 1, 1, 1)
    assert "nextStartTime" not in st  # no backoff: nothing is scheduled or pulled again
    (event,) = out.events
    assert (event.type, event.reason) == ("Warning", "RestartedInPlace")
    assert "demo-worker-1" in event.message and "every pod runs on a Ready node" in event.message
    assert "in-place restart 1/3, round 1" in event.message


def test_the_job_runs_again_once_every_worker_runs_the_new_round():
    cluster = training()
    trainers_stop(cluster, 0, 1)
    cluster.reconcile()
    cluster.set_pod(0, on_node(running()))  # worker 0 is back, worker 1 not yet
    assert cluster.reconcile().events == [] and cluster.status["phase"] == "Restarting"
    cluster.set_pod(1, on_node(running()))
    out = cluster.reconcile()
    assert reasons(out) == ["WorkersRunning"] and cluster.status["readyRound"] == 1
    assert cluster.status["workersReady"] == 2


def test_a_pod_that_missed_its_round_is_asked_again():
    cluster = training()
    trainers_stop(cluster, 1)
    cluster.reconcile()
    cluster.pods["demo-worker-1"]["metadata"]["annotations"][RESTART_ROUND_ANNOTATION] = "0"  # the patch was lost
    out = cluster.reconcile()
    assert out.annotate == {"demo-worker-1": 1} and out.events == []
    assert cluster.status["restarts"] == 1  # asking again is not another restart


def test_a_new_gang_starting_up_is_not_a_failure():
    cluster = Cluster(new_job())
    cluster.nodes = dict(NODES)
    cluster.reconcile()
    place(cluster)
    cluster.all_pods(on_node(running(), ready=False))  # the containers run; the first probe has not passed yet
    out = cluster.reconcile()
    assert out.annotate == {} and out.delete_pods == [] and "restarts" not in cluster.status
    assert cluster.status["phase"] == "Pending" and cluster.status["message"] == "0/2 workers running"


@pytest.mark.parametrize(
    ("nodes", "spec", "reason", "why"),
    [
        pytest.param({"node-a": True, "node-b": False}, {}, "NodeNotReady", "node node-b of demo-worker-1", id="node"),
        pytest.param({"node-a": True}, {}, "NodeNotReady", "node node-b of demo-worker-1 is not Ready", id="unread"),
        pytest.param(
            NODES,
            {"failurePolicy": {"restartInPlace": False}},
            "TrainersFailed",
            "failurePolicy.restartInPlace is false",
            id="turned-off",
        ),
    ],
)
def test_the_gang_is_recreated_when_in_place_is_off_or_a_node_is_not_ready(nodes, spec, reason, why):
    cluster = training()
    if spec:
        cluster.edit(**spec)  # a mutable field: running pods keep their round file, the operator decides
        cluster.reconcile()
    cluster.nodes = nodes
    trainers_stop(cluster, 1)
    out = cluster.reconcile()
    assert sorted(out.delete_pods) == ["demo-worker-0", "demo-worker-1"] and out.annotate == {}
    st = cluster.status
    assert (st["phase"], st["restarts"], st["attempt"]) == ("Restarting", 1, 2)
    assert st["nextStartTime"]  # the full path's backoff
    (event,) = out.events
    assert event.reason == reason and why in event.message and "gang restart 1/3" in event.message


def test_a_node_that_stops_reporting_recreates_the_gang_at_once():
    cluster = training()
    # The node controller marks the pods of a node that stopped reporting not ready; their container statuses
    # still say ready (nobody updates them), and the node is not Ready.
    status = running()
    status["conditions"] = [{"type": "PodScheduled", "status": "True"}, {"type": "Ready", "status": "False"}]
    cluster.set_pod(1, status)
    cluster.nodes = {"node-a": True, "node-b": False}
    out = cluster.reconcile()
    assert reasons(out) == ["NodeNotReady"] and "node node-b of demo-worker-1 is not Ready" in out.events[0].message
    assert sorted(out.delete_pods) == ["demo-worker-0", "demo-worker-1"]


def test_a_lost_pod_recreates_the_gang_even_with_in_place_restarts_on():
    cluster = training()
    trainers_stop(cluster, 0)  # its peer's trainer noticed
    cluster.vanish(1)
    out = cluster.reconcile()
    assert reasons(out) == ["WorkerLost"] and out.delete_pods == ["demo-worker-0"] and out.annotate == {}
    assert cluster.status["restarts"] == 1


def test_in_place_and_full_restarts_count_against_the_same_max_restarts():
    cluster = training(failurePolicy={"maxRestarts": 2})
    trainers_stop(cluster, 1)
    cluster.reconcile()  # in place: 1/2
    cluster.all_pods(on_node(running()))
    cluster.reconcile()
    cluster.nodes = {"node-a": True, "node-b": False}
    trainers_stop(cluster, 1)
    out = cluster.reconcile()  # a node went away: a new gang, 2/2
    assert "gang restart 2/2" in out.events[0].message
    cluster.gone()
    cluster.advance(20)
    cluster.reconcile()
    place(cluster)
    cluster.nodes = dict(NODES)
    cluster.all_pods(running())
    cluster.reconcile()
    assert cluster.status.get("restartRound", 0) == 0 and cluster.status["readyRound"] == 0  # the new gang: round 0
    trainers_stop(cluster, 0)
    out = cluster.reconcile()
    assert cluster.status["phase"] == "Failed" and reasons(out) == ["BackoffLimitExceeded"]
    assert "no restarts left (failurePolicy.maxRestarts: 2)" in cluster.status["message"]
    assert sorted(out.delete_pods) == ["demo-worker-0", "demo-worker-1"]  # gang semantics: the others stop too


def test_a_round_that_does_not_come_up_in_time_gets_a_new_gang():
    cluster = training(settings=Settings(**{**SETTINGS.__dict__, "round_timeout_s": 30.0}))
    trainers_stop(cluster, 1)
    cluster.reconcile()
    cluster.advance(29)
    assert cluster.reconcile().delete_pods == []
    cluster.advance(2)
    out = cluster.reconcile()
    assert reasons(out) == ["RestartRoundTimedOut"] and "did not run within 30 s of round 1" in out.events[0].message
    assert sorted(out.delete_pods) == ["demo-worker-0", "demo-worker-1"] and cluster.status["restarts"] == 2


def test_a_finished_trainer_is_not_a_failure():
    cluster = training()
    cluster.set_pod(0, exited(0))  # worker 0's trainers are done, worker 1's finish their last step
    cluster.set_pod(1, on_node(running(), ready=True))
    out = cluster.reconcile()
    assert out.annotate == {} and "restarts" not in cluster.status


def worker(name: str, node: str, state: str = "running", ready: bool = True, round_: int | None = 0) -> Worker:
    return Worker(name=name, index=0, attempt=1, state=state, ready=ready, node=node, restart_round=round_)


def test_restart_path_needs_every_node_known_ready_and_the_switch_on():
    gang = [worker("w-0", "a"), worker("w-1", "b")]
    assert restart_path(True, gang, {"a": True, "b": True}) == (True, "every pod runs on a Ready node")
    assert restart_path(True, gang, {"a": True}) == (False, "node b of w-1 is not Ready")
    assert restart_path(True, [worker("w-0", "")], {}) == (False, "its node of w-0 is not Ready")
    assert restart_path(False, gang, {"a": True, "b": True}) == (False, "failurePolicy.restartInPlace is false")


def test_nodes_are_read_only_when_trainers_stopped_in_a_pod_with_in_place_restarts():
    assert nodes_to_check([worker("w-0", "a"), worker("w-1", "b")]) == set()
    assert nodes_to_check([worker("w-0", "a"), worker("w-1", "b", ready=False)]) == {"a", "b"}
    assert nodes_to_check([worker("w-0", "a", ready=False, round_=None)]) == set()  # no in-place restarts
    assert nodes_to_check([worker("w-0", "a", state="pending", ready=False)]) == set()


def test_a_pods_round_readiness_and_node_are_read_from_its_status():
    cluster = training()
    pod = copy.deepcopy(cluster.pods["demo-worker-1"])
    w = read_worker(pod, T0, 300.0)
    assert (w.restart_round, w.ready, w.node) == (0, True, "node-b")
    pod["metadata"]["annotations"][RESTART_ROUND_ANNOTATION] = "not a number"  # edited by hand
    pod["status"] = on_node(running(), ready=False)
    w = read_worker(pod, T0, 300.0)
    assert (w.restart_round, w.ready) == (-1, False)  # the operator asks for the round again
    del pod["metadata"]["annotations"][RESTART_ROUND_ANNOTATION]
    assert read_worker(pod, T0, 300.0).restart_round is None  # a pod without in-place restarts
