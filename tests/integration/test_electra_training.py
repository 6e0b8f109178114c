"""ELECTRA through the real trainer: gloo processes, checkpoints in loopback S3, the Hugging Face export."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from transformers import AutoModel, AutoTokenizer, ElectraForMaskedLM, ElectraForPreTraining

from pretrain_trainer.tokenizer.train import TokenizerTrainingSpec
from tests.integration.test_trainer import _run
from tests.support.jobs import make_dataset, write_job

TINY_ELECTRA = {
    "num_hidden_layers": 2,
    "hidden_size": 32,
    "embedding_size": 32,
    "num_attention_heads": 4,
    "intermediate_size": 64,
    "max_position_embeddings": 32,
    "hidden_dropout_prob": 0.1,  # dropout on: the resumed run must restore the RNG too
    "attention_probs_dropout_prob": 0.0,
}


@pytest.fixture(scope="module")
def data(s3):
    spec = TokenizerTrainingSpec(model="wordpiece", vocab_size=512, objective="mlm")
    return make_dataset("s3://trainer-electra", "bundled", spec, s3)


def _job(path: Path, name: str, data, endpoint: str, **spec) -> Path:
    base = {
        "model": {"architecture": "electra", "config": TINY_ELECTRA},
        "objective": {"type": "electra"},
        "optimizer": {"lr": 3e-3, "schedule": "constant", "warmupSteps": 0},
        "training": {"maxSteps": 6, "globalBatchSamples": 8, "microBatchSize": 2},
    }
    for key, value in spec.items():
        base[key] = {**base.get(key, {}), **value}
    return write_job(path, name, data, endpoint, kind="mlm", **base)


def _records(run_dir: Path) -> dict[int, dict]:
    lines = [json.loads(line) for line in (run_dir / "train.jsonl").read_text().splitlines()]
    return {r["step"]: r for r in lines if "loss" in r and "event" not in r}


@pytest.mark.slow
def test_one_and_two_processes_follow_the_same_electra_curve_and_report_both_models(
    data, s3_endpoint, child_env, tmp_path
):
    no_dropout = {**TINY_ELECTRA, "hidden_dropout_prob": 0.0}  # dropout masks differ with the world size
    job = _job(tmp_path / "job.yaml", "electra-parity", data, s3_endpoint, model={"config": no_dropout})
    one = _run(job, 1, tmp_path / "one", child_env)["losses"]
    two = _run(job, 2, tmp_path / "two", child_env)["losses"]
    assert one == pytest.approx(two, rel=1e-4, abs=1e-5)
    record = _records(tmp_path / "two")[6]
    for key in ("generator_loss", "generator_accuracy", "discriminator_loss", "discriminator_accuracy"):
        assert key in record
    assert 0 < record["replaced_ratio"] < 0.3  # at most the selected share (15% on average), less the correct guesses
    assert record["loss"] == pytest.approx(record["generator_loss"] + 50 * record["discriminator_loss"], rel=1e-6)


def test_a_resumed_electra_run_equals_an_uninterrupted_one_and_exports_both_models(
    data, s3_endpoint, child_env, tmp_path
):
    # The reference also probes the discriminator downstream (steps 4 and 8): probing changes nothing in training.
    probes = {"probes": {"everySteps": 4, "maxExamples": 50}}
    reference = _job(
        tmp_path / "ref.yaml", "electra-ref", data, s3_endpoint, training={"maxSteps": 8}, evaluation=probes
    )
    summary = _run(reference, 1, tmp_path / "ref", child_env)
    expected = summary["losses"]
    events = [json.loads(line) for line in (tmp_path / "ref" / "train.jsonl").read_text().splitlines()]
    assert [(e["step"], e["task"]) for e in events if e.get("event") == "probe"] == [(4, "language"), (8, "language")]
    assert summary["probes"]["language"]["step"] == 8 and 0.1 < summary["probes"]["language"]["accuracy"] <= 1

    ckpt = tmp_path / "ckpt"
    checkpoint = {"uri": str(ckpt), "everySteps": 4, "exportHF": True}
    first = _job(
        tmp_path / "a.yaml", "electra-resume", data, s3_endpoint, checkpoint=checkpoint, training={"maxSteps": 4}
    )
    _run(first, 1, tmp_path / "a", child_env)
    second = _job(
        tmp_path / "b.yaml", "electra-resume", data, s3_endpoint, checkpoint=checkpoint, training={"maxSteps": 8}
    )
    summary = _run(second, 1, tmp_path / "b", child_env)
    assert summary["resumed_from"] == 4
    assert summary["losses"] == pytest.approx(expected[4:], rel=1e-5, abs=1e-6)

    out = ckpt / "hf" / "step-00000008"
    disc = ElectraForPreTraining.from_pretrained(out)
    gen = ElectraForMaskedLM.from_pretrained(out / "generator")
    assert type(AutoModel.from_pretrained(out)).__name__ == "ElectraModel"
    tok = AutoTokenizer.from_pretrained(out)
    ids = torch.tensor([tok("ett litet test")["input_ids"]])
    assert disc(input_ids=ids).logits.shape == ids.shape
    assert gen.config.hidden_size == 8 and gen(input_ids=ids).logits.shape[-1] == disc.config.vocab_size
    assert torch.equal(gen.electra.embeddings.word_embeddings.weight, disc.electra.embeddings.word_embeddings.weight), (
        "the shared embeddings are exported identically into both models"
    )

    continued = _job(
        tmp_path / "c.yaml",
        "electra-continued",
        data,
        s3_endpoint,
        model={"init": "pretrained", "from": str(out), "config": {}},
        training={"maxSteps": 2},
    )
    assert len(_run(continued, 1, tmp_path / "c", child_env)["losses"]) == 2
