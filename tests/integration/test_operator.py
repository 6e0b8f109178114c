"""The kopf operator, running for real, against the Kubernetes API emulation over HTTP.

The test plays the kubelet by hand: it sets pod phases through the pods' status subresource and checks what
the operator does: children, status, conditions, events, gang restarts, suspend, completion, TTL, deletion.
(tests/integration/test_operator_e2e.py runs real trainer processes in the pods.)
"""

from __future__ import annotations

import base64
import http.server
import json
import shutil
import subprocess
import threading
import urllib.request
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from pretrain_operator import naming
from pretrain_operator.lifecycle import Settings
from pretrain_trainer.contract import (
    API_VERSION,
    EXIT_BAD_CONFIG,
    EXIT_PREEMPTED,
    EXIT_STORAGE_UNAVAILABLE,
    PLURAL,
)
from pretrain_trainer.launch import free_port
from pretrain_trainer.report import failure_record
from tests.support.kube_api import ApiServer
from tests.support.operator_run import OperatorThread, wait_for

NS = "default"
SECRET_VALUE = "do-not-leak-9f3b2c"


@pytest.fixture
def api() -> Iterator[ApiServer]:
    with ApiServer() as server:
        yield server


@pytest.fixture
def operator(api: ApiServer) -> Iterator[OperatorThread]:
    settings = Settings(resync_s=0.5, backoff_base_s=0.2, backoff_max_s=1.0, stuck_grace_s=1.0, image="trainer:test")
    with OperatorThread(api.url, settings, metrics_port=free_port(), health_port=free_port()) as op:
        yield op


def manifest(name: str = "tiny", **spec: Any) -> dict[str, Any]:
    base = {
        "tokenizer": {"uri": "s3://corpora/tok/tokenizer.json"},
        "data": {"train": "s3://corpora/data/train", "sequenceLength": 64},
        "model": {"architecture": "gpt2", "config": {"n_layer": 2, "n_embd": 64, "n_head": 4, "n_positions": 64}},
        "workers": {"replicas": 2, "shmSize": "1Gi"},
        "training": {"maxSteps": 50, "globalBatchSamples": 8, "microBatchSize": 2},
        "checkpoint": {"uri": "s3://runs/tiny", "everySteps": 10},
        "storage": {"credentialsSecret": "s3-creds"},
        "failurePolicy": {"maxRestarts": 2},
    }
    for key, value in spec.items():
        base[key] = {**base[key], **value} if isinstance(value, dict) and key in base else value
    return {"apiVersion": API_VERSION, "kind": "PretrainJob", "metadata": {"name": name, "namespace": NS}, "spec": base}


