"""The CLI as a user meets it: real subprocesses, exit codes and messages."""

import argparse
import json
import subprocess
import sys
from pathlib import Path

import pytest

from pretrain_trainer.bundled_corpus import bundled_corpus_files
from pretrain_trainer.cli import build_parser
from pretrain_trainer.commands.registry import CommandTree

EXE = str(Path(sys.executable).with_name("pretrainjob"))
CORPUS = [str(p) for p in bundled_corpus_files()]


def run(*args, check_rc=None):
    proc = subprocess.run([EXE, *args], capture_output=True, text=True, timeout=300)
    if check_rc is not None:
        assert proc.returncode == check_rc, proc.stdout + proc.stderr
    return proc


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    return tmp_path_factory.mktemp("cli")


@pytest.fixture(scope="module")
def bpe_dir(workdir):
    run("tokenizer", "train", "--input", *CORPUS, "--vocab-size", "1500", "--output", str(workdir / "bpe"), check_rc=0)
    return str(workdir / "bpe")


def test_train_audit_prepare_inspect_from_the_command_line(bpe_dir, workdir):
    audit = run(
        "tokenizer",
        "audit",
        bpe_dir,
        "--corpus",
        *CORPUS,
        "--threshold",
        "1.0",
        "--json",
        str(workdir / "audit.json"),
        check_rc=0,
    )
    assert "PASS: round-trip fidelity 100.00%" in audit.stdout
    assert json.loads((workdir / "audit.json").read_text())["total"]["roundtrip"] == 1.0
    prep = run(
        "prepare",
        "--tokenizer",
        bpe_dir,
        "--input",
        *CORPUS,
        "--output",
        str(workdir / "data"),
        "--dedup",
        "--validation-fraction",
        "0.1",
        check_rc=0,
    )
    assert "duplicate" in prep.stdout and "train" in prep.stdout and "validation" in prep.stdout
    inspect = run("data", "inspect", str(workdir / "data" / "train"), "--verify", "--tokenizer", bpe_dir, check_rc=0)
    assert "verified" in inspect.stdout and "first 64 tokens decode to" in inspect.stdout


def test_audit_of_an_accent_stripping_tokenizer_exits_1_and_says_what_was_lost(workdir):
    out = str(workdir / "uncased")
    run(
        "tokenizer",
        "train",
        "--input",
        *CORPUS,
        "--model",
        "wordpiece",
        "--objective",
        "mlm",
        "--lowercase",
        "--strip-accents",
        "--vocab-size",
        "1500",
        "--output",
        out,
        check_rc=0,
    )
    audit = run("tokenizer", "audit", out, "--corpus", *CORPUS, "--ignore-whitespace", check_rc=1)
    assert "ACCENTS STRIPPED" in audit.stdout and "'ä'→'a'" in audit.stdout and "FAIL" in audit.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["prepare", "--tokenizer", "/nope/tok", "--input", "/nope/*.txt", "--output", "/tmp/x"],
            "--input: nothing matched /nope/*.txt",
        ),
        (
            ["tokenizer", "train", "--input", CORPUS[0], "--vocab-size", "10", "--output", "/tmp/t"],
            "vocab_size: 10 is too small",
        ),
        (["tokenizer", "audit", "/nope/tokenizer.json", "--corpus", CORPUS[0]], "/nope/tokenizer.json"),
        (["data", "inspect", "/nope/data"], "/nope/data"),
        (["prepare", "--tokenizer", "s3:/broken", "--input", CORPUS[0], "--output", "/tmp/x"], "s3:/broken"),
    ],
)
def test_bad_input_gives_one_clear_line_and_exit_2(args, message):
    proc = run(*args, check_rc=2)
    assert proc.stderr.startswith("pretrainjob: error: ")
    assert message in proc.stderr
    assert "Traceback" not in proc.stderr


def test_unknown_choice_is_an_argparse_error_listing_the_choices():
    proc = run("tokenizer", "train", "--input", "x", "--model", "bytepiece", "--output", "y", check_rc=2)
    assert "invalid choice: 'bytepiece'" in proc.stderr and "bpe" in proc.stderr


def test_help_reads_well():
    out = run("--help", check_rc=0).stdout
    assert "COMMAND" in out and "prepare" in out and "tokenizer" in out
    train = run("tokenizer", "train", "--help", check_rc=0).stdout
    assert "--strip-accents" in train and "Lower-casing keeps accents" in train


def test_corpus_copies_the_committed_bundled_files_byte_for_byte(tmp_path):
    out = run("corpus", "bundled", "--output", str(tmp_path / "corpus"), check_rc=0).stdout
    copies = sorted((tmp_path / "corpus").iterdir())
    assert [p.name for p in copies] == [Path(p).name for p in CORPUS]
    for copy, original in zip(copies, CORPUS, strict=True):
        assert copy.read_bytes() == Path(original).read_bytes()
        assert str(copy) in out


def test_a_command_in_a_new_group_is_one_registration_and_runs_its_handler():
    def cmd_data_verify(args):
        return 7

    parser = argparse.ArgumentParser()
    tree = CommandTree(parser, {"data": "look into shard sets"})
    tree.add("data verify", cmd_data_verify, help="verify").add_argument("uri")
    args = parser.parse_args(["data", "verify", "s3://b/x"])
    assert args.func(args) == 7 and args.uri == "s3://b/x"
    with pytest.raises(KeyError, match="'report'"):
        tree.add("report corpus", cmd_data_verify, help="a group without help text")


def test_every_command_has_a_handler_and_building_the_parser_imports_no_torch():
    code = (
        "import sys; from pretrain_trainer.cli import build_parser; build_parser();"
        "print(sorted(m for m in ('torch', 'transformers') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
    commands = (["demo"], ["validate", "x.yaml"], ["train", "--config", "x"], ["corpus", "bundled", "--output", "o"])
    for command in commands:
        assert callable(build_parser().parse_args(command).func)
