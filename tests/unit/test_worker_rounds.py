"""`pretrainjob worker` with in-place restarts (worker_rounds.py): the worker outlives a retryable trainer failure,
waits for the operator's next restart round, runs the trainers again in a rendezvous of that round, stops them at
once when a round is asked while they run, and ends as before on success, bad config or a signal. The trainers are
stood in for by a fake `run` (the round logic) and by the echo worker (run_local's new-round stop)."""

from __future__ import annotations

import functools
import json
import os
import signal
import threading
import time
from pathlib import Path

import pytest

from pretrain_trainer.contract import EXIT_BAD_CONFIG, EXIT_PREEMPTED, TRAINERS_RUNNING_FILE
from pretrain_trainer.launch import NEW_ROUND, Node, run_local, start_standby
from pretrain_trainer.worker_rounds import read_round, run_rounds
from tests.unit.test_launch import JOB, WORKER, env_for_tests, env_lines

NODE = Node(nnodes=2, node_rank=1, nproc=2, master_addr="w-0.job.ns.svc", master_port=29500, run_id="uid-1")


class FakeRun:
    """Stands in for launch.run_local: returns the next exit code (a callable code is called with the call)."""

    def __init__(self, run_dir: Path, *codes: object) -> None:
        self.run_dir, self.codes = run_dir, list(codes)
        self.calls: list[tuple[str, int, bool]] = []  # (run id, nproc, the running file existed)

    def __call__(self, job: str, nproc: int, run_dir: Path, *, node: Node, new_round, standby) -> int:  # type: ignore[no-untyped-def]
        assert run_dir == self.run_dir and standby is None
        self.calls.append((node.run_id, nproc, (run_dir / TRAINERS_RUNNING_FILE).exists()))
        code = self.codes.pop(0)
        return code(new_round) if callable(code) else code  # type: ignore[return-value]


def after(condition, action) -> threading.Thread:  # type: ignore[no-untyped-def]
    """Do `action` once `condition` holds (polled), in a thread."""

    def watch() -> None:
        deadline = time.monotonic() + 30
        while not condition() and time.monotonic() < deadline:
            time.sleep(0.01)
        action()

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    return thread


@pytest.fixture
def round_file(tmp_path: Path) -> Path:
    path = tmp_path / "pod-info" / "restart-round"
    path.parent.mkdir()
    path.write_text("0")
    return path


def test_a_retryable_failure_waits_for_the_next_round_then_runs_the_trainers_again(tmp_path, round_file):
    run_dir = tmp_path / "run"
    run = FakeRun(run_dir, 137, 0)
    running = run_dir / TRAINERS_RUNNING_FILE
    # The operator raises the round once the pod turned not ready (the file its probe reads is gone).
    bump = after(lambda: run.calls and not running.exists(), lambda: round_file.write_text("1"))
    assert run_rounds("job.yaml", NODE, run_dir, round_file, run=run, standby_of=None, poll_s=0.01) == 0
    bump.join()
    assert run.calls == [("uid-1-r0", 2, True), ("uid-1-r1", 2, True)]  # a fresh rendezvous per round


@pytest.mark.parametrize(
    "code", [0, EXIT_BAD_CONFIG, EXIT_PREEMPTED, 128 + signal.SIGINT], ids=["done", "bad-config", "sigterm", "sigint"]
)
def test_success_bad_config_and_signals_end_the_worker_as_before(tmp_path, round_file, code):
    run = FakeRun(tmp_path / "run", code)
    assert run_rounds("job.yaml", NODE, tmp_path / "run", round_file, run=run, standby_of=None, poll_s=0.01) == code
    assert len(run.calls) == 1


