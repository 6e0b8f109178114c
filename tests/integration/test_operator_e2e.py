"""End to end: `kubectl apply` a tiny CPU PretrainJob to the API emulation; the operator creates pods; a kubelet
fixture runs them as local processes; the workers train for real with gloo, stream shards from a loopback S3
endpoint and checkpoint to it; the job reaches Succeeded with its progress in the status. Then, in one run, a
trainer process crashes inside a healthy pod (restarted in place: the same pods) and a pod is lost (the gang is
recreated); each recovery resumes from the newest checkpoint and is timed from the failure to every rank training
again (`tests/support/restarts.py`).
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pretrain_trainer.contract import API_VERSION, PLURAL
from pretrain_trainer.launch import free_port
from pretrain_trainer.storage import StorageOptions
from pretrain_trainer.tokenizer.train import TokenizerTrainingSpec
from tests.support.jobs import Dataset, deep_merge, make_dataset, write_job
from tests.support.kube_api import ApiServer
from tests.support.kubelet import Kubelet
from tests.support.operator_run import OperatorThread, wait_for
from tests.support.restarts import checkpointed, crash_trainer, e2e_cluster, lose_pod

pytestmark = pytest.mark.slow
NS = "default"


@pytest.fixture(scope="module")
def dataset(s3: StorageOptions) -> Dataset:
    return make_dataset("s3://e2e-data", "tiny", TokenizerTrainingSpec(model="bpe", vocab_size=300), s3)


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[tuple[ApiServer, Kubelet, OperatorThread]]:
    with e2e_cluster(tmp_path / "nodes") as running:
        yield running


def apply(api: ApiServer, path: Path) -> None:
    cmd = ["kubectl", "--server", api.url, "--validate=false", "-n", NS, "apply", "-f", str(path)]
    subprocess.run(cmd, check=True, capture_output=True, timeout=120)


def job_manifest(tmp_path: Path, dataset: Dataset, endpoint: str, name: str, **spec: Any) -> Path:
    base = {
        "workers": {"replicas": 2, "terminationGraceSeconds": 60},
        "storage": {"credentialsSecret": "s3-creds"},
        "metrics": {"port": free_port()},
        "checkpoint": {"uri": f"s3://e2e-data/runs/{name}", "everySteps": 10},
    }
    return write_job(tmp_path / f"{name}.yaml", name, dataset, endpoint, **deep_merge(base, spec))


def status(api: ApiServer, name: str) -> dict[str, Any]:
    return (api.get(API_VERSION, PLURAL, NS, name) or {}).get("status", {})


def summary(kubelet: Kubelet, pod_name: str) -> dict[str, Any]:
    """The trainer's summary.json of the newest run of `pod_name` (its PRETRAIN_RUN_DIR)."""
    roots = sorted((p for p in kubelet.pods.values() if p.name == pod_name), key=lambda p: p.log.stat().st_mtime)
    return json.loads((roots[-1].root / "tmp" / "run" / "summary.json").read_text())


def test_kubectl_apply_trains_to_succeeded_with_progress_in_status(
    cluster: tuple[ApiServer, Kubelet, OperatorThread], dataset: Dataset, s3_endpoint: str, tmp_path: Path
) -> None:
    api, kubelet, op = cluster
    apply(api, job_manifest(tmp_path, dataset, s3_endpoint, "e2e-ok", training={"maxSteps": 20}))
    seen_running = wait_for("Running", lambda: status(api, "e2e-ok").get("phase") == "Running", 120, op)
    assert seen_running
    done = wait_for(
        "Succeeded",
        lambda: (s := status(api, "e2e-ok")).get("phase") in ("Succeeded", "Failed") and s,
        300,
        op,
    )
    assert done["phase"] == "Succeeded", (done, kubelet.logs("e2e-ok-worker-0")[-3000:])
    assert done["step"] == 20 and done["lastCheckpoint"] == 20
    assert done["tokensSeen"] == 20 * 8 * 32 and done["loss"] > 0
    assert done.get("restarts", 0) == 0 and done["completionTime"]
    result = summary(kubelet, "e2e-ok-worker-0")
    assert result["world_size"] == 2 and result["steps"] == 20


def test_a_crashed_trainer_restarts_in_place_and_a_lost_pod_recreates_the_gang(
    cluster: tuple[ApiServer, Kubelet, OperatorThread], dataset: Dataset, s3_endpoint: str, tmp_path: Path
) -> None:
    api, kubelet, op = cluster
    name = "e2e-paths"
    # More steps than the test waits for, however fast they run: it ends by deleting the job.
    training = {"maxSteps": 1_000_000, "logEverySteps": 1000, "evalEverySteps": 0}
    apply(api, job_manifest(tmp_path, dataset, s3_endpoint, name, training=training, checkpoint={"everySteps": 5}))
    wait_for("a checkpoint", lambda: checkpointed(kubelet, api, name) >= 5, 240, op)

    in_place = crash_trainer(api, kubelet, op, name, replicas=2)
    assert in_place.uids_after == in_place.uids_before  # the same pods
    assert in_place.resumed_from >= 5  # from a checkpoint, not from scratch
    st = status(api, name)
    assert st["restarts"] == 1 and st["attempt"] == 1 and st["restartRound"] == 1
    assert kubelet.history.count(f"{name}-worker-1") == 1  # its worker was never restarted

    recreated = lose_pod(api, kubelet, op, name, replicas=2)
    assert all(recreated.uids_after[p] != recreated.uids_before[p] for p in recreated.uids_before)  # a new gang
    assert recreated.resumed_from >= in_place.resumed_from
    st = status(api, name)
    assert st["restarts"] == 2 and st["attempt"] == 2 and st.get("restartRound", 0) == 0

    def events() -> list[dict[str, Any]]:
        return [e for e in api.list("v1", "events", NS) if e["involvedObject"]["name"] == name]

    wait_for("the WorkerLost event", lambda: any(e["reason"] == "WorkerLost" for e in events()), 30, op)
    in_place_events = [e["message"] for e in events() if e["reason"] == "RestartedInPlace"]
    assert len(in_place_events) == 1 and "in-place restart 1/3" in in_place_events[0]
    assert any(e["reason"] == "WorkerLost" and "gang restart 2/3" in e["message"] for e in events())
    print(
        f"failure -> every rank training again: in place {in_place.seconds:.1f} s, "
        f"recreated {recreated.seconds:.1f} s ({recreated.seconds / in_place.seconds:.1f}x)"
    )
    api.delete(API_VERSION, PLURAL, NS, name)
    wait_for("the job's pods gone", lambda: not any(p.proc.poll() is None for p in kubelet.pods.values()), 60, op)
