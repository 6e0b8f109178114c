"""`prepare --tasks N --task-index I` then `prepare merge`: byte-identical to one process, global dedup, idempotent
re-runs of a killed task, and a merge that refuses an incomplete or mixed set of parts, naming what is wrong."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from pretrain_trainer.bundled_corpus import bundled_corpus_files
from pretrain_trainer.cli import main
from pretrain_trainer.curation.filters import CurationConfig
from pretrain_trainer.data import scatter
from pretrain_trainer.data.merge import PartsError, merge
from pretrain_trainer.data.prepare import PrepareConfig, prepare
from pretrain_trainer.data.scatter import DONE, PARTS, assign_files, part_prefix, prepare_task
from pretrain_trainer.tokenizer.train import TokenizerTrainingSpec, save_tokenizer
from tests.support.data import trained

SPEC = TokenizerTrainingSpec(model="bpe", vocab_size=1000)


@pytest.fixture(scope="module")
def tokenizer_dir(tmp_path_factory) -> str:
    return save_tokenizer(trained(SPEC), SPEC, str(tmp_path_factory.mktemp("tok")))


def _config(tokenizer_dir: str, output: Path, **kw) -> PrepareConfig:
    base = {
        "inputs": tuple(str(p) for p in bundled_corpus_files()),
        "output": str(output),
        "tokenizer": tokenizer_dir,
        "shard_tokens": 4000,
        "dedup": True,
        "min_tokens": 4,
        "validation_fraction": 0.1,
    }
    return PrepareConfig(**{**base, **kw})


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _single(cfg: PrepareConfig, tmp_path: Path) -> dict[str, bytes]:
    """One process's train/ and validation/ (index.json included: it records the output, so use the same one)."""
    report = prepare(cfg)
    out = Path(cfg.output)
    files = {k: v for k, v in _files(out).items() if k != "report.json"}
    shutil.rmtree(out)
    assert report.dropped["duplicate"] > 0 and len(files) > 6
    return files


def _merged(cfg: PrepareConfig, tasks: int) -> dict[str, bytes]:
    for i in range(tasks):
        prepare_task(cfg, tasks, i)
    merge(cfg.output)
    return {k: v for k, v in _files(Path(cfg.output)).items() if k != "report.json"}


@pytest.mark.parametrize("tasks", [1, 3])
def test_tasks_and_merge_write_the_shards_and_index_of_one_process_byte_for_byte(tokenizer_dir, tmp_path, tasks):
    cfg = _config(tokenizer_dir, tmp_path / "out")
    expected = _single(cfg, tmp_path)
    assert _merged(cfg, tasks) == expected
    assert not (tmp_path / "out" / PARTS).exists(), "the merge removes the parts once the index is written"


def test_near_duplicates_and_filters_are_decided_across_tasks_as_in_one_process(tokenizer_dir, tmp_path):
    curation = CurationConfig(near_dedup=True, redact_pii=True, languages=("en", "sv", "de", "fr", "code"))
    cfg = _config(tokenizer_dir, tmp_path / "out", curation=curation)
    single = prepare(cfg)
    expected = {k: v for k, v in _files(tmp_path / "out").items() if k != "report.json"}
    shutil.rmtree(tmp_path / "out")
    for i in range(4):
        prepare_task(cfg, 4, i)
    report = merge(cfg.output)
    assert {k: v for k, v in _files(tmp_path / "out").items() if k != "report.json"} == expected
    # The bundled corpus plants near duplicates in different files, so different tasks: only a global index finds them.
    assert report.dropped == single.dropped and single.dropped["near_duplicate"] > 0
    assert report.changed == single.changed and report.kept == single.kept and report.tokens == single.tokens
    assert report.documents_read == single.documents_read and len(report.tasks) == 4
    assert "task 3" in report.format()


