"""Encoder–decoder pretraining through the real trainer: tiny T5 (span corruption) and tiny BART (denoising) on
gloo processes, checkpoints and the Hugging Face export, continued pretraining from a folder the test writes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForSeq2SeqLM, AutoTokenizer, BartConfig, BartForConditionalGeneration

from pretrain_trainer.tokenizer.load import read_tokenizer
from pretrain_trainer.tokenizer.train import TokenizerTrainingSpec
from tests.integration.test_trainer import _run
from tests.support.jobs import TINY_BART, make_dataset, write_job

KINDS = {"t5": "span-corruption", "bart": "denoising"}


@pytest.fixture(scope="module")
def datasets(s3):
    return {
        arch: make_dataset(
            "s3://trainer-seq2seq", arch, TokenizerTrainingSpec(model="wordpiece", vocab_size=512, objective=kind), s3
        )
        for arch, kind in KINDS.items()
    }


def _job(path: Path, arch: str, datasets, endpoint: str, **spec) -> Path:
    kind = KINDS[arch]
    base = {
        "optimizer": {"lr": 1e-2, "schedule": "constant", "warmupSteps": 0},
        "training": {"maxSteps": 8, "globalBatchSamples": 8, "microBatchSize": 4, "logEverySteps": 1},
    }
    for key, value in spec.items():
        base[key] = {**base.get(key, {}), **value}
    return write_job(path, f"{arch}-{path.stem}", datasets[arch], endpoint, kind=kind, **base)


def _hf_bart(folder: Path, tokenizer_uri: str, s3, vocab_size: int) -> None:
    """A Hugging Face BART folder (random weights) whose tokenizer is the job's less its last tokens."""
    tokenizer, _ = read_tokenizer(tokenizer_uri, s3)
    base = json.loads(tokenizer.to_str())
    base["model"]["vocab"] = {t: i for t, i in base["model"]["vocab"].items() if i < vocab_size}
    folder.mkdir()
    (folder / "tokenizer.json").write_text(json.dumps(base))
    ids = {t: tokenizer.token_to_id(t) for t in ("<pad>", "<s>", "</s>")}
    torch.manual_seed(0)
    config = BartConfig(
        vocab_size=vocab_size,
        pad_token_id=ids["<pad>"],
        bos_token_id=ids["<s>"],
        eos_token_id=ids["</s>"],
        decoder_start_token_id=ids["</s>"],
        forced_eos_token_id=ids["</s>"],
        **TINY_BART,
    )
    BartForConditionalGeneration(config).save_pretrained(folder)


@pytest.mark.slow
@pytest.mark.parametrize("arch", ["t5", "bart"])
def test_two_processes_learn_and_export_and_one_process_resumed_halfway_follows_the_same_curve(
    arch, datasets, s3_endpoint, s3, child_env, tmp_path
):
    """2 processes train 8 steps from scratch (T5) or from a Hugging Face folder the test writes, with a
    vocabulary to grow (BART), and export a model that generates. BART (the objective whose corruption draws the
    most numbers per sample) then resumes on 1 process from their step-4 checkpoint with the same losses for
    steps 5-8: the corruption follows the sample, not the rank, the world size or the restart. (Span corruption
    has the same per-sample seeding, `Seq2Seq.batch`; unit-tested, and one resume run fewer on CI.)"""
    model: dict = {}
    if arch == "bart":
        job_vocab = read_tokenizer(datasets["bart"].tokenizer, s3)[0].get_vocab_size(with_added_tokens=True)
        _hf_bart(tmp_path / "bart-base", datasets["bart"].tokenizer, s3, job_vocab - 20)
        model = {"init": "pretrained", "from": str(tmp_path / "bart-base"), "extendVocab": True, "config": {}}
    ckpt = tmp_path / "ckpt"
    checkpoint = {"uri": str(ckpt), "everySteps": 4, "exportHF": True}
    job = _job(tmp_path / "job.yaml", arch, datasets, s3_endpoint, checkpoint=checkpoint, model=model)
    two = _run(job, 2, tmp_path / "two", child_env)
    losses = two["losses"]
    assert two["world_size"] == 2 and len(losses) == 8
    assert sum(losses[-2:]) / 2 < sum(losses[:2]) / 2 - 0.3, losses
    assert two["validation_loss"] is not None

    out = ckpt / "hf" / "step-00000008"
    exported = AutoModelForSeq2SeqLM.from_pretrained(out)
    tok = AutoTokenizer.from_pretrained(out)
    assert type(exported).__name__ == ("T5ForConditionalGeneration" if arch == "t5" else "BartForConditionalGeneration")
    if arch == "bart":
        assert exported.get_input_embeddings().weight.shape[0] == job_vocab, "the vocabulary grew"
    noise = "<extra_id_0>" if arch == "t5" else "<mask>"
    ids = tok(f"Det var en {noise} dag.", return_tensors="pt")
    assert tok.convert_tokens_to_ids(noise) in ids["input_ids"][0].tolist()
    generated = exported.generate(**ids, max_new_tokens=6, do_sample=False)
    assert generated.shape[0] == 1 and 1 < generated.shape[1] <= 7

    if arch != "bart":
        return
    resumed_job = _job(
        tmp_path / "job.yaml",
        arch,
        datasets,
        s3_endpoint,
        checkpoint={**checkpoint, "resumeFrom": 4, "exportHF": False},
        model=model,
    )
    resumed = _run(resumed_job, 1, tmp_path / "one", child_env)
    assert resumed["resumed_from"] == 4 and resumed["world_size"] == 1
    assert resumed["losses"] == pytest.approx(losses[4:], rel=1e-4, abs=1e-5)
