"""No credential in the clear: a job trained at DEBUG with planted S3 credentials (a secret key, a session token,
a checkpoint signing key) against the loopback S3 endpoint, locally and through the operator (API emulation and
kubelet fixture, the credentials in Secrets), and the operator handling a spec with credentials in its endpoint.
Every log line, JSON log, summary, checkpoint manifest, ConfigMap, pod, event and status is searched for the
planted values.
"""

from __future__ import annotations

import base64
import json
import os
from datetime import datetime, timezone
from pathlib import Path

import pytest
import yaml

from pretrain_operator.lifecycle import Settings, plan
from pretrain_trainer.contract import (
    API_VERSION,
    AWS_SECRET_ACCESS_KEY,
    AWS_SESSION_TOKEN,
    KIND,
    PLURAL,
    PRETRAIN_CHECKPOINT_SIGNING_KEY,
    PRETRAIN_LOG_LEVEL,
)
from pretrain_trainer.launch import run_local
from pretrain_trainer.storage import open_store
from pretrain_trainer.tokenizer.train import TokenizerTrainingSpec
from tests.support.checkout import checkout_pythonpath
from tests.support.jobs import make_dataset, write_job
from tests.support.kube_api import ApiServer
from tests.support.kubelet import Kubelet
from tests.support.operator_run import OperatorThread, wait_for
from tests.support.s3 import TEST_ACCESS_KEY_ID, TEST_SECRET_ACCESS_KEY

PLANTED_TOKEN = "PlantedSessionToken-3b1f9c0d7e5a"
PLANTED_SIGNING_KEY = "PlantedSigningKey-a41c77e2d09b"
PLANTED_PASSWORD = "PlantedPassword-55e1d3c9"


def secrets_in(text: str) -> list[str]:
    planted = (TEST_SECRET_ACCESS_KEY, PLANTED_TOKEN, PLANTED_SIGNING_KEY, PLANTED_PASSWORD)
    return [secret for secret in planted if secret in text]


def tiny_job(s3, s3_endpoint: str, path: Path, name: str, **checkpoint: str) -> tuple[Path, str]:
    """A 4-step job checkpointing every 2 steps to a bucket of its own; its manifest and checkpoint URI."""
    data = make_dataset(f"s3://{name}", "bundled", TokenizerTrainingSpec(model="bpe", vocab_size=300), s3)
    ckpt = f"s3://{name}/runs/ckpt"
    spec = {"storage": {"credentialsSecret": "s3-creds"}} if checkpoint else {}
    job = write_job(
        path / "job.yaml",
        name,
        data,
        s3_endpoint,
        training={"maxSteps": 4, "logEverySteps": 1},
        checkpoint={"uri": ckpt, "everySteps": 2, **checkpoint},
        **spec,
    )
    return job, ckpt


@pytest.mark.slow
def test_a_debug_run_leaves_no_credential_in_logs_summary_or_checkpoint_manifests(s3, s3_endpoint, tmp_path):
    job, ckpt = tiny_job(s3, s3_endpoint, tmp_path, "secrets-run")
    env = {
        "AWS_ACCESS_KEY_ID": TEST_ACCESS_KEY_ID,
        AWS_SECRET_ACCESS_KEY: TEST_SECRET_ACCESS_KEY,
        AWS_SESSION_TOKEN: PLANTED_TOKEN,
        PRETRAIN_CHECKPOINT_SIGNING_KEY: PLANTED_SIGNING_KEY,
        "AWS_CONFIG_FILE": os.devnull,
        "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
        "PYTHONPATH": checkout_pythonpath(),
        PRETRAIN_LOG_LEVEL: "DEBUG",
    }
    run_dir = tmp_path / "run"
    assert run_local(str(job), 1, run_dir, extra_env=env) == 0, (run_dir / "rank-0.log").read_text()[-3000:]

    outputs = {path.name: path.read_text(errors="replace") for path in run_dir.rglob("*") if path.is_file()}
    assert {"rank-0.log", "train.jsonl", "summary.json"} <= set(outputs)
    assert "botocore" in outputs["rank-0.log"]  # DEBUG really was on: the request dumps were logged, scrubbed
    store = open_store(ckpt, s3)
    manifests = [info.key for info in store.list("") if info.key.endswith("MANIFEST.json")]
    assert len(manifests) == 2
    outputs.update({key: store.read(key).decode() for key in manifests})
    assert all(json.loads(outputs[key])["signature"] for key in manifests)
    leaks = {name: found for name, text in outputs.items() if (found := secrets_in(text))}
    assert not leaks


