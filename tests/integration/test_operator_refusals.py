"""When the API server refuses what the operator built (a validating admission webhook, a LimitRange, a field the
operator's checks let through): the job fails once with the server's reason, instead of the operator retrying the
same create forever. Runs the kopf operator against the API emulation with a validating-admission stand-in."""

from __future__ import annotations

import time
from typing import Any

from pretrain_operator.lifecycle import Settings
from pretrain_trainer.contract import API_VERSION, PLURAL
from tests.support.kube_api import ApiServer
from tests.support.operator_run import OperatorThread, wait_for

REFUSAL = 'Pod "refused-worker-1" is invalid: spec.containers[0].resources.limits: exceeds the namespace\'s LimitRange'


def refuse_second_worker(obj: dict[str, Any]) -> str | None:
    return REFUSAL if obj.get("kind") == "Pod" and obj["metadata"]["name"].endswith("-worker-1") else None


def test_a_pod_the_api_server_refuses_fails_the_job_once_and_removes_its_gang():
    manifest = {
        "apiVersion": API_VERSION,
        "kind": "PretrainJob",
        "metadata": {"name": "refused", "namespace": "default"},
        "spec": {
            "tokenizer": {"uri": "s3://corpora/tok.json"},
            "data": {"train": "s3://corpora/train"},
            "workers": {"replicas": 2},
            "training": {"globalBatchSamples": 8, "microBatchSize": 4},
        },
    }
    settings = Settings(resync_s=0.5, image="trainer:test")
    with ApiServer(refuse=refuse_second_worker) as api, OperatorThread(api.url, settings) as op:
        api.create(API_VERSION, PLURAL, "default", manifest)
        status = wait_for(
            "Failed",
            lambda: (
                (s := (api.get(API_VERSION, PLURAL, "default", "refused") or {}).get("status", {})).get("phase")
                == "Failed"
                and s
            ),
            30,
            op,
        )
        assert status["message"].startswith("invalid spec: the API server refused") and REFUSAL in status["message"]
        failed = next(c for c in status["conditions"] if c["type"] == "Failed")
        assert failed["reason"] == "InvalidSpec"
        wait_for("the created worker removed", lambda: not api.list("v1", "pods", "default"), 10, op)
        time.sleep(2)  # several resyncs: nothing is retried, no second event
        reasons = [e["reason"] for e in api.list("v1", "events", "default") if e["involvedObject"]["name"] == "refused"]
        assert reasons.count("InvalidSpec") == 1
        assert op.runtime.metrics.reconcile_errors.labels("api")._value.get() == 0
