"""End to end: an elastic PretrainJob applied to the API emulation trains on its most workers; the kubelet fixture's
capacity drops (pods evicted) and the operator restarts the gang on the workers left; capacity for one more
returns, a spare pod is placed and the gang grows by one. The losses are those of an uninterrupted 1-process run
of the same job, and the steps of the three gangs cover every sample exactly once.

CI runs 2 → 1 → 2 workers (a 4-worker gang is too heavy for its 2 cores next to everything else); the issue's
4 → 2 → 3 runs with PRETRAIN_E2E_ELASTIC_SIZES=4,2,3.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from pretrain_trainer.launch import free_port
from pretrain_trainer.storage import StorageOptions
from pretrain_trainer.tokenizer.train import TokenizerTrainingSpec
from tests.integration.test_operator_e2e import apply, cluster, status  # noqa: F401 (cluster: a fixture)
from tests.support.jobs import Dataset, make_dataset, write_job
from tests.support.kube_api import ApiServer
from tests.support.kubelet import Kubelet, RunningPod
from tests.support.operator_run import OperatorThread, wait_for

pytestmark = pytest.mark.slow
NS = "default"
JOB = "elastic"
MOST, FEWEST, GROWN = (int(n) for n in os.environ.get("PRETRAIN_E2E_ELASTIC_SIZES", "2,1,2").split(","))
STEPS = 30
BATCH = 12  # samples per step: micro batches of 1 over 1, 2, 3 or 4 workers, accumulated
TRAINING = {"maxSteps": STEPS, "globalBatchSamples": BATCH, "microBatchSize": 1, "logEverySteps": 10}
# A gentler rate than the other tiny jobs': reduction-order differences between world sizes grow less over the run.
OPTIMIZER = {"lr": 3e-3}


@pytest.fixture(scope="module")
def dataset(s3: StorageOptions) -> Dataset:
    return make_dataset("s3://elastic-data", "tiny", TokenizerTrainingSpec(model="bpe", vocab_size=300), s3)


def reference_run(dataset: Dataset, endpoint: str, tmp_path: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
    """The same job uninterrupted on 1 process (no checkpoints), started in the background."""
    job = write_job(tmp_path / "ref.yaml", "ref", dataset, endpoint, training=TRAINING, optimizer=OPTIMIZER)
    exe = str(Path(sys.executable).with_name("pretrainjob"))
    cmd = [exe, "run", str(job), "--local", "--nproc", "1", "--run-dir", str(tmp_path / "ref")]
    return subprocess.Popen(cmd, env={**os.environ, **env}, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)


def step_records(run_dir: Path) -> list[dict[str, Any]]:
    path = run_dir / "train.jsonl"
    lines = path.read_text().splitlines() if path.exists() else []
    return [r for r in map(json.loads, lines) if "loss" in r and "event" not in r]


def gangs(kubelet: Kubelet) -> list[RunningPod]:
    """Worker 0 of each gang, in start order."""
    return [p for p in kubelet.pods.values() if p.name == f"{JOB}-worker-0"]


def run_dir(pod: RunningPod) -> Path:
    return pod.root / "tmp" / "run"


def gang_step(kubelet: Kubelet, gang: int) -> int:
    """The last step rank 0 of the `gang`-th gang (0: the first) logged; 0 before it exists or trained."""
    started = gangs(kubelet)
    records = step_records(run_dir(started[gang])) if len(started) > gang else []
    return max((r["step"] for r in records), default=0)


def spares(api: ApiServer) -> list[str]:
    return [p["metadata"]["name"] for p in api.list("v1", "pods", NS) if "-spare-" in p["metadata"]["name"]]


def deleting(api: ApiServer, pod: str) -> bool:
    return bool(((api.get("v1", "pods", NS, pod) or {}).get("metadata") or {}).get("deletionTimestamp"))


def test_an_elastic_job_shrinks_and_grows_with_capacity_and_keeps_the_loss_curve_of_an_uninterrupted_run(
    cluster: tuple[ApiServer, Kubelet, OperatorThread],  # noqa: F811
    dataset: Dataset,
    s3_endpoint: str,
    child_env: dict[str, str],
    tmp_path: Path,
) -> None:
    api, kubelet, op = cluster
    reference = reference_run(dataset, s3_endpoint, tmp_path, child_env)
    kubelet.capacity = MOST
    manifest = write_job(
        tmp_path / f"{JOB}.yaml",
        JOB,
        dataset,
        s3_endpoint,
        workers={
            "replicas": MOST,
            "minReplicas": FEWEST,
            "scaleDownAfterSeconds": 30,
            "scaleUpCooldownSeconds": 1,
            "terminationGraceSeconds": 60,
        },
        training=TRAINING,
        optimizer=OPTIMIZER,
        storage={"credentialsSecret": "s3-creds"},
        metrics={"port": free_port()},
        checkpoint={"uri": f"s3://elastic-data/runs/{JOB}", "everySteps": 5},
    )
    apply(api, manifest)
    assert wait_for(f"{MOST} workers training", lambda: gang_step(kubelet, 0) >= 3, 240, op)

    dropped = time.monotonic()
    kubelet.capacity = FEWEST  # pods evicted: the gang checkpoints, stops and restarts on the workers left
    assert wait_for(f"{FEWEST} workers training", lambda: len(gangs(kubelet)) == 2 and gang_step(kubelet, 1), 240, op)
    shrink_s = time.monotonic() - dropped
    assert status(api, JOB)["replicas"] == FEWEST
    # The small gang is held still (SIGSTOP) while the operator finds room to grow: on a fast machine it could
    # otherwise finish the run first. The SIGTERM of the resize waits until it goes on; then it checkpoints and stops.
    small = [f"{JOB}-worker-{i}" for i in range(FEWEST)]
    for name in small:
        kubelet.freeze(name)
    held = [f"{JOB}-spare-{i}" for i in range(FEWEST, MOST)]
    wait_for("spare pods held for the missing workers", lambda: sorted(spares(api)) == held, 60, op)

    grew = time.monotonic()
    kubelet.capacity = GROWN  # room for one more: a spare is placed, and the gang grows by one
    wait_for("the small gang stopping", lambda: all(deleting(api, name) for name in small), 60, op)
    for name in small:
        kubelet.thaw(name)
    wait_for(f"{GROWN} workers training", lambda: len(gangs(kubelet)) == 3 and gang_step(kubelet, 2), 240, op)
    grow_s = time.monotonic() - grew
    done = wait_for(
        "Succeeded",
        lambda: (s := status(api, JOB)).get("phase") in ("Succeeded", "Failed") and s,
        300,
        op,
    )
    assert done["phase"] == "Succeeded", (done, kubelet.logs(f"{JOB}-worker-0")[-3000:])
    assert (done["replicas"], done["desiredReplicas"], done["worldSize"], done["step"]) == (GROWN, GROWN, GROWN, STEPS)
    assert (done["preemptions"], done.get("restarts", 0)) == (1, 0)  # resizes are not failures
    assert wait_for("no spare pods left", lambda: not spares(api), 30, op)

    # Three gangs, of 4, 2 and 3 processes, each resuming where the previous one checkpointed on its way out.
    summaries = [json.loads((run_dir(g) / "summary.json").read_text()) for g in gangs(kubelet)]
    assert [s["world_size"] for s in summaries] == [MOST, FEWEST, GROWN]
    records = [step_records(run_dir(g)) for g in gangs(kubelet)]
    for before, after, summary in zip(records, records[1:], summaries[1:], strict=False):
        assert summary["resumed_from"] == before[-1]["step"] == after[0]["step"] - 1
    assert all(s["preempted"] for s in summaries[:2]) and summaries[2]["steps"] == STEPS

    # Every sample exactly once: the steps' global batches tile the first STEPS × BATCH samples.
    trained = sorted((r["first_sample"], r["step"]) for gang in records for r in gang)
    assert trained == [((step - 1) * BATCH, step) for step in range(1, STEPS + 1)]

    # The same losses as the uninterrupted run, within floating-point tolerance (sums reduce in other orders).
    assert reference.wait(240) == 0
    expected = {r["step"]: r["loss"] for r in step_records(tmp_path / "ref")}
    got = {r["step"]: r["loss"] for gang in records for r in gang}
    assert sorted(got) == sorted(expected) == list(range(1, STEPS + 1))
    for step in expected:
        assert got[step] == pytest.approx(expected[step], rel=1e-5, abs=1e-6), step

    worst = max(abs(got[step] / expected[step] - 1) for step in expected)
    print(
        f"elastic {MOST} -> {FEWEST} -> {GROWN}: capacity down -> training again on {FEWEST}: {shrink_s:.1f} s; "
        f"capacity up -> training on {GROWN}: {grow_s:.1f} s; steps per gang {[len(r) for r in records]}; "
        f"largest relative loss difference {worst:.1e}"
    )
    events = [e["reason"] for e in api.list("v1", "events", NS) if e["involvedObject"]["name"] == JOB]
    assert "ScaledDown" in events and "ScaledUp" in events