def secret(api: ApiServer, name: str, values: dict[str, str]) -> None:
    data = {k: base64.b64encode(v.encode()).decode() for k, v in values.items()}
    api.create("v1", "secrets", "default", {"metadata": {"name": name}, "data": data})


@pytest.mark.slow
def test_an_operator_run_at_debug_repeats_no_credential_in_any_object_log_or_manifest(s3, s3_endpoint, tmp_path):
    job, ckpt = tiny_job(s3, s3_endpoint, tmp_path, "secrets-op", signingSecret="ckpt-key")
    manifest = yaml.safe_load(job.read_text())
    kubelet_env = {
        "OMP_NUM_THREADS": "1",
        "AWS_CONFIG_FILE": os.devnull,
        "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
        PRETRAIN_LOG_LEVEL: "DEBUG",
    }
    settings = Settings(resync_s=1.0, image="unused:local")
    with ApiServer(graceful_pods=True) as api:
        secret(
            api,
            "s3-creds",
            {
                "AWS_ACCESS_KEY_ID": TEST_ACCESS_KEY_ID,
                AWS_SECRET_ACCESS_KEY: TEST_SECRET_ACCESS_KEY,
                AWS_SESSION_TOKEN: PLANTED_TOKEN,
            },
        )
        secret(api, "ckpt-key", {PRETRAIN_CHECKPOINT_SIGNING_KEY: PLANTED_SIGNING_KEY})
        with Kubelet(api, tmp_path / "nodes", kubelet_env) as kubelet, OperatorThread(api.url, settings) as op:
            api.create(API_VERSION, PLURAL, "default", manifest)
            done = wait_for(
                "finished",
                lambda: (
                    (s := (api.get(API_VERSION, PLURAL, "default", "secrets-op") or {}).get("status", {})).get("phase")
                    in ("Succeeded", "Failed")
                    and s
                ),
                300,
                op,
            )
            assert done["phase"] == "Succeeded", kubelet.logs("secrets-op-worker-0")[-3000:]
            objects = {
                plural: api.list(version, plural, "default")
                for version, plural in (("v1", "configmaps"), ("v1", "pods"), ("v1", "events"), (API_VERSION, PLURAL))
            }
            files = {
                str(path): path.read_text(errors="replace")
                for path in (tmp_path / "nodes").rglob("*")
                if path.is_file() and not path.is_symlink()
            }
    assert "botocore" in "".join(files.values())  # DEBUG reached the workers
    store = open_store(ckpt, s3)
    manifests = {
        key: store.read(key).decode() for key in (i.key for i in store.list("")) if key.endswith("MANIFEST.json")
    }
    assert manifests and all(json.loads(text)["signature"] for text in manifests.values())
    everything = {**files, **manifests, **{plural: json.dumps(items) for plural, items in objects.items()}}
    leaks = {name: found for name, text in everything.items() if (found := secrets_in(text))}
    assert not leaks


def test_the_operator_fails_a_spec_with_credentials_in_its_endpoint_and_repeats_them_nowhere():
    job = {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "metadata": {"name": "leaky", "namespace": "ns", "uid": "u1", "generation": 1},
        "spec": {
            "tokenizer": {"uri": "s3://bucket/tok"},
            "data": {"train": f"s3://ak:{PLANTED_PASSWORD}@bucket/train"},
            "training": {"globalBatchSamples": 8, "microBatchSize": 8},
            "storage": {"endpoint": f"https://ak:{PLANTED_PASSWORD}@s3.example"},
        },
    }
    out = plan(job, [], None, None, None, datetime(2026, 1, 1, tzinfo=timezone.utc), Settings())

    assert out.status["phase"] == "Failed" and "storage.credentialsSecret" in out.status["message"]
    assert not out.create  # no ConfigMap, no pods
    everything = json.dumps([out.status, [vars(event) for event in out.events], out.create, out.replace])
    assert not secrets_in(everything)
