"""Distillation through the real trainer: a frozen teacher from a Hugging Face folder, one process and two
FSDP processes over gloo."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from torch.distributed.checkpoint import FileSystemReader
from transformers import BertConfig, BertForMaskedLM

from pretrain_trainer.checkpoint.hf_export import copy_tokenizer
from pretrain_trainer.tokenizer.train import TokenizerTrainingSpec
from tests.integration.test_trainer import _run
from tests.support.jobs import TINY_BERT, make_dataset, write_job


@pytest.fixture(scope="module")
def data(s3):
    spec = TokenizerTrainingSpec(model="wordpiece", vocab_size=512, objective="mlm")
    return make_dataset("s3://trainer-distil", "bundled", spec, s3)


@pytest.fixture(scope="module")
def teacher(data, s3, tmp_path_factory):
    """A 4-layer BERT with the job's tokenizer, saved as a Hugging Face folder."""
    folder = tmp_path_factory.mktemp("teacher")
    torch.manual_seed(2)
    config = BertConfig(**{**TINY_BERT, "num_hidden_layers": 4, "vocab_size": 512})
    BertForMaskedLM(config).save_pretrained(folder)
    copy_tokenizer(data.tokenizer, s3, str(folder))
    vocab = json.loads((folder / "tokenizer.json").read_text())["model"]["vocab"]
    assert len(vocab) <= 512
    return folder


def test_one_process_and_two_fsdp_processes_distil_the_same_curve_and_the_teacher_is_never_saved(
    data, teacher, s3_endpoint, child_env, tmp_path
):
    before = load_file(teacher / "model.safetensors")
    spec = {
        "objective": {"type": "mlm", "distillation": {"teacher": str(teacher), "studentInit": "teacher"}},
        "training": {"maxSteps": 4},
        "checkpoint": {"uri": str(tmp_path / "ckpt"), "everySteps": 4, "exportHF": True},
    }
    job = write_job(tmp_path / "job.yaml", "distil", data, s3_endpoint, kind="mlm", **spec)
    one = _run(job, 1, tmp_path / "one", child_env)
    job2 = write_job(
        tmp_path / "job2.yaml",
        "distil",
        data,
        s3_endpoint,
        kind="mlm",
        **{
            **spec,
            "training": {"maxSteps": 4, "parallelism": "fsdp"},  # the student sharded, the teacher whole on each rank
            "checkpoint": {"uri": str(tmp_path / "ckpt2"), "everySteps": 4},
        },
    )
    two = _run(job2, 2, tmp_path / "two", child_env)
    assert one["losses"] == pytest.approx(two["losses"], rel=1e-4, abs=1e-5)
    records = [json.loads(line) for line in (tmp_path / "two" / "train.jsonl").read_text().splitlines()]
    last = next(r for r in records if r.get("step") == 4 and "loss" in r and "event" not in r)
    assert {"kd_loss", "mlm_loss", "cos_loss", "teacher_forward_seconds"} <= set(last)

    sharded = FileSystemReader(str(tmp_path / "ckpt2" / "step-00000004")).read_metadata().state_dict_metadata
    layers = {k.split("layer.")[1].split(".")[0] for k in sharded if k.startswith("model.") and "layer." in k}
    assert layers == {"0", "1"} and not any("teacher" in k for k in sharded)  # the student's 2 layers, no teacher
    after = load_file(teacher / "model.safetensors")
    assert all(torch.equal(before[k], after[k]) for k in before)
    student = BertForMaskedLM.from_pretrained(Path(one["hf_export"].removeprefix("file://")))
    assert student.config.num_hidden_layers == 2
