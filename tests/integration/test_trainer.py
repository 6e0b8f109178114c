"""The trainer for real: 2 processes with gloo through the same launcher contract as pods, shards and
checkpoints in an S3 endpoint on loopback."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from pretrain_trainer.checkpoint import CheckpointManager
from pretrain_trainer.checkpoint.lease import RUN_ID_FILE
from pretrain_trainer.config import load_job
from pretrain_trainer.contract import EXIT_PREEMPTED, EXIT_STALLED
from pretrain_trainer.distributed import DistEnv
from pretrain_trainer.launch import run_local
from pretrain_trainer.storage import open_store
from pretrain_trainer.tokenizer.train import TokenizerTrainingSpec
from pretrain_trainer.trainer import Trainer
from tests.support.jobs import make_dataset, write_job


@pytest.fixture(scope="module")
def gpt_data(s3):
    return make_dataset("s3://trainer-gpt", "bundled", TokenizerTrainingSpec(model="bpe", vocab_size=512), s3)


@pytest.fixture(scope="module")
def bert_data(s3):
    spec = TokenizerTrainingSpec(model="wordpiece", vocab_size=512, objective="mlm")
    return make_dataset("s3://trainer-bert", "bundled", spec, s3)


def _run(job: Path, nproc: int, run_dir: Path, env: dict[str, str]) -> dict:
    code = run_local(str(job), nproc, run_dir, extra_env=env)
    assert code == 0, (run_dir / "rank-0.log").read_text()[-3000:]
    return json.loads((run_dir / "summary.json").read_text())


def _steps(run_dir: Path) -> dict[int, float]:
    lines = [json.loads(line) for line in (run_dir / "train.jsonl").read_text().splitlines()]
    return {r["step"]: r["loss"] for r in lines if "loss" in r and "event" not in r}


def test_tiny_gpt_learns_with_two_processes_and_checkpoints_to_s3(gpt_data, s3_endpoint, s3, child_env, tmp_path):
    ckpt = f"s3://trainer-gpt/runs/{tmp_path.name}"
    job = write_job(
        tmp_path / "job.yaml",
        "gpt-tiny",
        gpt_data,
        s3_endpoint,
        checkpoint={"uri": ckpt, "everySteps": 10, "keep": 2, "exportHF": True},
    )
    summary = _run(job, 2, tmp_path / "run", child_env)
    losses = summary["losses"]
    assert summary["steps"] == 30 and summary["world_size"] == 2 and len(losses) == 30
    assert sum(losses[-5:]) / 5 < sum(losses[:5]) / 5 - 0.4, losses
    assert summary["validation_loss"] is not None and summary["validation_perplexity"] > 1
    manager = CheckpointManager(ckpt, s3, keep=2)
    assert manager.steps() == [20, 30] and manager.latest() == 30
    exported = open_store(summary["hf_export"], s3)
    assert {"config.json", "model.safetensors", "tokenizer.json"} <= {o.key for o in exported.list("")}


def test_tiny_bert_learns_masked_lm_with_whole_word_masking(bert_data, s3_endpoint, child_env, tmp_path):
    job = write_job(
        tmp_path / "job.yaml",
        "bert-tiny",
        bert_data,
        s3_endpoint,
        kind="mlm",
        objective={"type": "mlm", "mlm": {"masking": "whole-word"}},
        optimizer={"lr": 3e-3},
        training={"maxSteps": 60, "globalBatchSamples": 16, "microBatchSize": 4},
    )
    summary = _run(job, 2, tmp_path / "run", child_env)
    losses = summary["losses"]
    # About 0.4 nats lower after 60 steps, the exact drop depending on the sample order (and on run-to-run noise
    # of a few hundredths): 0.3 shows learning without sitting on the edge.
    assert sum(losses[-10:]) / 10 < sum(losses[:10]) / 10 - 0.3, losses


def test_one_and_two_processes_follow_the_same_loss_curve(gpt_data, s3_endpoint, child_env, tmp_path):
    job = write_job(tmp_path / "job.yaml", "parity", gpt_data, s3_endpoint, training={"maxSteps": 12})
    one = _run(job, 1, tmp_path / "one", child_env)["losses"]
    two = _run(job, 2, tmp_path / "two", child_env)["losses"]
    assert one == pytest.approx(two, rel=1e-4, abs=1e-5)


def test_mlm_parity_holds_because_masks_follow_the_sample_not_the_rank(bert_data, s3_endpoint, child_env, tmp_path):
    job = write_job(
        tmp_path / "job.yaml",
        "mlm-parity",
        bert_data,
        s3_endpoint,
        kind="mlm",
        objective={"type": "mlm", "mlm": {"masking": "span"}},
        training={"maxSteps": 8},
    )
    one = _run(job, 1, tmp_path / "one", child_env)["losses"]
    two = _run(job, 2, tmp_path / "two", child_env)["losses"]
    assert one == pytest.approx(two, rel=1e-4, abs=1e-5)


def test_causal_lm_loss_at_step_zero_equals_the_loss_transformers_computes(gpt_data, s3_endpoint, child_env, tmp_path):
    job = load_job(write_job(tmp_path / "job.yaml", "hf-parity", gpt_data, s3_endpoint))
    trainer = Trainer(job, DistEnv(), tmp_path / "run")
    with trainer._loader(trainer.train_set, 0, train=True) as loader:
        window = torch.from_numpy(next(loader))
    batch = trainer._batch(window, 0)
    ours = trainer._forward(batch).sums["lm"] / batch["labels"].numel()
    theirs = trainer.raw_model(input_ids=window, labels=window).loss
    assert ours.item() == pytest.approx(theirs.item(), rel=1e-6)


def _wait_for_step(run_dir: Path, step: int, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        log = run_dir / "train.jsonl"
        if log.exists() and any(s >= step for s in _steps(run_dir)):
            return
        time.sleep(0.05)
    raise AssertionError(f"step {step} not reached in {timeout} s")


def _launch(job: Path, nproc: int, run_dir: Path, env: dict[str, str]) -> subprocess.Popen:
    exe = str(Path(sys.executable).with_name("pretrainjob"))
    return subprocess.Popen(
        [exe, "run", str(job), "--local", "--nproc", str(nproc), "--run-dir", str(run_dir)],
        env={**os.environ, **env},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )


@pytest.mark.parametrize("how", ["sigterm", "sigkill"])
def test_a_run_stopped_mid_way_resumes_with_the_same_losses_as_an_uninterrupted_run(
    how, gpt_data, s3_endpoint, child_env, tmp_path
):
    spec = {"training": {"maxSteps": 24}, "model": {"config": {"resid_pdrop": 0.1}}}  # dropout: RNG matters
    reference = write_job(tmp_path / "ref.yaml", "ref", gpt_data, s3_endpoint, **spec)
    expected = _steps_after(_run(reference, 2, tmp_path / "ref", child_env), tmp_path / "ref")

    ckpt = f"s3://trainer-gpt/runs/{tmp_path.name}-{how}"
    job = write_job(
        tmp_path / "job.yaml", "resume", gpt_data, s3_endpoint, checkpoint={"uri": ckpt, "everySteps": 4}, **spec
    )
    first = tmp_path / "first"
    proc = _launch(job, 2, first, child_env)
    _wait_for_step(first, 10)
    if how == "sigterm":  # preemption: the trainer finishes its step, checkpoints and exits 143
        os.killpg(proc.pid, signal.SIGTERM)
        assert proc.wait(60) == EXIT_PREEMPTED
    else:  # a lost node: the workers die at once, no chance to checkpoint; the newest periodic one is used
        ranks = subprocess.run(["pgrep", "-P", str(proc.pid)], capture_output=True, text=True).stdout.split()
        assert len(ranks) == 2
        for pid in ranks:
            os.kill(int(pid), signal.SIGKILL)
        assert proc.wait(60) != 0
    stopped_at = max(_steps(first))
    second = tmp_path / "second"
    # The restart is the same run (in a pod: the same job uid), so it takes over the checkpoint URI's lease, which a
    # killed run leaves behind; its logs go to their own folder to compare them.
    second.mkdir()
    (second / RUN_ID_FILE).write_text((first / RUN_ID_FILE).read_text())
    summary = _run(job, 2, second, child_env)
    resumed = summary["resumed_from"]
    assert resumed is not None and resumed <= stopped_at
    if how == "sigterm":
        assert resumed == stopped_at
    got = _steps(second)
    assert min(got) == resumed + 1 and max(got) == 24
    for step, loss in got.items():
        assert loss == pytest.approx(expected[step], rel=1e-5, abs=1e-6), step


def _ranks(launcher: subprocess.Popen, nproc: int) -> dict[int, int]:
    """{rank: pid} of the trainer processes a `pretrainjob run --local` started."""
    pids = subprocess.run(["pgrep", "-P", str(launcher.pid)], capture_output=True, text=True).stdout.split()
    assert len(pids) == nproc, pids
    out = {}
    for pid in map(int, pids):
        environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        out[int(next(v for v in environ if v.startswith(b"RANK=")).split(b"=")[1])] = pid
    return out


def _exited(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1][0] in "ZX"
    except FileNotFoundError:
        return True


@pytest.mark.slow
def test_a_stopped_rank_is_reported_by_its_peers_watchdog_within_the_stall_timeout(
    gpt_data, s3_endpoint, child_env, tmp_path
):
    timeout = 3
    job = write_job(
        tmp_path / "job.yaml",
        "stall",
        gpt_data,
        s3_endpoint,
        training={"maxSteps": 100_000, "stallTimeoutSeconds": timeout},
        storage={"retryTimeoutSeconds": 2},
    )
    run_dir = tmp_path / "run"
    launcher = _launch(job, 2, run_dir, child_env)
    try:
        _wait_for_step(run_dir, 3)
        ranks = _ranks(launcher, 2)
        os.kill(ranks[1], signal.SIGSTOP)  # a hung rank: alive, silent, holding its peers in the next collective
        stopped = time.monotonic()
        while not _exited(ranks[0]) and time.monotonic() - stopped < 60:
            time.sleep(0.05)
        detected_after = time.monotonic() - stopped
        last_step = max(_steps(run_dir))
    finally:  # the stopped rank would sit out the launcher's 30 s grace period
        children = subprocess.run(["pgrep", "-P", str(launcher.pid)], capture_output=True, text=True).stdout.split()
        for pid in map(int, children):
            with contextlib.suppress(ProcessLookupError):  # rank 0 may exit between pgrep and the kill
                os.kill(pid, signal.SIGKILL)
    assert launcher.wait(60) == EXIT_STALLED
    assert timeout - 1 <= detected_after <= timeout + 5, detected_after
    report = (run_dir / "rank-0.log").read_text()
    assert f"stalled: rank 0 on host {os.uname().nodename} made no progress for" in report
    assert f"rank 1 on host {os.uname().nodename} has not answered for" in report
    reported = int(re.search(r"has not answered for \d+ s \(last step (\d+)\)", report).group(1))
    # Its last heartbeat: at most where it stopped (on a loaded machine it may predate its first step's beat).
    assert 0 <= reported <= last_step
    print(f"stall detected {detected_after:.2f} s after SIGSTOP (stallTimeoutSeconds {timeout})")


def _steps_after(summary: dict, run_dir: Path) -> dict[int, float]:
    assert summary["steps"] == 24
    return _steps(run_dir)


def test_a_partial_checkpoint_is_ignored_on_resume(gpt_data, s3_endpoint, s3, child_env, tmp_path):
    ckpt = f"s3://trainer-gpt/runs/{tmp_path.name}"
    job = write_job(
        tmp_path / "job.yaml",
        "partial",
        gpt_data,
        s3_endpoint,
        training={"maxSteps": 6},
        checkpoint={"uri": ckpt, "everySteps": 3},
    )
    _run(job, 1, tmp_path / "a", child_env)
    # A crash while writing step 9: some objects, no manifest.
    open_store(ckpt, s3).write("step-00000009/__0_0.distcp", b"half")
    job = write_job(
        tmp_path / "job.yaml",
        "partial",
        gpt_data,
        s3_endpoint,
        training={"maxSteps": 8},
        checkpoint={"uri": ckpt, "everySteps": 3},
    )
    assert _run(job, 1, tmp_path / "b", child_env)["resumed_from"] == 6


def test_a_wrong_field_fails_fast_with_its_path(gpt_data, s3_endpoint, child_env, tmp_path):
    job = write_job(tmp_path / "job.yaml", "typo", gpt_data, s3_endpoint, training={"microBatchSzie": 2})
    proc = subprocess.run(
        [sys.executable, "-m", "pretrain_trainer", "--config", str(job)], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 2
    assert "spec.training.microBatchSzie: unknown field; did you mean 'microBatchSize'?" in proc.stderr


def test_a_misspelt_model_setting_is_refused_before_the_model_is_built(gpt_data, s3_endpoint, child_env, tmp_path):
    config = {"n_layers": 2, "n_embd": 64, "n_head": 4, "n_positions": 64}  # n_layers: GPT-2 spells it n_layer
    job = write_job(tmp_path / "job.yaml", "typo", gpt_data, s3_endpoint, model={"config": config})
    proc = subprocess.run(
        [sys.executable, "-m", "pretrain_trainer", "--config", str(job)], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 2
    assert "spec.model.config.n_layers: not a setting of gpt2 (GPT2Config); did you mean 'n_layer'?" in proc.stderr
    assert "step " not in proc.stdout


def test_an_unreachable_bucket_fails_before_training_with_a_clear_message(gpt_data, s3_endpoint, child_env, tmp_path):
    job = write_job(
        tmp_path / "job.yaml", "nobucket", gpt_data, s3_endpoint, data={"train": "s3://no-such-bucket-anywhere/train"}
    )
    started = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "pretrain_trainer", "--config", str(job)], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 2
    assert "s3://no-such-bucket-anywhere" in proc.stderr and "no such bucket" in proc.stderr
    assert "step " not in proc.stdout
    assert time.monotonic() - started < 60


def test_fsdp_follows_the_same_loss_curve_as_ddp(gpt_data, s3_endpoint, child_env, tmp_path):
    ddp = write_job(tmp_path / "ddp.yaml", "ddp", gpt_data, s3_endpoint, training={"maxSteps": 8})
    fsdp = write_job(
        tmp_path / "fsdp.yaml",
        "fsdp",
        gpt_data,
        s3_endpoint,
        training={"maxSteps": 8, "parallelism": "fsdp"},
        checkpoint={"uri": f"s3://trainer-gpt/runs/{tmp_path.name}", "everySteps": 4},
    )
    expected = _run(ddp, 2, tmp_path / "ddp", child_env)["losses"]
    got = _run(fsdp, 2, tmp_path / "fsdp", child_env)
    assert got["losses"] == pytest.approx(expected, rel=1e-4, abs=1e-5)
    assert got["last_checkpoint"].endswith("step-00000008")


def test_activation_checkpointing_gives_the_same_losses(gpt_data, s3_endpoint, child_env, tmp_path):
    plain = write_job(tmp_path / "plain.yaml", "plain", gpt_data, s3_endpoint, training={"maxSteps": 4})
    ckpt = write_job(
        tmp_path / "ac.yaml", "ac", gpt_data, s3_endpoint, training={"maxSteps": 4, "activationCheckpointing": True}
    )
    expected = Trainer(load_job(plain), DistEnv(), tmp_path / "plain").run().losses
    trainer = Trainer(load_job(ckpt), DistEnv(), tmp_path / "ac")
    model = trainer.raw_model
    assert getattr(model, "is_activation_checkpointing", None) or model.is_gradient_checkpointing
    assert trainer.run().losses == pytest.approx(expected, rel=1e-5)


def test_rank_zero_serves_training_metrics_over_http(gpt_data, s3_endpoint, child_env, tmp_path, monkeypatch):
    from urllib.request import urlopen

    from pretrain_trainer.launch import free_port

    port = free_port()
    job = load_job(
        write_job(
            tmp_path / "job.yaml", "metrics", gpt_data, s3_endpoint, training={"maxSteps": 5}, metrics={"port": port}
        )
    )
    trainer = Trainer(job, DistEnv(), tmp_path / "run")
    stop = trainer.metrics.stop
    monkeypatch.setattr(trainer.metrics, "stop", lambda: None)  # keep serving after the run, to scrape it
    try:
        summary = trainer.run()
        text = urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    finally:
        stop()
    values = {
        line.split(" ")[0]: float(line.split(" ")[1]) for line in text.splitlines() if line and not line.startswith("#")
    }
    label = '{job_name="metrics"}'
    assert values[f"pretrain_step{label}"] == 5
    assert values[f"pretrain_max_steps{label}"] == 5
    assert values[f"pretrain_loss{label}"] == pytest.approx(summary.final_loss)
    assert values[f"pretrain_tokens_total{label}"] == 5 * 8 * 32
    assert values[f"pretrain_samples_total{label}"] == 40
    assert values[f"pretrain_storage_read_bytes_total{label}"] > 0
    assert values[f"pretrain_validation_loss{label}"] == pytest.approx(summary.validation_loss)
    assert values[f"pretrain_step_duration_seconds_count{label}"] == 5
    assert not any(k.startswith("pretrain_mfu_ratio{") for k in values), "no MFU without a known peak (CPU)"
