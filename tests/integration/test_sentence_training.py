"""BERT's next-sentence prediction through the real trainer: shards in loopback S3, the logged numbers, the export."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from transformers import BertForPreTraining

from pretrain_trainer.tokenizer.train import TokenizerTrainingSpec
from tests.integration.test_trainer import _run
from tests.support.jobs import make_dataset, write_job


@pytest.fixture(scope="module")
def data(s3):
    spec = TokenizerTrainingSpec(model="wordpiece", vocab_size=512, objective="mlm")
    return make_dataset("s3://trainer-sentence", "bundled", spec, s3)


def test_nsp_trains_logs_its_numbers_and_exports_bert_for_pretraining(data, s3_endpoint, child_env, tmp_path):
    """One process: the split into ranks is the unit tests' (pairs and masks follow the sample position, the loss
    is normalised by the global counts like every objective's)."""
    spec = {
        "objective": {"sentence": {"task": "nsp", "weight": 0.5}},
        "training": {"maxSteps": 3},
        "checkpoint": {"uri": str(tmp_path / "ckpt"), "everySteps": 3, "exportHF": True},
    }
    job = write_job(tmp_path / "job.yaml", "nsp", data, s3_endpoint, kind="mlm", **spec)
    summary = _run(job, 1, tmp_path / "run", child_env)
    lines = [json.loads(line) for line in (tmp_path / "run" / "train.jsonl").read_text().splitlines()]
    last = next(r for r in lines if r.get("step") == 3 and "event" not in r)
    assert last["loss"] == pytest.approx(last["mlm_loss"] + 0.5 * last["sentence_loss"], rel=1e-6)
    assert 0 < last["sentence_negative_ratio"] < 1 and 0 <= last["sentence_accuracy"] <= 1
    assert summary["validation_perplexity"] > 1  # validation reads the MLM part
    exported = Path(summary["hf_export"].removeprefix("file://"))
    model = BertForPreTraining.from_pretrained(exported)
    assert model.cls.seq_relationship.out_features == 2 and (exported / "tokenizer.json").exists()
