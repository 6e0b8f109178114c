"""`pretrainjob worker` with in-place restarts: the pod outlives a failure of its trainer processes and runs them
again in each restart round the operator asks for.

    rc = run_rounds("job.yaml", node, Path("/tmp/run"), Path("/etc/pretrainjob-pod/restart-round"))

The operator raises the pod's round (an annotation, shown here as `round_file` by a downward-API volume; see
`contract.RESTART_ROUND_ANNOTATION`). The worker:

- runs this node's trainer processes for the round in the file (`launch.run_local`), with a rendezvous of that
  round (run id `<id>-r<round>`: the trainers' store keys never meet the previous round's), and keeps
  `contract.TRAINERS_RUNNING_FILE` in the run folder meanwhile, which the pod's readiness probe reads;
- meanwhile holds standby trainer processes for the next round (`launch.start_standby`): they import the trainer
  (after `__main__.STANDBY_DELAY_S`, not to slow this round's start) and wait, so a restart skips the seconds of
  imports a cold start spends; they cost one idle process per rank (a few hundred MB of host memory each);
- when they fail with a retryable code, removes that file (the pod turns not ready: the operator's signal) and
  waits for a newer round; the trainers then resume from the newest complete checkpoint, as after any restart;
- when the round goes up while they run (another pod's trainers failed, these may hang in a collective), stops
  them at once (SIGKILL: a gang with a dead member cannot checkpoint) and starts the new round;
- ends as before on success (0), on a bad-config exit (EXIT_BAD_CONFIG: a restart cannot help), and on SIGTERM or
  SIGINT to itself or a trainer's EXIT_PREEMPTED (the pod is going away), passing the code on.
"""

from __future__ import annotations

import dataclasses
import functools
import signal
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

from pretrain_trainer.contract import EXIT_BAD_CONFIG, EXIT_OK, EXIT_PREEMPTED, TRAINERS_RUNNING_FILE
from pretrain_trainer.launch import NEW_ROUND, Node, Standby, run_local, start_standby

# Exit codes of run_local that end the pod: done, not worth a retry, or stopped by a signal to the worker.
FINAL_CODES = frozenset({EXIT_OK, EXIT_BAD_CONFIG, EXIT_PREEMPTED, 128 + signal.SIGINT})
POLL_S = 0.1


def read_round(round_file: Path) -> int | None:
    """The round the operator asks for; None while the file cannot be read as a number (the kubelet swaps the
    downward-API files atomically, so this is a hand-made or missing file)."""
    try:
        return int(round_file.read_text().strip())
    except (OSError, ValueError):
        return None


def _newer(round_file: Path, than: int) -> bool:
    return (read_round(round_file) or 0) > than


def run_rounds(
    job_path: str,
    node: Node,
    run_dir: Path,
    round_file: Path,
    *,
    run: Callable[..., int] | None = None,
    standby_of: Callable[..., Standby] | None = start_standby,
    poll_s: float = POLL_S,
) -> int:
    """Run the trainers round after round until they end for good; the exit code (see the module doc). `run`
    and `standby_of` stand in for `launch.run_local` and `launch.start_standby` (tests; None: no standbys)."""
    run = run or run_local
    spare: Standby | None = None
    run_dir.mkdir(parents=True, exist_ok=True)
    running = run_dir / TRAINERS_RUNNING_FILE
    stop: list[int] = []
    previous: dict[int, object] = {}
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGINT, signal.SIGTERM):
            previous[sig] = signal.signal(sig, lambda signum, _frame: stop.append(signum))
    current = read_round(round_file) or 0
    try:
        while True:
            running.write_text(f"{current}\n")
            this = current
            round_node = dataclasses.replace(node, run_id=f"{node.run_id}-r{this}")
            asked_newer = functools.partial(_newer, round_file, this)
            # This round's ranks are the standbys started in the last one; new ones wait for the next round.
            ready, spare = spare, standby_of(job_path, node.nproc, run_dir, node) if standby_of else None
            rc = run(job_path, node.nproc, run_dir, node=round_node, new_round=asked_newer, standby=ready)
            if rc == NEW_ROUND:
                current = read_round(round_file) or current
                _say(f"restart round {current} asked while round {this} ran: restarting the trainers")
                continue
            if rc in FINAL_CODES:
                return rc
            running.unlink(missing_ok=True)
            _say(f"trainers of round {this} exited with code {rc}; waiting for the operator's next restart round")
            while not stop and not asked_newer():
                time.sleep(poll_s)
            if stop:
                return 128 + stop[0]
            current = read_round(round_file) or current
            _say(f"restart round {current}: starting the trainers again in this pod")
    finally:
        if spare is not None:
            spare.kill()
        for sig, handler in previous.items():
            signal.signal(sig, handler)  # type: ignore[arg-type]


def _say(text: str) -> None:
    now = time.time()
    stamp = time.strftime("%H:%M:%S", time.gmtime(now)) + f".{int(now % 1 * 1000):03d}"
    print(f"pretrainjob worker {stamp}: {text}", file=sys.stderr, flush=True)


__all__ = ["FINAL_CODES", "read_round", "run_rounds"]
