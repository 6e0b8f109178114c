"""A deterministic, bounded sample for tokenizer training: the same documents from one process or from any number
of tasks, about the asked size, spread over every file; `tokenizer train --sample-bytes` trains on exactly it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pretrain_trainer.bundled_corpus import bundled_corpus_files
from pretrain_trainer.cli import main
from pretrain_trainer.data.readers import expand_inputs, input_bytes
from pretrain_trainer.data.sample import sampled_documents, write_sample_task

INPUTS = [str(p) for p in bundled_corpus_files()]


def _task_samples(folder: Path) -> list[str]:
    return [json.loads(line)["text"] for p in sorted(folder.glob("sample-*.jsonl")) for line in p.open()]


def test_tasks_write_the_one_process_sample_in_corpus_order_whatever_their_number(tmp_path):
    budget = input_bytes(expand_inputs(INPUTS)) / 4
    single = [d.text for d in sampled_documents(INPUTS, budget)]
    for tasks in (1, 3):
        for i in range(tasks):
            write_sample_task(INPUTS, budget, str(tmp_path / f"{tasks}"), tasks, i)
        assert _task_samples(tmp_path / f"{tasks}") == single
    size = sum(len(t.encode()) for t in single)
    assert 0.6 * budget < size < 1.4 * budget, "about the asked size"
    assert len(list((tmp_path / "3").glob("sample-*.jsonl"))) == len(INPUTS), "one sample file per input file"
    assert all(p.stat().st_size > 0 for p in (tmp_path / "3").glob("*")), "every file contributes"
    assert [d.text for d in sampled_documents(INPUTS, 1e12)] == [d.text for d in sampled_documents(INPUTS, 1e13)]


def test_train_on_a_sample_equals_train_on_the_tasks_sample_files(tmp_path, capsys, monkeypatch):
    train = ["tokenizer", "train", "--vocab-size", "400"]
    assert main([*train, "--input", *INPUTS, "--sample-bytes", "60000", "--output", str(tmp_path / "a")]) == 0
    for index in ("0", "1"):
        monkeypatch.setenv("JOB_COMPLETION_INDEX", index)
        args = ["tokenizer", "sample", "--input", *INPUTS, "--bytes", "60000", "--tasks", "2"]
        assert main([*args, "--output", str(tmp_path / "sample")]) == 0
    assert main([*train, "--input", str(tmp_path / "sample"), "--output", str(tmp_path / "b")]) == 0
    a, b = ((tmp_path / x / "tokenizer.json").read_bytes() for x in "ab")
    assert a == b
    capsys.readouterr()


def test_a_sample_budget_must_be_positive():
    with pytest.raises(ValueError, match="--sample-bytes: must be positive"):
        list(sampled_documents(INPUTS, 0))
