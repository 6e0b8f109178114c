"""`pretrainjob run --local`'s launcher: the environment contract, output, logs and gang semantics, with a stand-in
worker (tests/support/echo_worker.py) that starts in milliseconds."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from pretrain_trainer.launch import run_local, worker_env
from tests.support.checkout import checkout_pythonpath

WORKER = "tests.support.echo_worker"

JOB = """\
apiVersion: pretrain-operator.dev/v1alpha1
kind: PretrainJob
metadata:
  name: tiny
spec:
  tokenizer: {uri: /tmp/tok}
  data: {train: /tmp/shards/train, sequenceLength: 16}
  workers: {replicas: 1, procsPerWorker: 2}
  training: {globalBatchSamples: 8, microBatchSize: 2}
"""


@pytest.fixture
def job(tmp_path) -> str:
    path = tmp_path / "tiny.yaml"
    path.write_text(JOB)
    return str(path)


def env_for_tests(**extra: str) -> dict[str, str]:
    """Make `-m tests.support.echo_worker` importable whatever the working directory."""
    return {"PYTHONPATH": checkout_pythonpath(), **extra}


def env_lines(text: str) -> dict[int, dict]:
    """{rank: the ENV record its worker printed} from prefixed launcher output."""
    out = {}
    for line in text.splitlines():
        prefix, sep, rest = line.partition("] ENV ")
        if sep:
            out[int(prefix.removeprefix("[rank "))] = json.loads(rest)
    return out


def test_worker_env_contract_is_pure_and_complete():
    base = {"PATH": "/bin", "RANK": "7", "TORCHELASTIC_USE_AGENT_STORE": "True", "PET_NNODES": "9"}
    env = worker_env(1, 4, 29555, "run-x", base, cpus=16, run_dir="/runs/x")
    assert base["RANK"] == "7"  # not mutated
    assert env == worker_env(1, 4, 29555, "run-x", base, cpus=16, run_dir="/runs/x")
    assert env == {
        "PATH": "/bin",
        "RANK": "1",
        "LOCAL_RANK": "1",
        "WORLD_SIZE": "4",
        "LOCAL_WORLD_SIZE": "4",
        "GROUP_RANK": "0",
        "GROUP_WORLD_SIZE": "1",
        "ROLE_RANK": "1",
        "ROLE_WORLD_SIZE": "4",
        "ROLE_NAME": "default",
        "MASTER_ADDR": "127.0.0.1",
        "MASTER_PORT": "29555",
        "TORCHELASTIC_RUN_ID": "run-x",
        "TORCHELASTIC_RESTART_COUNT": "0",
        "TORCHELASTIC_MAX_RESTARTS": "0",
        "PET_NNODES": "1",
        "PET_NPROC_PER_NODE": "4",
        "PET_NODE_RANK": "0",
        "PET_MASTER_ADDR": "127.0.0.1",
        "PET_MASTER_PORT": "29555",
        "PYTHONUNBUFFERED": "1",
        "OMP_NUM_THREADS": "4",
        "PRETRAIN_RUN_DIR": "/runs/x",
    }
    assert worker_env(0, 32, 1, "r", {}, cpus=16)["OMP_NUM_THREADS"] == "1"
    assert worker_env(0, 2, 1, "r", {"OMP_NUM_THREADS": "3"}, cpus=16)["OMP_NUM_THREADS"] == "3"
    multi = worker_env(2, 4, 1, "r", {}, nnodes=3, node_rank=2, master_addr="job-worker-0", cpus=8)
    assert (multi["RANK"], multi["LOCAL_RANK"], multi["WORLD_SIZE"], multi["GROUP_RANK"]) == ("10", "2", "12", "2")
    assert (multi["PET_NNODES"], multi["PET_NODE_RANK"], multi["MASTER_ADDR"]) == ("3", "2", "job-worker-0")
    with pytest.raises(ValueError):
        worker_env(4, 4, 1, "r", {})


def test_run_local_gives_each_rank_the_contract_and_logs_its_output(job, tmp_path, capsys):
    run_dir = tmp_path / "run"
    rc = run_local(job, None, run_dir, extra_env=env_for_tests(ECHO_MARK="x", OMP_NUM_THREADS=""), module=WORKER)
    assert rc == 0
    out = capsys.readouterr().out
    records = env_lines(out)
    assert sorted(records) == [0, 1]  # nproc defaults to replicas × procsPerWorker
    port = records[0]["env"]["MASTER_PORT"]
    for rank, rec in records.items():
        assert rec["argv"] == ["--config", job]
        assert rec["env"] == {
            "RANK": str(rank),
            "LOCAL_RANK": str(rank),
            "WORLD_SIZE": "2",
            "LOCAL_WORLD_SIZE": "2",
            "GROUP_RANK": "0",
            "MASTER_ADDR": "127.0.0.1",
            "MASTER_PORT": port,
            "TORCHELASTIC_RUN_ID": records[0]["env"]["TORCHELASTIC_RUN_ID"],
            "PET_NNODES": "1",
            "PET_NPROC_PER_NODE": "2",
            "PET_NODE_RANK": "0",
            "PET_MASTER_ADDR": "127.0.0.1",
            "PET_MASTER_PORT": port,
            "PYTHONUNBUFFERED": "1",
            "OMP_NUM_THREADS": str(max(1, len(os.sched_getaffinity(0)) // 2)),
            "PRETRAIN_RUN_DIR": str(run_dir.resolve()),
            "PRETRAIN_DATA_CACHE_DIR": records[0]["env"]["PRETRAIN_DATA_CACHE_DIR"],  # one cache for the ranks
            "ECHO_MARK": "x",
        }
        assert f"[rank {rank}] rank {rank} says hello on stderr" in out
        assert f"[rank {rank}] rank {rank} done" in out
        log = (run_dir / f"rank-{rank}.log").read_text()
        assert log.startswith("ENV {") and f"rank {rank} done\n" in log and "[rank" not in log
    assert int(port) > 0 and records[0]["env"]["TORCHELASTIC_RUN_ID"].startswith("tiny-")
    assert not os.path.exists(records[0]["env"]["PRETRAIN_DATA_CACHE_DIR"]), "the launcher removed its cache"


def test_a_pods_data_cache_directory_is_passed_to_the_ranks_and_kept(job, tmp_path, capsys):
    cache = tmp_path / "cache"
    cache.mkdir()
    env = env_for_tests(PRETRAIN_DATA_CACHE_DIR=str(cache))
    assert run_local(job, 2, tmp_path / "run", extra_env=env, module=WORKER) == 0
    records = env_lines(capsys.readouterr().out)
    assert {r["env"]["PRETRAIN_DATA_CACHE_DIR"] for r in records.values()} == {str(cache)}
    assert cache.is_dir()


def test_nproc_overrides_the_job(job, tmp_path, capsys):
    assert run_local(job, 3, tmp_path / "run", extra_env=env_for_tests(), module=WORKER) == 0
    records = env_lines(capsys.readouterr().out)
    assert sorted(records) == [0, 1, 2]
    assert {r["env"]["WORLD_SIZE"] for r in records.values()} == {"3"}


def test_a_failing_rank_stops_the_gang_and_sets_the_exit_code(job, tmp_path, capsys):
    run_dir = tmp_path / "run"
    env = env_for_tests(ECHO_FAIL_RANK="1", ECHO_FAIL_AFTER="0.5", ECHO_FAIL_CODE="3", ECHO_SLEEP="60")
    started = time.monotonic()
    rc = run_local(job, 2, run_dir, extra_env=env, module=WORKER, grace_s=10)
    assert rc == 3
    assert time.monotonic() - started < 10  # rank 0 was stopped, not waited for
    captured = capsys.readouterr()
    assert "rank 1 exited with code 3" in captured.err
    assert "[rank 1] rank 1 failing" in captured.out
    log0 = (run_dir / "rank-0.log").read_text()
    assert "SIGTERM" in log0 and "rank 0 done" not in log0  # the sleeper got SIGTERM
    pid0 = env_lines(captured.out)[0]["pid"]
    with pytest.raises(ProcessLookupError):
        os.kill(pid0, 0)


def test_a_rank_ignoring_sigterm_is_killed_after_the_grace_period(job, tmp_path, capsys):
    (tmp_path / "stubborn.py").write_text(
        "import os, signal, sys, time\n"
        "if os.environ['RANK'] == '1':\n"
        "    time.sleep(0.3)\n"
        "    sys.exit(5)\n"
        "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        "print('ignoring SIGTERM', flush=True)\n"
        "time.sleep(60)\n"
    )
    env = env_for_tests(PYTHONPATH=str(tmp_path))
    started = time.monotonic()
    assert run_local(job, 2, tmp_path / "run", extra_env=env, module="stubborn", grace_s=0.5) == 5
    assert 0.5 < time.monotonic() - started < 8
    assert "[rank 0] ignoring SIGTERM" in capsys.readouterr().out


def test_sigterm_to_the_launcher_is_forwarded(job, tmp_path):
    script = (
        "import sys; from pathlib import Path; from pretrain_trainer.launch import run_local; "
        f"sys.exit(run_local({job!r}, 2, Path({str(tmp_path / 'run')!r}), module={WORKER!r}))"
    )
    env = {**os.environ, **env_for_tests(ECHO_SLEEP="60")}
    proc = subprocess.Popen([sys.executable, "-c", script], env=env, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    seen = set()
    while len(seen) < 2:  # both ranks are up
        line = proc.stdout.readline()
        assert line, "launcher exited early"
        if "] ENV " in line:
            seen.add(line.split("]")[0])
    proc.send_signal(signal.SIGTERM)
    rest = proc.stdout.read()
    assert proc.wait(timeout=10) == 128 + signal.SIGTERM
    assert "[rank 0] SIGTERM" in rest and "[rank 1] SIGTERM" in rest
    assert "done" not in rest
