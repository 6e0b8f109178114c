"""End to end: `kubectl apply` a tiny CPU PretrainJob to the API emulation; the operator creates pods; a kubelet
fixture runs them as local processes; the workers train for real with gloo, stream shards from a loopback S3
endpoint and checkpoint to it; the job reaches Succeeded with its progress in the status. Then a worker is
killed mid-run, and the gang restart resumes from the newest checkpoint.
"""

from __future__ import annotations

import base64
import json
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from pretrain_operator.lifecycle import Settings
from pretrain_trainer.contract import API_VERSION, PLURAL
from pretrain_trainer.launch import free_port
from pretrain_trainer.storage import StorageOptions
from pretrain_trainer.tokenizer.train import TokenizerTrainingSpec
from tests.support.jobs import Dataset, make_dataset, write_job
from tests.support.kube_api import ApiServer
from tests.support.kubelet import Kubelet
from tests.support.operator_run import OperatorThread, wait_for
from tests.support.s3 import TEST_ACCESS_KEY_ID, TEST_SECRET_ACCESS_KEY

pytestmark = pytest.mark.slow
NS = "default"


@pytest.fixture(scope="module")
def dataset(s3: StorageOptions) -> Dataset:
    return make_dataset("s3://e2e-data", "tiny", TokenizerTrainingSpec(model="bpe", vocab_size=300), s3)


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[tuple[ApiServer, Kubelet, OperatorThread]]:
    settings = Settings(resync_s=1.0, backoff_base_s=0.5, image="unused:local")
    with ApiServer(graceful_pods=True) as api:
        creds = {"AWS_ACCESS_KEY_ID": TEST_ACCESS_KEY_ID, "AWS_SECRET_ACCESS_KEY": TEST_SECRET_ACCESS_KEY}
        data = {k: base64.b64encode(v.encode()).decode() for k, v in creds.items()}
        api.create("v1", "secrets", NS, {"metadata": {"name": "s3-creds"}, "data": data})
        kubelet_env = {
            "OMP_NUM_THREADS": "1",
            "AWS_CONFIG_FILE": "/dev/null",
            "AWS_SHARED_CREDENTIALS_FILE": "/dev/null",
        }
        with Kubelet(api, tmp_path / "nodes", kubelet_env) as kubelet, OperatorThread(api.url, settings) as op:
            yield api, kubelet, op


def apply(api: ApiServer, path: Path) -> None:
    cmd = ["kubectl", "--server", api.url, "--validate=false", "-n", NS, "apply", "-f", str(path)]
    subprocess.run(cmd, check=True, capture_output=True, timeout=120)


def job_manifest(tmp_path: Path, dataset: Dataset, endpoint: str, name: str, **spec: Any) -> Path:
    return write_job(
        tmp_path / f"{name}.yaml",
        name,
        dataset,
        endpoint,
        workers={"replicas": 2, "terminationGraceSeconds": 60},
        storage={"credentialsSecret": "s3-creds"},
        metrics={"port": free_port()},
        checkpoint={"uri": f"s3://e2e-data/runs/{name}", "everySteps": 10},
        **spec,
    )


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


def test_killed_worker_triggers_gang_restart_that_resumes_from_checkpoint(
    cluster: tuple[ApiServer, Kubelet, OperatorThread], dataset: Dataset, s3_endpoint: str, tmp_path: Path
) -> None:
    api, kubelet, op = cluster
    apply(api, job_manifest(tmp_path, dataset, s3_endpoint, "e2e-kill", training={"maxSteps": 60}))
    wait_for("a checkpoint", lambda: (status(api, "e2e-kill").get("lastCheckpoint") or 0) >= 10, 240, op)
    kubelet.kill("e2e-kill-worker-1", signal.SIGKILL)
    wait_for("a gang restart", lambda: status(api, "e2e-kill").get("restarts") == 1, 60, op)
    done = wait_for(
        "Succeeded",
        lambda: (s := status(api, "e2e-kill")).get("phase") in ("Succeeded", "Failed") and s,
        300,
        op,
    )
    assert done["phase"] == "Succeeded", (done, kubelet.logs("e2e-kill-worker-0")[-3000:])
    assert done["step"] == 60 and done["restarts"] == 1
    assert kubelet.history.count("e2e-kill-worker-0") == 2
    resumed = summary(kubelet, "e2e-kill-worker-0")
    assert resumed["resumed_from"] is not None and resumed["resumed_from"] >= 10
    assert resumed["steps"] == 60
    # The operator posts events after the status patch: wait for the one that follows the Succeeded status.
    def reasons() -> list[str]:
        return [e["reason"] for e in api.list("v1", "events", NS) if e["involvedObject"]["name"] == "e2e-kill"]

    assert wait_for("the Completed event", lambda: "Completed" in reasons(), 30, op)
    assert any(r not in ("WorkersCreated", "WorkersRunning", "Completed") for r in reasons())
    manifest = yaml.safe_load(api.get("v1", "configmaps", NS, "e2e-kill-config")["data"]["job.yaml"])
    assert manifest["spec"]["workers"]["replicas"] == 2