def read(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as resp:
        return resp.read().decode()


def job(api: ApiServer, name: str = "tiny") -> dict[str, Any]:
    return api.get(API_VERSION, PLURAL, NS, name)


def phase(api: ApiServer, name: str = "tiny") -> str | None:
    obj = job(api, name)
    return (obj or {}).get("status", {}).get("phase")


def pods(api: ApiServer, name: str = "tiny") -> list[dict[str, Any]]:
    found = api.list("v1", "pods", NS, f"{naming.JOB_LABEL}={name}")
    return sorted(found, key=lambda p: p["metadata"]["name"])


def set_pod(api: ApiServer, pod: dict[str, Any], phase_: str, exit_code: int | None = None, **extra: Any) -> None:
    status: dict[str, Any] = {"phase": phase_, "podIP": "127.0.0.1", **extra}
    if phase_ == "Running":  # its trainers run: the readiness probe passed
        status["containerStatuses"] = [{"name": "trainer", "ready": True, "state": {"running": {}}}]
    if exit_code is not None:
        status["containerStatuses"] = [{"name": "trainer", "state": {"terminated": {"exitCode": exit_code}}}]
    api.patch("v1", "pods", NS, pod["metadata"]["name"], {"status": status}, sub="status")


def events(api: ApiServer, name: str = "tiny") -> list[dict[str, Any]]:
    return [e for e in api.list("v1", "events", NS) if e.get("involvedObject", {}).get("name") == name]


def reasons(api: ApiServer, name: str = "tiny") -> list[str]:
    return [e.get("reason") for e in events(api, name)]


def start(api: ApiServer, op: OperatorThread, **spec: Any) -> list[dict[str, Any]]:
    api.create(API_VERSION, PLURAL, NS, manifest(**spec))
    return wait_for("2 worker pods", lambda: len(pods(api)) == 2 and pods(api), op=op)


def run_all(api: ApiServer, op: OperatorThread) -> None:
    for pod in pods(api):
        set_pod(api, pod, "Running")
    wait_for("phase Running", lambda: phase(api) == "Running", op=op)


def test_apply_creates_service_config_and_pods_owned_by_the_job(api: ApiServer, operator: OperatorThread) -> None:
    created = start(api, operator)
    owner = job(api)
    svc = wait_for("service", lambda: api.get("v1", "services", NS, "tiny"))
    cm = wait_for("config map", lambda: api.get("v1", "configmaps", NS, "tiny-config"))
    for child in [svc, cm, *created]:
        ref = child["metadata"]["ownerReferences"][0]
        assert (ref["kind"], ref["name"], ref["uid"], ref["controller"]) == (
            "PretrainJob",
            "tiny",
            owner["metadata"]["uid"],
            True,
        )
    assert svc["spec"]["clusterIP"] == "None" and svc["spec"]["publishNotReadyAddresses"] is True
    trainer_config = yaml.safe_load(cm["data"]["job.yaml"])
    assert trainer_config["spec"]["training"]["maxSteps"] == 50
    pod = created[1]
    assert pod["spec"]["hostname"] == "tiny-worker-1" and pod["spec"]["subdomain"] == "tiny"
    env = {e["name"]: e.get("value", e.get("valueFrom")) for e in pod["spec"]["containers"][0]["env"]}
    assert env["PET_NODE_RANK"] == "1" and env["PET_NNODES"] == "2"
    assert env["MASTER_ADDR"] == "tiny-worker-0.tiny.default.svc"
    assert env["AWS_SECRET_ACCESS_KEY"] == {"secretKeyRef": {"name": "s3-creds", "key": "AWS_SECRET_ACCESS_KEY"}}
    shm = next(v for v in pod["spec"]["volumes"] if v["name"] == "dshm")
    assert shm["emptyDir"] == {"medium": "Memory", "sizeLimit": "1Gi"}
    assert pod["spec"]["containers"][0]["image"] == "trainer:test"
    assert phase(api) == "Pending" and "WorkersCreated" in reasons(api)


def test_pod_phases_drive_job_phase_conditions_and_events(api: ApiServer, operator: OperatorThread) -> None:
    start(api, operator)
    run_all(api, operator)
    status = job(api)["status"]
    running = next(c for c in status["conditions"] if c["type"] == "Running")
    assert running["status"] == "True" and running["reason"] == "WorkersRunning"
    assert status["workersReady"] == 2
    assert wait_for("Running event", lambda: "WorkersRunning" in reasons(api))


def test_worker_failure_restarts_the_gang_then_fails_past_the_limit(api: ApiServer, operator: OperatorThread) -> None:
    first = start(api, operator, failurePolicy={"maxRestarts": 1})
    run_all(api, operator)
    set_pod(api, first[1], "Failed", exit_code=1)
    wait_for("restart 1", lambda: job(api)["status"].get("restarts") == 1, op=operator)
    second = wait_for(
        "attempt-2 pods",
        lambda: (
            len(fresh := [p for p in pods(api) if p["metadata"]["labels"][naming.ATTEMPT_LABEL] == "2"]) == 2 and fresh
        ),
        op=operator,
    )
    assert len(second) == 2 and {p["metadata"]["uid"] for p in second}.isdisjoint(p["metadata"]["uid"] for p in first)
    assert "Restarting" in [c["type"] for c in job(api)["status"]["conditions"]]
    warning = next(e for e in events(api) if e["reason"] == "Error")
    assert "tiny-worker-1 failed (Error, exit code 1)" in warning["message"] and warning["type"] == "Warning"
    for pod in second:
        set_pod(api, pod, "Running")
    set_pod(api, second[0], "Failed", exit_code=137)
    wait_for("Failed", lambda: phase(api) == "Failed", op=operator)
    failed = next(c for c in job(api)["status"]["conditions"] if c["type"] == "Failed")
    assert failed["reason"] == "BackoffLimitExceeded" and "maxRestarts: 1" in failed["message"]
    wait_for("running pods stopped", lambda: all(p["status"]["phase"] != "Running" for p in pods(api)), op=operator)


def test_bad_config_exit_code_fails_without_restart(api: ApiServer, operator: OperatorThread) -> None:
    created = start(api, operator)
    run_all(api, operator)
    set_pod(api, created[0], "Failed", exit_code=EXIT_BAD_CONFIG)
    wait_for("Failed", lambda: phase(api) == "Failed", op=operator)
    assert job(api)["status"].get("restarts", 0) == 0
    assert "InvalidConfig" in reasons(api)


def test_a_preemption_spends_no_restart_and_a_storage_outage_is_named_in_the_status(
    api: ApiServer, operator: OperatorThread
) -> None:
    first = start(api, operator, failurePolicy={"maxRestarts": 0})
    run_all(api, operator)
    set_pod(api, first[1], "Failed", exit_code=EXIT_PREEMPTED)
    second = wait_for(
        "attempt-2 pods",
        lambda: (
            len(fresh := [p for p in pods(api) if p["metadata"]["labels"][naming.ATTEMPT_LABEL] == "2"]) == 2 and fresh
        ),
        op=operator,
    )
    status = job(api)["status"]
    assert status["preemptions"] == 1 and status.get("restarts", 0) == 0
    for pod in second:
        set_pod(api, pod, "Running")
    error = "object store unavailable: s3://runs/tiny/step-00000010/__1_0.distcp: PutObject still failing"
    terminated = {"exitCode": EXIT_STORAGE_UNAVAILABLE, "message": failure_record(error)}
    set_pod(api, second[1], "Failed", containerStatuses=[{"name": "trainer", "state": {"terminated": terminated}}])
    wait_for("Failed", lambda: phase(api) == "Failed", op=operator)
    failed = next(c for c in job(api)["status"]["conditions"] if c["type"] == "Failed")
    assert failed["reason"] == "BackoffLimitExceeded"
    assert f"tiny-worker-1 failed (StorageUnavailable, exit code 75): {error}" in failed["message"]


def test_suspend_stops_workers_and_resume_starts_a_new_gang(api: ApiServer, operator: OperatorThread) -> None:
    start(api, operator)
    run_all(api, operator)
    api.patch(API_VERSION, PLURAL, NS, "tiny", {"spec": {"suspend": True}})
    wait_for("Suspended with no pods", lambda: phase(api) == "Suspended" and not pods(api), op=operator)
    api.patch(API_VERSION, PLURAL, NS, "tiny", {"spec": {"suspend": False}})
    resumed = wait_for("new pods", lambda: len(pods(api)) == 2 and pods(api), op=operator)
    assert {p["metadata"]["labels"][naming.ATTEMPT_LABEL] for p in resumed} == {"2"}
    assert job(api)["status"].get("restarts", 0) == 0
    assert {"Suspended", "Resumed"} <= set(reasons(api))


def test_kueue_queue_label_reaches_the_pods(api: ApiServer, operator: OperatorThread) -> None:
    body = manifest()
    body["metadata"]["labels"] = {naming.KUEUE_QUEUE_LABEL: "gpu-queue"}
    api.create(API_VERSION, PLURAL, NS, body)
    created = wait_for("pods", lambda: len(pods(api)) == 2 and pods(api), op=operator)
    for pod in created:
        assert pod["metadata"]["labels"][naming.KUEUE_QUEUE_LABEL] == "gpu-queue"
        assert pod["metadata"]["annotations"][naming.KUEUE_COUNT_ANNOTATION] == "2"


def test_completion_sets_succeeded_then_ttl_deletes_the_job(api: ApiServer, operator: OperatorThread) -> None:
    created = start(api, operator, ttlSecondsAfterFinished=1)
    run_all(api, operator)
    for pod in created:
        set_pod(api, pod, "Succeeded", exit_code=0)
    wait_for("Succeeded", lambda: phase(api) == "Succeeded", op=operator)
    status = job(api)["status"]
    assert status["completionTime"] and status["step"] == 50
    wait_for("the job deleted by its TTL", lambda: job(api) is None, timeout=15, op=operator)
    wait_for("children cleaned up", lambda: not pods(api) and api.get("v1", "services", NS, "tiny") is None)


def test_deleting_the_job_deletes_its_children(api: ApiServer, operator: OperatorThread) -> None:
    start(api, operator)
    run_all(api, operator)
    api.delete(API_VERSION, PLURAL, NS, "tiny")
    wait_for("job gone", lambda: job(api) is None, op=operator)
    assert not pods(api)
    assert api.get("v1", "configmaps", NS, "tiny-config") is None


def test_invalid_spec_fails_with_the_field_named_and_creates_nothing(api: ApiServer, operator: OperatorThread) -> None:
    api.create(API_VERSION, PLURAL, NS, manifest(training={"globalBatchSamples": 7}))
    wait_for("Failed", lambda: phase(api) == "Failed", op=operator)
    failed = next(c for c in job(api)["status"]["conditions"] if c["type"] == "Failed")
    assert failed["reason"] == "InvalidSpec"
    assert "spec.training.globalBatchSamples: 7 samples per step cannot be split" in failed["message"]
    assert "InvalidSpec" in wait_for("event", lambda: reasons(api))
    assert not pods(api) and api.get("v1", "services", NS, "tiny") is None


def test_replicas_change_restarts_with_new_world_size_and_immutable_change_is_refused(
    api: ApiServer, operator: OperatorThread
) -> None:
    start(api, operator)
    run_all(api, operator)
    api.patch(API_VERSION, PLURAL, NS, "tiny", {"spec": {"workers": {"replicas": 4}}})
    wait_for("4 pods", lambda: len(pods(api)) == 4, op=operator)
    assert job(api)["status"]["worldSize"] == 4 and job(api)["status"].get("restarts", 0) == 0
    assert "Resized" in reasons(api)
    api.patch(API_VERSION, PLURAL, NS, "tiny", {"spec": {"model": {"architecture": "llama"}}})
    refused = wait_for(
        "SpecAccepted False",
        lambda: (
            next((c for c in job(api)["status"]["conditions"] if c["type"] == "SpecAccepted"), {}).get("status")
            == "False"
            and job(api)
        ),
        op=operator,
    )
    message = next(c for c in refused["status"]["conditions"] if c["type"] == "SpecAccepted")["message"]
    assert "spec.model.architecture cannot change" in message
    cm = yaml.safe_load(api.get("v1", "configmaps", NS, "tiny-config")["data"]["job.yaml"])
    assert cm["spec"]["model"]["architecture"] == "gpt2" and len(pods(api)) == 4


@pytest.fixture
def rank0_metrics() -> Iterator[tuple[int, dict[str, str]]]:
    """A stand-in for rank 0's /metrics on a free loopback port; the test sets the page it serves."""
    page = {"text": ""}

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = page["text"].encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; version=0.0.4")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:  # quiet
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1], page
    server.shutdown()
    thread.join(5)