def test_the_cli_takes_the_task_index_from_an_indexed_jobs_environment(tokenizer_dir, tmp_path, monkeypatch, capsys):
    cfg = _config(tokenizer_dir, tmp_path / "out")
    expected = _single(cfg, tmp_path)
    args = ["prepare", "--tokenizer", tokenizer_dir, "--input", *cfg.inputs, "--output", cfg.output, "--dedup",
            "--min-tokens", "4", "--validation-fraction", "0.1", "--shard-tokens", "4000", "--tasks", "2"]  # fmt: skip
    for index in ("1", "0"):
        monkeypatch.setenv("JOB_COMPLETION_INDEX", index)
        assert main(args) == 0
    assert main(["prepare", "merge", "--output", cfg.output]) == 0
    assert {k: v for k, v in _files(tmp_path / "out").items() if k != "report.json"} == expected
    monkeypatch.delenv("JOB_COMPLETION_INDEX")
    assert main(args) == 2
    assert "JOB_COMPLETION_INDEX" in capsys.readouterr().err


def test_a_task_killed_mid_write_leaves_nothing_mergeable_and_its_rerun_completes_the_set(
    tokenizer_dir, tmp_path, monkeypatch
):
    cfg = _config(tokenizer_dir, tmp_path / "out")
    expected = _single(cfg, tmp_path)
    prepare_task(cfg, 3, 0)
    prepare_task(cfg, 3, 2)
    real = scatter.read_documents
    calls = []

    def dies_on_the_second_file(files, *a, **kw):
        calls.append(files)
        if len(calls) == 2:
            raise KeyboardInterrupt("killed")
        return real(files, *a, **kw)

    monkeypatch.setattr(scatter, "read_documents", dies_on_the_second_file)
    with pytest.raises(KeyboardInterrupt):
        prepare_task(cfg, 3, 1)
    part = tmp_path / "out" / part_prefix(3, 1)
    assert any(part.iterdir()) and not (part / DONE).exists(), "objects of the first file, but no done marker"
    with pytest.raises(PartsError, match=r"missing parts: task\(s\) 1 of 3 .*--task-index"):
        merge(cfg.output)
    monkeypatch.setattr(scatter, "read_documents", real)
    prepare_task(cfg, 3, 1)
    prepare_task(cfg, 3, 1)  # a second re-run (a retried pod) changes nothing either
    merge(cfg.output)
    assert {k: v for k, v in _files(tmp_path / "out").items() if k != "report.json"} == expected


def test_merge_refuses_parts_of_two_runs_and_a_set_without_parts(tokenizer_dir, tmp_path):
    cfg = _config(tokenizer_dir, tmp_path / "out")
    with pytest.raises(PartsError, match="no completed task parts"):
        merge(cfg.output)
    for i in range(2):
        prepare_task(cfg, 2, i)
    prepare_task(cfg, 3, 0)
    with pytest.raises(PartsError, match=r"duplicate parts .*\(2-tasks, 3-tasks\)"):
        merge(cfg.output)
    assert not (tmp_path / "out" / "train").exists()


def test_merge_refuses_a_part_whose_objects_differ_from_its_done_marker(tokenizer_dir, tmp_path):
    cfg = _config(tokenizer_dir, tmp_path / "out")
    for i in range(2):
        prepare_task(cfg, 2, i)
    victim = next((tmp_path / "out" / part_prefix(2, 1)).glob("*.tokens"))
    data = bytearray(victim.read_bytes())
    data[10] ^= 1
    victim.write_bytes(bytes(data))
    with pytest.raises(PartsError, match=rf"{victim.name}: differs from its done.json"):
        merge(cfg.output)
    victim.unlink()
    with pytest.raises(PartsError, match=rf"{victim.name}: missing, but its done.json lists it"):
        merge(cfg.output)
    assert not (tmp_path / "out" / "train" / "index.json").exists()


def test_merge_refuses_tasks_that_ran_with_other_settings(tokenizer_dir, tmp_path):
    prepare_task(_config(tokenizer_dir, tmp_path / "out"), 2, 0)
    prepare_task(_config(tokenizer_dir, tmp_path / "out", min_tokens=9), 2, 1)
    with pytest.raises(PartsError, match=r"task\(s\) \[1\] ran with other settings"):
        merge(str(tmp_path / "out"))


def test_files_are_dealt_by_size_deterministically_and_every_task_exists():
    assert assign_files([10, 1, 1, 9, 5], 2) == [[0, 1, 2], [3, 4]]
    assert assign_files([3, 3], 4) == [[0], [1], [], []]
    with pytest.raises(ValueError, match="--tasks"):
        assign_files([1], 0)
