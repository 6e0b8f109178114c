"""Object-store brown-outs during training, through the fault-injecting proxy: an outage shorter than
spec.storage.retryTimeoutSeconds is waited out with the same losses as an uninterrupted run; a longer one ends the
worker with the retryable exit code and a termination message naming the store.

Scaled for CI (the issue's figures are a 30 s outage survived and a 10-minute one failing): a 3 s outage against a
10 s budget, and an outage that never ends in the test against a 1 s budget. benchmarks/storage_brownout.py measures
the full-size figures."""

from __future__ import annotations

import json
import time

import pytest

from pretrain_trainer.__main__ import run_job
from pretrain_trainer.config import load_job
from pretrain_trainer.contract import ERROR, EXIT_STORAGE_UNAVAILABLE, PRETRAIN_TERMINATION_LOG
from pretrain_trainer.distributed import DistEnv
from pretrain_trainer.tokenizer.train import TokenizerTrainingSpec
from pretrain_trainer.trainer import train
from tests.support.jobs import make_dataset, write_job

BUCKET = "s3://brownout"


@pytest.fixture(scope="module")
def data(s3):
    return make_dataset(BUCKET, "bundled", TokenizerTrainingSpec(model="bpe", vocab_size=512), s3)


def _job(tmp_path, name, data, faulty_s3, budget_s):
    return write_job(
        tmp_path / f"{name}.yaml",
        name,
        data,
        faulty_s3.url,
        training={"maxSteps": 12},
        checkpoint={"uri": f"{BUCKET}/runs/{tmp_path.name}-{name}", "everySteps": 4},
        storage={"retryTimeoutSeconds": budget_s},
    )


def test_an_outage_shorter_than_the_retry_budget_is_survived_with_the_same_losses(data, s3_env, faulty_s3, tmp_path):
    reference = train(load_job(_job(tmp_path, "ref", data, faulty_s3, 10)), DistEnv(), tmp_path / "ref")
    assert faulty_s3.faults_total == 0

    # The store goes away for 3 s at the first checkpoint upload (step 4): every request fails, data reads included.
    faulty_s3.outage(3.0, starting_on=f"{tmp_path.name}-out/step-")
    started = time.monotonic()
    summary = train(load_job(_job(tmp_path, "out", data, faulty_s3, 10)), DistEnv(), tmp_path / "out")
    assert faulty_s3.outage_started is not None and faulty_s3.faults_injected["fail"] >= 3
    assert time.monotonic() - started >= 3.0
    assert summary.steps == 12 and summary.last_checkpoint_step == 12
    assert summary.losses == reference.losses  # bit for bit: the outage changed nothing but the time


def test_an_outage_longer_than_the_retry_budget_exits_retryable_and_names_the_store(
    data, s3_env, faulty_s3, tmp_path, monkeypatch
):
    job = _job(tmp_path, "long", data, faulty_s3, 1)
    record = tmp_path / "termination-log"
    monkeypatch.setenv(PRETRAIN_TERMINATION_LOG, str(record))
    faulty_s3.outage(3600.0, starting_on=f"{tmp_path.name}-long/step-")
    assert run_job(str(job), str(tmp_path / "run")) == EXIT_STORAGE_UNAVAILABLE
    error = json.loads(record.read_text())[ERROR]
    assert error.startswith(f"object store unavailable: {BUCKET}/runs/{tmp_path.name}-long/step-00000004/")
    assert "still failing after" in error and "ServiceUnavailable (HTTP 503)" in error
    assert "spec.storage.retryTimeoutSeconds" in error