def test_progress_and_eta_are_read_from_the_metrics_port_that_rank_zero_declares(
    api: ApiServer, operator: OperatorThread, rank0_metrics: tuple[int, dict[str, str]]
) -> None:
    port, page = rank0_metrics
    page["text"] = (
        'pretrain_step{job_name="tiny"} 17\npretrain_loss{job_name="tiny"} 3.25\n'
        'pretrain_tokens_per_second{job_name="tiny"} 512\n'
    )
    start(api, operator, metrics={"port": port})
    run_all(api, operator)
    wait_for("scraped step 17", lambda: job(api)["status"].get("step") == 17, op=operator)
    status = job(api)["status"]
    assert (status["loss"], status["progress"]) == (3.25, 34.0)
    # 8 samples × 64 tokens a step at 512 tokens/s: 1 s a step, 33 steps left.
    reported = datetime.fromisoformat(status["progressTime"].replace("Z", "+00:00"))
    eta = datetime.fromisoformat(status["estimatedCompletionTime"].replace("Z", "+00:00"))
    assert (eta - reported).total_seconds() == 33
    url = f"http://127.0.0.1:{operator.runtime.config.metrics_port}/metrics"
    text = wait_for("the operator's progress series", lambda: "job_progress_percent{" in (t := read(url)) and t)
    assert 'pretrain_operator_job_progress_percent{job_name="tiny",namespace="default"} 34.0' in text
    assert "pretrain_operator_job_estimated_completion_timestamp_seconds{" in text
    # A refused edit of the port does not move the scrape: the running pods serve the port they were built with.
    api.patch(API_VERSION, PLURAL, NS, "tiny", {"spec": {"metrics": {"port": port + 1}}})
    wait_for("the change refused", lambda: "SpecChangeRefused" in reasons(api), op=operator)
    page["text"] = 'pretrain_step{job_name="tiny"} 18\n'
    wait_for("scraped step 18", lambda: job(api)["status"].get("step") == 18, op=operator)