def test_a_round_asked_while_the_trainers_run_restarts_them_without_waiting(tmp_path, round_file):
    def hangs_until_a_new_round(new_round) -> int:  # type: ignore[no-untyped-def]
        assert not new_round()
        round_file.write_text("2")  # another pod failed; the operator asks every pod for round 2
        assert new_round()
        return NEW_ROUND

    run = FakeRun(tmp_path / "run", hangs_until_a_new_round, 0)
    assert run_rounds("job.yaml", NODE, tmp_path / "run", round_file, run=run, standby_of=None, poll_s=0.01) == 0
    assert [c[0] for c in run.calls] == ["uid-1-r0", "uid-1-r2"]


def test_sigterm_while_waiting_for_a_round_ends_the_worker(tmp_path, round_file):
    run_dir = tmp_path / "run"
    run = FakeRun(run_dir, 1)
    running = run_dir / TRAINERS_RUNNING_FILE
    handler = signal.getsignal(signal.SIGTERM)
    after(lambda: run.calls and not running.exists(), lambda: os.kill(os.getpid(), signal.SIGTERM))
    assert (
        run_rounds("job.yaml", NODE, run_dir, round_file, run=run, standby_of=None, poll_s=0.01) == 128 + signal.SIGTERM
    )
    assert not running.exists()
    assert signal.getsignal(signal.SIGTERM) is handler  # the worker's own handler is gone again


def test_an_unreadable_round_file_counts_as_no_newer_round(round_file):
    round_file.write_text("garbage")
    assert read_round(round_file) is None
    round_file.unlink()
    assert read_round(round_file) is None


def test_run_local_kills_every_rank_at_once_when_a_new_round_is_asked(tmp_path, capsys):
    job = tmp_path / "tiny.yaml"
    job.write_text(JOB)
    asked = threading.Event()
    threading.Timer(0.5, asked.set).start()
    started = time.monotonic()
    env = env_for_tests(ECHO_SLEEP="60")
    rc = run_local(str(job), 2, tmp_path / "run", extra_env=env, module=WORKER, grace_s=30, new_round=asked.is_set)
    assert rc == NEW_ROUND
    assert time.monotonic() - started < 20  # not the 60 s sleep, nor the 30 s grace
    for record in env_lines(capsys.readouterr().out).values():
        with pytest.raises(ProcessLookupError):
            os.kill(record["pid"], 0)


def test_a_restart_round_runs_on_standby_ranks_started_during_the_round_before(
    tmp_path, round_file, capsys, monkeypatch
):
    job = tmp_path / "tiny.yaml"
    job.write_text(JOB)
    run_dir = tmp_path / "run"
    node = Node(nnodes=1, node_rank=0, nproc=2, master_addr="127.0.0.1", master_port=29500, run_id="uid-1")
    run = functools.partial(run_local, extra_env=env_for_tests(), module=WORKER, grace_s=5)
    standby_of = functools.partial(start_standby, module=WORKER)
    # Round 0's rank 1 fails (the ranks of later rounds do not); the operator then asks for round 1.
    for key, value in env_for_tests(ECHO_FAIL_RANK="1", ECHO_FAIL_RUN_ID_SUFFIX="-r0", ECHO_FAIL_AFTER="0.5").items():
        monkeypatch.setenv(key, value)
    asked: list[float] = []
    running = run_dir / TRAINERS_RUNNING_FILE

    def ask_round_1() -> None:
        asked.append(time.time())
        round_file.write_text("1")

    after(lambda: run_dir.exists() and not running.exists(), ask_round_1)
    assert run_rounds(str(job), node, run_dir, round_file, run=run, standby_of=standby_of, poll_s=0.01) == 0
    out = capsys.readouterr().out.splitlines()
    records = [json.loads(line.partition("] ENV ")[2]) for line in out if "] ENV " in line]
    round_1 = [r for r in records if r["env"]["TORCHELASTIC_RUN_ID"] == "uid-1-r1"]
    assert len(round_1) == 2 and all("--standby" in r["argv"] for r in round_1)
    assert all(r["started"] < asked[0] for r in round_1)  # started before the round was asked: no cold start
