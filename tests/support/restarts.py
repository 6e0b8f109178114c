"""The end-to-end cluster (API emulation, the kopf operator, the kubelet fixture) and the two recoveries measured
in it: a trainer process that crashes inside a healthy pod (restarted in place) and a worker pod that is lost
(the gang is recreated). `tests/integration/test_operator_e2e.py` asserts on them; `benchmarks/restart_latency.py`
prints them.

A recovery is timed from the failure to the first training step after the new round's resume, read from rank 0's
train.jsonl (each step's record is written once the step's gradients were reduced over every rank, so it marks
every rank training again): both clocks are this machine's wall clock.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pretrain_operator.lifecycle import Settings
from pretrain_trainer.contract import API_VERSION, PLURAL, pod_name
from tests.support.kube_api import ApiServer
from tests.support.kubelet import Kubelet
from tests.support.operator_run import OperatorThread, wait_for
from tests.support.s3 import TEST_ACCESS_KEY_ID, TEST_SECRET_ACCESS_KEY

NS = "default"
SECRET = "s3-creds"
# Fast restarts for tests: the operator looks every second and the full path's backoff is half a second.
SETTINGS = Settings(resync_s=1.0, backoff_base_s=0.5, image="unused:local")


@contextmanager
def e2e_cluster(workdir: Path, settings: Settings = SETTINGS) -> Iterator[tuple[ApiServer, Kubelet, OperatorThread]]:
    """The API emulation with the S3 credentials Secret `SECRET`, a kubelet fixture and the operator."""
    with ApiServer(graceful_pods=True) as api:
        creds = {"AWS_ACCESS_KEY_ID": TEST_ACCESS_KEY_ID, "AWS_SECRET_ACCESS_KEY": TEST_SECRET_ACCESS_KEY}
        data = {k: base64.b64encode(v.encode()).decode() for k, v in creds.items()}
        api.create("v1", "secrets", NS, {"metadata": {"name": SECRET}, "data": data})
        kubelet_env = {
            "OMP_NUM_THREADS": "1",
            "AWS_CONFIG_FILE": "/dev/null",
            "AWS_SHARED_CREDENTIALS_FILE": "/dev/null",
        }
        with Kubelet(api, workdir, kubelet_env) as kubelet, OperatorThread(api.url, settings) as op:
            yield api, kubelet, op


@dataclass(frozen=True)
class Recovery:
    """One failure and the gang training again after it."""

    path: str  # "in place" or "recreated"
    seconds: float  # failure -> the first step after the resume (every rank trains again)
    resumed_seconds: float  # failure -> the resume done (the trainers started and loaded the checkpoint)
    resumed_from: int  # the checkpoint step the new round resumed from
    uids_before: dict[str, str]  # pod name -> uid
    uids_after: dict[str, str]


def pod_uids(api: ApiServer, job: str, replicas: int) -> dict[str, str]:
    out = {}
    for i in range(replicas):
        pod = api.get("v1", "pods", NS, pod_name(job, i)) or {}
        out[pod_name(job, i)] = (pod.get("metadata") or {}).get("uid", "")
    return out


def train_log(kubelet: Kubelet, uid: str) -> list[dict[str, Any]]:
    """Rank 0's train.jsonl records in the pod with this uid (its PRETRAIN_RUN_DIR, /tmp/run)."""
    pod = kubelet.pods.get((NS, uid))
    path = pod.root / "tmp" / "run" / "train.jsonl" if pod is not None else None
    if path is None or not path.exists():
        return []
    out = []
    for line in path.read_text().splitlines():
        try:
            out.append(json.loads(line))
        except ValueError:  # the line being written
            continue
    return out


def checkpointed(kubelet: Kubelet, api: ApiServer, job: str) -> int:
    """The newest checkpoint rank 0 of the running gang wrote (0: none yet)."""
    uid = pod_uids(api, job, 1)[pod_name(job, 0)]
    steps = [r["step"] for r in train_log(kubelet, uid) if r.get("event") == "checkpoint"]
    return max(steps, default=0)


def _training_again(kubelet: Kubelet, api: ApiServer, job: str, since: float) -> tuple[float, float, int] | None:
    """(when, when resumed, resumed from) of the first step record after a resume that happened after `since`."""
    uid = pod_uids(api, job, 1)[pod_name(job, 0)]
    resumed = None
    for record in train_log(kubelet, uid):
        if record.get("event") == "resume" and record["time"] >= since:
            resumed = record
        elif resumed is not None and "event" not in record and "loss" in record:
            return record["time"], resumed["time"], resumed["step"]
    return None


def _recover(
    api: ApiServer, kubelet: Kubelet, op: OperatorThread, job: str, replicas: int, path: str, fail: Any
) -> Recovery:
    before = pod_uids(api, job, replicas)
    started = time.time()
    fail()
    try:
        when, resumed_at, resumed_from = wait_for(
            f"every rank of {job} training again ({path})",
            lambda: _training_again(kubelet, api, job, started),
            180,
            op,
        )
    except AssertionError as err:
        raise AssertionError(f"{err}\n{diagnosis(api, kubelet, job, replicas)}") from None
    after = pod_uids(api, job, replicas)
    return Recovery(path, when - started, resumed_at - started, resumed_from, before, after)


def diagnosis(api: ApiServer, kubelet: Kubelet, job: str, replicas: int) -> str:
    """The job's status and events and its pods' logs, for a failure message."""
    status = (api.get(API_VERSION, PLURAL, NS, job) or {}).get("status")
    events = [(e["reason"], e["message"][:200]) for e in api.list("v1", "events", NS) if job in e["message"]]
    logs = [f"--- {pod_name(job, i)}:\n{kubelet.logs(pod_name(job, i))[-4000:]}" for i in range(replicas)]
    return "\n".join([f"status: {status}", f"events: {events}", *logs])


def crash_trainer(api: ApiServer, kubelet: Kubelet, op: OperatorThread, job: str, replicas: int) -> Recovery:
    """SIGKILL the trainer process of the last worker pod (its worker and pod stay up)."""
    last = pod_name(job, replicas - 1)
    return _recover(api, kubelet, op, job, replicas, "in place", lambda: kubelet.kill_trainer(last))


def lose_pod(api: ApiServer, kubelet: Kubelet, op: OperatorThread, job: str, replicas: int) -> Recovery:
    """Force-delete the last worker pod, as a lost node's pods are: its processes die at once."""
    last = pod_name(job, replicas - 1)
    return _recover(api, kubelet, op, job, replicas, "recreated", lambda: api.delete("v1", "pods", NS, last, grace=0))
