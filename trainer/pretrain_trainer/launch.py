"""`pretrainjob run JOB.yaml --local`: run a job's trainer processes on this machine, as torchrun would in one pod.

    rc = run_local("job.yaml", nproc=2, run_dir=Path("runs/job"))

The launcher starts N processes of `python -m pretrain_trainer --config JOB.yaml` (N: --nproc, else the job's
workers.replicas × workers.procsPerWorker) on one node, each with the environment of `worker_env`: the variables
torchrun gives its workers plus the Kubeflow PyTorchJob-style PET_* ones the operator's pods carry, so the trainer
cannot tell a local run from a pod.

Output: every line a process writes (stdout and stderr, merged in order) goes to this process's stdout prefixed
with `[rank N] ` (rank 0 too, so interleaved lines always say where they came from), and, unprefixed and
byte-exact, to RUN_DIR/rank-N.log (appended to, so a resumed run keeps the earlier attempts' logs).

Gang semantics, as torchrun: when a process exits non-zero the others get SIGTERM, then SIGKILL (to their whole
process group) after a grace period, and run_local returns the first failure's exit code (128 + signal number
for a process killed by a signal). SIGINT (Ctrl-C) or SIGTERM to the launcher is forwarded to the processes as
SIGTERM, like a pod deletion, and run_local returns 128 + that signal's number once they have exited; a second
Ctrl-C kills them at once. The processes run in their own sessions, so a terminal's Ctrl-C reaches only the
launcher and each trainer sees exactly one SIGTERM, which it may use to checkpoint before exiting.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from pretrain_trainer import contract
from pretrain_trainer.data.chunk_cache import private_cache_dir

# Variables a launcher sets; stale values inherited from an outer launcher are dropped before the contract's
# own are set. (TORCHELASTIC_USE_AGENT_STORE in particular would make init_process_group wait for a store that
# no agent hosts.)
_LAUNCHER_VARS = (
    "RANK",
    "LOCAL_RANK",
    "WORLD_SIZE",
    "LOCAL_WORLD_SIZE",
    "GROUP_RANK",
    "GROUP_WORLD_SIZE",
    "ROLE_RANK",
    "ROLE_WORLD_SIZE",
    "ROLE_NAME",
    contract.MASTER_ADDR,
    contract.MASTER_PORT,
)
_LAUNCHER_PREFIXES = ("TORCHELASTIC_", "PET_")

log = logging.getLogger(__name__)

DEFAULT_GRACE_S = 30.0
_POLL_S = 0.05
# run_local's answer when its `new_round` said so: the ranks were stopped for a new restart round (no exit code).
NEW_ROUND = -1


def available_cpus() -> int:
    """CPUs this process may run on (its affinity mask, which containers' cpusets restrict), else cpu_count."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def worker_env(
    rank: int,
    nproc: int,
    master_port: int,
    run_id: str,
    base_env: Mapping[str, str],
    *,
    master_addr: str = "127.0.0.1",
    nnodes: int = 1,
    node_rank: int = 0,
    run_dir: str | None = None,
    cpus: int | None = None,
) -> dict[str, str]:
    """The environment of trainer process `rank` (its local rank: the global rank when nnodes is 1) of `nproc`
    per node, a pure function of its arguments (`cpus` defaults to available_cpus()).

    The result is `base_env` without stale launcher variables, plus:

      RANK              node_rank × nproc + rank          LOCAL_RANK        rank
      WORLD_SIZE        nnodes × nproc                    LOCAL_WORLD_SIZE  nproc
      GROUP_RANK        node_rank                         GROUP_WORLD_SIZE  nnodes
      ROLE_RANK, ROLE_WORLD_SIZE, ROLE_NAME=default       (as torchrun sets them)
      MASTER_ADDR       master_addr                       MASTER_PORT       master_port
      TORCHELASTIC_RUN_ID  run_id                         TORCHELASTIC_RESTART_COUNT, _MAX_RESTARTS  0
      PET_NNODES, PET_NPROC_PER_NODE, PET_NODE_RANK, PET_MASTER_ADDR, PET_MASTER_PORT  (Kubeflow PyTorchJob names)
      PYTHONUNBUFFERED  1
      OMP_NUM_THREADS   base_env's, else max(1, cpus // nproc)
      PRETRAIN_RUN_DIR  run_dir (when given)
    """
    if not 0 <= rank < nproc:
        raise ValueError(f"rank {rank} is not in 0..{nproc - 1}")
    if not 0 <= node_rank < nnodes:
        raise ValueError(f"node_rank {node_rank} is not in 0..{nnodes - 1}")
    env = {k: v for k, v in base_env.items() if k not in _LAUNCHER_VARS and not k.startswith(_LAUNCHER_PREFIXES)}
    global_rank, world = node_rank * nproc + rank, nnodes * nproc
    env.update(
        RANK=str(global_rank),
        LOCAL_RANK=str(rank),
        WORLD_SIZE=str(world),
        LOCAL_WORLD_SIZE=str(nproc),
        GROUP_RANK=str(node_rank),
        GROUP_WORLD_SIZE=str(nnodes),
        ROLE_RANK=str(global_rank),
        ROLE_WORLD_SIZE=str(world),
        ROLE_NAME="default",
        TORCHELASTIC_RUN_ID=run_id,
        TORCHELASTIC_RESTART_COUNT="0",
        TORCHELASTIC_MAX_RESTARTS="0",
        PYTHONUNBUFFERED="1",
    )
    env.update(
        {
            contract.MASTER_ADDR: master_addr,
            contract.MASTER_PORT: str(master_port),
            contract.PET_NNODES: str(nnodes),
            contract.PET_NPROC_PER_NODE: str(nproc),
            contract.PET_NODE_RANK: str(node_rank),
            contract.PET_MASTER_ADDR: master_addr,
            contract.PET_MASTER_PORT: str(master_port),
        }
    )
    if not env.get("OMP_NUM_THREADS"):
        env["OMP_NUM_THREADS"] = str(max(1, (available_cpus() if cpus is None else cpus) // nproc))
    if run_dir is not None:
        env[contract.PRETRAIN_RUN_DIR] = run_dir
    return env


def wait_for_host(host: str, deadline_s: float = 600.0, sleep=time.sleep) -> None:  # type: ignore[no-untyped-def]
    """Resolve `host`, retrying with backoff for up to `deadline_s` seconds."""
    started = time.monotonic()
    delay = 0.5
    while True:
        try:
            socket.getaddrinfo(host, None)
            return
        except socket.gaierror as err:
            waited = time.monotonic() - started
            if waited >= deadline_s:
                raise RuntimeError(
                    f"MASTER_ADDR {host!r} did not resolve within {deadline_s:.0f} s ({err}). Check that worker 0's "
                    "pod is running and that the job's headless Service exists."
                ) from err
            log.info("waiting for rendezvous host %s to resolve (%.0f s so far)", host, waited)
            sleep(min(delay, max(0.0, deadline_s - waited)))
            delay = min(delay * 2, 10.0)


@dataclass(frozen=True)
class Node:
    """This pod's place in a multi-node job, from the PET_* variables the operator sets (torchrun's names)."""

    nnodes: int
    node_rank: int
    nproc: int
    master_addr: str
    master_port: int
    run_id: str

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Node:
        try:
            return cls(
                nnodes=int(env[contract.PET_NNODES]),
                node_rank=int(env[contract.PET_NODE_RANK]),
                nproc=int(env[contract.PET_NPROC_PER_NODE]),
                master_addr=env[contract.PET_MASTER_ADDR],
                master_port=int(env[contract.PET_MASTER_PORT]),
                run_id=env.get(contract.PET_RDZV_ID, "pretrainjob"),
            )
        except KeyError as err:
            raise ValueError(f"pretrainjob worker: {err.args[0]} is not set; the operator's pods set PET_*") from err
        except ValueError as err:
            raise ValueError(f"pretrainjob worker: PET_* variables must be integers where numeric: {err}") from err


def run_worker(job_path: str, env: Mapping[str, str] | None = None, rendezvous_timeout_s: float = 600.0) -> int:
    """What a worker pod runs (`pretrainjob worker`): wait until the rendezvous host resolves, then run this
    node's processes like torchrun with a static rendezvous, but keep their exit codes (torchrun reports any
    failure as 1, which would hide the trainer's 2, bad config, and 143, checkpointed after SIGTERM)."""
    env = os.environ if env is None else env
    node = Node.from_env(env)
    wait_for_host(node.master_addr, rendezvous_timeout_s)
    run_dir = Path(env.get(contract.PRETRAIN_RUN_DIR, "runs/worker"))
    round_file = env.get(contract.PRETRAIN_RESTART_ROUND_FILE)
    if round_file:  # in-place restarts: the pod outlives a trainer failure (worker_rounds.py)
        from pretrain_trainer.worker_rounds import run_rounds

        return run_rounds(job_path, node, run_dir, Path(round_file))
    return run_local(job_path, node.nproc, run_dir, node=node)


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free a moment ago (the OS's pick)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def _exit_code(returncode: int) -> int:
    """Popen's returncode as a shell would report it: -N (killed by signal N) becomes 128 + N."""
    return 128 - returncode if returncode < 0 else returncode


class _Output:
    """Serialises the ranks' lines onto the launcher's stdout (looked up per write, so redirection works)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()

    def write(self, text: str) -> None:
        with self.lock:
            try:
                sys.stdout.write(text)
                sys.stdout.flush()
            except (BrokenPipeError, ValueError):  # stdout closed under us: the log file still has everything
                pass


def _pump(rank: int, stream: IO[bytes], log_path: Path, out: _Output) -> None:
    prefix = f"[rank {rank}] "
    with stream, open(log_path, "ab") as log:
        for raw in iter(stream.readline, b""):
            log.write(raw)
            log.flush()
            line = raw.decode("utf-8", errors="replace")
            out.write(prefix + (line if line.endswith("\n") else line + "\n"))


def _signal_group(proc: subprocess.Popen[bytes], sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, sig)


def _signal_one(proc: subprocess.Popen[bytes], sig: int) -> None:
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(sig)


def _stop_all(procs: list[subprocess.Popen[bytes]], grace_s: float, kill_now: threading.Event) -> None:
    """SIGTERM every running process, wait up to grace_s, then SIGKILL their process groups."""
    for p in procs:
        _signal_one(p, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while any(p.poll() is None for p in procs) and time.monotonic() < deadline and not kill_now.is_set():
        time.sleep(_POLL_S)
    for p in procs:
        # Also the group of a process that has exited: its children (data loader workers, ...) may linger.
        _signal_group(p, signal.SIGKILL)
    for p in procs:
        p.wait()


def _start_rank(
    rank: int, n: int, cmd: list[str], node: Node, base: dict[str, str], run_dir: Path, out: _Output
) -> tuple[subprocess.Popen[bytes], threading.Thread]:
    """Start one rank in its own session, with the contract's environment and its output pumped to its log."""
    env = worker_env(
        rank,
        n,
        node.master_port,
        node.run_id,
        base,
        master_addr=node.master_addr,
        nnodes=node.nnodes,
        node_rank=node.node_rank,
        run_dir=str(run_dir),
    )
    proc = subprocess.Popen(
        cmd,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    assert proc.stdout is not None
    pump = threading.Thread(
        target=_pump,
        args=(rank, proc.stdout, run_dir / f"rank-{rank}.log", out),
        name=f"rank-{rank}-output",
        daemon=True,
    )
    pump.start()
    return proc, pump


@dataclass
class Standby:
    """Trainer processes started ahead of an in-place restart round (`start_standby`): each has its rank's
    environment and has imported the trainer, and waits for `release`, which gives the round's run id."""

    go: Path
    procs: list[subprocess.Popen[bytes]]
    pumps: list[threading.Thread]

    def alive(self) -> bool:
        return all(p.poll() is None for p in self.procs)

    def release(self, run_id: str) -> None:
        tmp = self.go.with_name(self.go.name + ".tmp")
        tmp.write_text(json.dumps({"TORCHELASTIC_RUN_ID": run_id}))
        tmp.replace(self.go)  # atomically: a standby never reads half a file

    def kill(self) -> None:
        for p in self.procs:
            _signal_group(p, signal.SIGKILL)
            p.wait()


def start_standby(
    job_path: str, nproc: int, run_dir: Path, node: Node, module: str = "pretrain_trainer", **_: object
) -> Standby:
    """Start `nproc` ranks of `python -m <module> --config <job_path> --standby GO` for a later round on this node;
    they become that round's ranks when run_local is given them (see __main__: they wait a while, import the
    trainer, then wait for GO)."""
    run_dir = Path(run_dir).resolve()
    run_dir.mkdir(parents=True, exist_ok=True)
    go = run_dir / f"standby-{uuid.uuid4().hex[:8]}.go"
    cmd = [sys.executable, "-m", module, "--config", str(job_path), "--standby", str(go)]
    out, base = _Output(), dict(os.environ)
    started = [_start_rank(rank, nproc, cmd, node, base, run_dir, out) for rank in range(nproc)]
    return Standby(go, [p for p, _ in started], [t for _, t in started])


def _supervise(
    procs: list[subprocess.Popen[bytes]],
    stop_signal: list[int],
    kill_now: threading.Event,
    grace_s: float,
    new_round: Callable[[], bool] | None = None,
) -> int:
    """Wait for the gang: 0 when every rank succeeds; at the first failure (or a signal to the launcher) stop the
    others and return that rank's exit code (or 128 + the signal); NEW_ROUND once `new_round()` says so, after
    killing every rank at once."""
    while True:
        if new_round is not None and new_round():
            _stop_all(procs, 0.0, kill_now)
            return NEW_ROUND
        if stop_signal:
            name = signal.Signals(stop_signal[0]).name
            print(
                f"pretrainjob: {name}: stopping all ranks (SIGTERM; SIGKILL after {grace_s:g} s, or at a "
                "second Ctrl-C)",
                file=sys.stderr,
                flush=True,
            )
            _stop_all(procs, grace_s, kill_now)
            return 128 + stop_signal[0]
        codes = [p.poll() for p in procs]
        failed = next(((r, c) for r, c in enumerate(codes) if c not in (None, 0)), None)
        if failed is not None:
            rank, code = failed
            print(
                f"pretrainjob: rank {rank} exited with code {_exit_code(code)}; stopping the other ranks",
                file=sys.stderr,
                flush=True,
            )
            _stop_all(procs, grace_s, kill_now)
            return _exit_code(code)
        if all(c == 0 for c in codes):
            return 0
        time.sleep(_POLL_S)


def run_local(
    job_path: str,
    nproc: int | None,
    run_dir: Path,
    extra_env: dict[str, str] | None = None,
    module: str = "pretrain_trainer",
    *,
    grace_s: float = DEFAULT_GRACE_S,
    node: Node | None = None,
    new_round: Callable[[], bool] | None = None,
    standby: Standby | None = None,
) -> int:
    """Run `python -m <module> --config <job_path>` as `nproc` ranks here; the exit code of the run (0, the first
    failing rank's, or 128 + the signal that stopped the launcher; NEW_ROUND when `new_round`, polled while the
    ranks run, said to stop them for an in-place restart round). `extra_env` is added to this process's
    environment before worker_env applies the contract (so it can set e.g. OMP_NUM_THREADS or PYTHONPATH, not
    RANK). `node` places them in a multi-node job (a pod); without it they are the whole world, on loopback.
    `standby`: ranks started ahead (start_standby) that become this run's, released with node.run_id.
    Raises ConfigError for an invalid job."""
    from pretrain_trainer.config import load_job

    job = load_job(job_path)
    n = nproc if nproc is not None else job.spec.workers.world_size
    if n < 1:
        raise ValueError(f"--nproc must be at least 1, got {n}")
    run_dir = Path(run_dir).resolve()
    run_dir.mkdir(parents=True, exist_ok=True)
    if node is None:
        node = Node(1, 0, n, "127.0.0.1", free_port(), f"{job.name}-{uuid.uuid4().hex[:8]}")
    port, run_id = node.master_port, node.run_id
    base = {**os.environ, **(extra_env or {})}
    own_cache = None
    if not base.get(contract.PRETRAIN_DATA_CACHE_DIR):
        # The ranks started here share one data cache, as the ranks of a pod share the one the operator mounts.
        own_cache = base[contract.PRETRAIN_DATA_CACHE_DIR] = private_cache_dir()
    cmd = [sys.executable, "-m", module, "--config", str(job_path)]
    print(
        f"pretrainjob: starting {n} process{'es' if n > 1 else ''} of job {job.name} (run {run_id}, node "
        f"{node.node_rank} of {node.nnodes}, rendezvous {node.master_addr}:{port}); logs in {run_dir}",
        file=sys.stderr,
        flush=True,
    )

    stop_signal: list[int] = []  # the signals received, in order
    kill_now = threading.Event()

    def on_signal(signum: int, _frame: object) -> None:
        stop_signal.append(signum)
        if len(stop_signal) > 1:
            kill_now.set()

    previous: dict[int, object] = {}
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGINT, signal.SIGTERM):
            previous[sig] = signal.signal(sig, on_signal)

    out = _Output()
    procs: list[subprocess.Popen[bytes]] = []
    pumps: list[threading.Thread] = []
    try:
        if standby is not None and standby.alive() and len(standby.procs) == n:
            standby.release(run_id)
            procs, pumps = standby.procs, standby.pumps
        else:
            if standby is not None:
                standby.kill()
            for rank in range(n):
                proc, pump = _start_rank(rank, n, cmd, node, base, run_dir, out)
                procs.append(proc)
                pumps.append(pump)
        result = _supervise(procs, stop_signal, kill_now, grace_s, new_round)
    finally:
        # Also on an exception in this function: no trainer outlives its launcher.
        for p in procs:
            if p.poll() is None:
                _signal_group(p, signal.SIGKILL)
                p.wait()
        for t in pumps:
            t.join(timeout=5)  # a grandchild still holding the pipe must not hang the launcher
        for sig, handler in previous.items():
            signal.signal(sig, handler)  # type: ignore[arg-type]
        if own_cache is not None:
            shutil.rmtree(own_cache, ignore_errors=True)
    return result


__all__ = [
    "NEW_ROUND",
    "Node",
    "Standby",
    "available_cpus",
    "free_port",
    "run_local",
    "run_worker",
    "start_standby",
    "wait_for_host",
    "worker_env",
]
