"""`pretrainjob data preview`: the samples it prints are the ones the trainer trains on at step 1, masks included."""

from __future__ import annotations

import json

import pytest
import torch

from pretrain_trainer.bundled_corpus import bundled_corpus_files
from pretrain_trainer.cli import main
from pretrain_trainer.config import load_job
from pretrain_trainer.data.prepare import PrepareConfig, prepare
from pretrain_trainer.distributed import DistEnv
from pretrain_trainer.objectives import IGNORE_INDEX
from pretrain_trainer.tokenizer.train import TokenizerTrainingSpec, save_tokenizer
from pretrain_trainer.trainer import Trainer
from tests.support.data import trained
from tests.support.jobs import Dataset, write_job

SAMPLES = 8  # one global batch of the tiny job


def _dataset(root, spec: TokenizerTrainingSpec) -> Dataset:
    tok = save_tokenizer(trained(spec), spec, str(root / "tok"))
    prepare(
        PrepareConfig(
            inputs=tuple(str(p) for p in bundled_corpus_files()),
            output=str(root / "data"),
            tokenizer=tok,
            dedup=True,
            shard_tokens=20_000,
        )
    )
    return Dataset(tok, str(root / "data" / "train"), "")


@pytest.fixture(scope="module")
def bert_data(tmp_path_factory):
    return _dataset(
        tmp_path_factory.mktemp("bert"), TokenizerTrainingSpec(model="wordpiece", vocab_size=512, objective="mlm")
    )


@pytest.fixture(scope="module")
def gpt_data(tmp_path_factory):
    return _dataset(tmp_path_factory.mktemp("gpt"), TokenizerTrainingSpec(model="bpe", vocab_size=512))


def _one_step_job(tmp_path, data, kind, **spec):
    return write_job(
        tmp_path / "job.yaml",
        f"preview-{kind}",
        data,
        "",
        kind,
        data={"train": data.train, "validation": "", "sequenceLength": 32, "seed": 11},
        training={"maxSteps": 1, "seed": 3},
        **spec,
    )


def _trained_batch(path, run_dir) -> dict[str, torch.Tensor]:
    """The batch the trainer built at step 1 of a real (one-step) run."""
    trainer = Trainer(load_job(path), DistEnv(), run_dir)
    seen = []
    build = trainer._batch
    trainer._batch = lambda window, position: seen.append(build(window, position)) or seen[-1]
    trainer.run()
    trainer.release()
    return seen[0]


def _previewed(path, out, capsys) -> tuple[list[dict], str]:
    assert main(["data", "preview", str(path), "--samples", str(SAMPLES), "--json", str(out)]) == 0
    return json.loads(out.read_text()), capsys.readouterr().out


@pytest.mark.slow
@pytest.mark.parametrize("masking", ["token", "whole-word", "span"])
def test_preview_shows_the_masks_the_trainer_used_at_step_1(bert_data, tmp_path, capsys, masking):
    path = _one_step_job(tmp_path, bert_data, "mlm", objective={"type": "mlm", "mlm": {"masking": masking}})
    batch = _trained_batch(path, tmp_path / "run")
    previewed, printed = _previewed(path, tmp_path / "preview.json", capsys)
    assert [p["position"] for p in previewed] == list(range(SAMPLES))
    assert [p["input_ids"] for p in previewed] == batch["input_ids"].tolist()
    assert [p["labels"] for p in previewed] == batch["labels"].tolist()
    assert (batch["labels"] != IGNORE_INDEX).any()
    assert "[MASK→" in printed and "legend" in printed
    assert printed.count("── sample ") == SAMPLES


def test_preview_with_another_training_seed_shows_other_masks(bert_data, tmp_path, capsys):
    first = _one_step_job(tmp_path, bert_data, "mlm")
    a, _ = _previewed(first, tmp_path / "a.json", capsys)
    other = write_job(
        tmp_path / "other.yaml",
        "preview-other",
        bert_data,
        "",
        "mlm",
        data={"train": bert_data.train, "validation": "", "sequenceLength": 32, "seed": 11},
        training={"maxSteps": 1, "seed": 4},
    )
    b, _ = _previewed(other, tmp_path / "b.json", capsys)
    assert [s["labels"] for s in a] != [s["labels"] for s in b]


@pytest.mark.slow
def test_causal_preview_shows_the_trainers_windows_with_document_boundaries(gpt_data, tmp_path, capsys):
    path = _one_step_job(tmp_path, gpt_data, "clm")
    batch = _trained_batch(path, tmp_path / "run")
    previewed, printed = _previewed(path, tmp_path / "preview.json", capsys)
    assert [p["input_ids"] for p in previewed] == batch["input_ids"].tolist()
    assert [p["labels"] for p in previewed] == batch["labels"].tolist()
    assert "document boundary (EOS)" in printed


def test_preview_of_a_job_whose_data_is_missing_names_the_uri(gpt_data, tmp_path, capsys):
    missing = tmp_path / "nowhere"
    path = write_job(
        tmp_path / "job.yaml",
        "preview-missing",
        gpt_data,
        "",
        "clm",
        data={"train": str(missing), "validation": "", "sequenceLength": 32},
    )
    assert main(["data", "preview", str(path)]) == 2
    err = capsys.readouterr().err
    assert str(missing) in err and "Traceback" not in err


@pytest.fixture(scope="module")
def t5_data(tmp_path_factory):
    spec = TokenizerTrainingSpec(model="wordpiece", vocab_size=512, objective="span-corruption")
    return _dataset(tmp_path_factory.mktemp("t5"), spec)


def test_span_corruption_preview_shows_the_trainers_sentinel_inputs_and_targets(t5_data, tmp_path, capsys):
    path = _one_step_job(tmp_path, t5_data, "span-corruption")
    batch = _trained_batch(path, tmp_path / "run")
    previewed, printed = _previewed(path, tmp_path / "preview.json", capsys)
    assert batch["input_ids"].shape == (SAMPLES, 32) and bool(batch["attention_mask"].all())
    assert [p["input_ids"] for p in previewed] == batch["input_ids"].tolist()
    assert [p["labels"] for p in previewed] == batch["labels"].tolist()  # 34 raw tokens: 8 targets, none padded
    assert "(raw windows of 34 tokens)" in printed and printed.count("── sample ") == SAMPLES
    first = printed.split("── sample 0 ")[1]
    assert "input:  " in first and "<extra_id_0>" in first.split("target: ")[0]
    assert first.split("target: ")[1].startswith("<extra_id_0>")


def test_denoising_preview_shows_masked_inputs_and_the_whole_window_as_target(tmp_path, capsys):
    spec = TokenizerTrainingSpec(model="wordpiece", vocab_size=512, objective="denoising")
    data = _dataset(tmp_path / "bart", spec)
    path = _one_step_job(tmp_path, data, "denoising")
    previewed, printed = _previewed(path, tmp_path / "preview.json", capsys)
    assert all(len(p["labels"]) == 32 and len(p["input_ids"]) < 32 for p in previewed)
    assert "<mask>" in printed.split("target: ")[0] and "target: " in printed