def test_active_deadline_fails_the_job_and_stops_its_workers(api: ApiServer, operator: OperatorThread) -> None:
    start(api, operator, activeDeadlineSeconds=2)
    run_all(api, operator)
    wait_for("phase Failed", lambda: phase(api) == "Failed", op=operator)
    failed = next(c for c in job(api)["status"]["conditions"] if c["type"] == "Failed")
    assert failed["reason"] == "DeadlineExceeded" and "spec.activeDeadlineSeconds" in failed["message"]
    wait_for("workers stopped", lambda: all(p["metadata"].get("deletionTimestamp") for p in pods(api)) or not pods(api))
    assert wait_for("DeadlineExceeded event", lambda: "DeadlineExceeded" in reasons(api))


def test_secrets_never_leak_into_children_status_or_events(api: ApiServer, operator: OperatorThread) -> None:
    secret = {"AWS_ACCESS_KEY_ID": "key-id", "AWS_SECRET_ACCESS_KEY": SECRET_VALUE}
    data = {k: base64.b64encode(v.encode()).decode() for k, v in secret.items()}
    api.create("v1", "secrets", NS, {"metadata": {"name": "s3-creds"}, "data": data})
    created = start(api, operator)
    set_pod(api, created[0], "Failed", exit_code=1)
    wait_for("restart", lambda: job(api)["status"].get("restarts") == 1, op=operator)
    encoded = data["AWS_SECRET_ACCESS_KEY"]
    for plural in ("pods", "services", "configmaps", "events"):
        text = json.dumps(api.list("v1", plural, NS))
        assert SECRET_VALUE not in text and encoded not in text, plural
    assert SECRET_VALUE not in json.dumps(job(api))


def test_operator_serves_metrics_and_liveness(api: ApiServer, operator: OperatorThread) -> None:
    start(api, operator)
    metrics_port = operator.runtime.config.metrics_port
    health = urllib.request.urlopen(f"http://127.0.0.1:{operator.health_port}/healthz", timeout=5)
    assert health.status == 200
    text = wait_for(
        "job metrics",
        lambda: (
            (t := urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics").read().decode())
            and 'pretrain_operator_jobs{phase="Pending"} 1.0' in t
            and t
        ),
    )
    assert "pretrain_operator_reconcile_duration_seconds_count" in text


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is not installed")
def test_kubectl_apply_and_get_work_against_the_emulator(
    api: ApiServer, operator: OperatorThread, tmp_path: Path
) -> None:
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(manifest()))
    kubectl = ["kubectl", "--server", api.url, "--validate=false", "-n", NS]
    subprocess.run([*kubectl, "apply", "-f", str(path)], check=True, capture_output=True, timeout=60)
    wait_for("pods", lambda: len(pods(api)) == 2, op=operator)
    out = subprocess.run(
        ["kubectl", "--server", api.url, "-n", NS, "get", "pj", "tiny", "-o", "jsonpath={.status.phase}"],
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.stdout == "Pending"
