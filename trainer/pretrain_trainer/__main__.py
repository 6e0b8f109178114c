"""The trainer entry point: what every worker process runs, under torchrun, in a pod, or locally.

    python -m pretrain_trainer --config job.yaml                      # one process
    torchrun --nproc-per-node 2 -m pretrain_trainer --config job.yaml  # two processes, gloo on CPU / NCCL on GPU
    pretrainjob run job.yaml --local --nproc 2                        # local workers with a pod's environment
    pretrainjob train --config job.yaml                               # the same as python -m pretrain_trainer

The config is a whole PretrainJob manifest or just its spec. Exit codes (`pretrain_trainer.contract`): 0 done;
EXIT_BAD_CONFIG (2) bad config or data (do not retry: the operator marks the job Failed); EXIT_PREEMPTED (143)
stopped by SIGTERM after a checkpoint (resume later); EXIT_STORAGE_UNAVAILABLE (75) the object store stayed
unavailable through the retry budget and EXIT_STALLED (76) the rank watchdog saw no progress (both restarted, with
the cause in the termination message); anything else is a failure worth a restart.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from pretrain_trainer.contract import (
    EXIT_BAD_CONFIG,
    EXIT_OK,
    EXIT_PREEMPTED,
    EXIT_STORAGE_UNAVAILABLE,
    PRETRAIN_LOG_LEVEL,
    PRETRAIN_RUN_DIR,
    PRETRAIN_TERMINATION_LOG,
)

# A standby trainer (`--standby`) imports the trainer this long after it started.
STANDBY_DELAY_S = 5.0


def add_job_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags of `run_job` (here and in `pretrainjob train`)."""
    parser.add_argument("--config", required=True, help="PretrainJob manifest or spec (YAML)")
    parser.add_argument(
        "--run-dir", help="local folder for logs and the summary (default: $PRETRAIN_RUN_DIR, else runs/<job name>)"
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pretrain_trainer", description=__doc__.split("\n\n")[0])
    add_job_arguments(parser)
    parser.add_argument(
        "--standby",
        metavar="GO_FILE",
        help="start ahead of an in-place restart round: import the trainer, then wait until GO_FILE appears "
        "(the worker writes it with the round's run id); exit if the worker goes away",
    )
    args = parser.parse_args(argv)
    if args.standby:
        overrides = wait_for_go(Path(args.standby))
        if overrides is None:
            return EXIT_PREEMPTED  # the worker is gone: nothing to train for
        os.environ.update(overrides)
    return run_job(args.config, args.run_dir)


def wait_for_go(go: Path, delay_s: float = STANDBY_DELAY_S, poll_s: float = 0.02) -> dict[str, str] | None:
    """A standby's wait: after `delay_s` (so that it does not slow the running round's start), import what
    run_job needs, then wait for `go`; its variables (JSON), or None once the worker that started it is gone."""
    parent, deadline, imported = os.getppid(), time.monotonic() + delay_s, False
    while not go.exists():
        if os.getppid() != parent:
            return None
        if not imported and time.monotonic() >= deadline:
            import pretrain_trainer.trainer  # noqa: F401  the import a cold start spends its first seconds on

            imported = True
        time.sleep(poll_s)
    return {str(k): str(v) for k, v in json.loads(go.read_text()).items()}


def run_job(config: str, run_dir: str | None = None) -> int:
    """Train the job in ``config`` in this process (one rank); returns the process's exit code.

    Both ``python -m pretrain_trainer`` and ``pretrainjob train`` land here.
    """
    from pretrain_trainer.log_secrets import configure_logging

    configure_logging(os.environ.get(PRETRAIN_LOG_LEVEL, "INFO"))
    # Quiet by default: one line per N steps from rank 0, warnings from everyone.
    logging.getLogger("pretrain_trainer.train").setLevel(
        logging.INFO if os.environ.get("RANK", "0") == "0" else logging.WARNING
    )

    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # a progress bar per save_pretrained would flood pod logs
    from pretrain_trainer.checkpoint import CheckpointTampered
    from pretrain_trainer.config import ConfigError, load_job
    from pretrain_trainer.data.shards import ShardError
    from pretrain_trainer.distributed import DistEnv
    from pretrain_trainer.storage import StorageError, StorageUnavailable

    try:
        job = load_job(config)
    except (ConfigError, OSError) as err:
        print(f"pretrain_trainer: invalid config:\n{err}", file=sys.stderr)
        return EXIT_BAD_CONFIG
    folder = Path(run_dir or os.environ.get(PRETRAIN_RUN_DIR) or f"runs/{job.name}")

    from pretrain_trainer.trainer import train

    try:
        summary = train(job, DistEnv.from_env(), folder)
    except StorageUnavailable as err:  # an outage outlasted spec.storage.retryTimeoutSeconds: worth a restart
        error = f"object store unavailable: {err}"
        print(f"pretrain_trainer: job {job.name}: {error}", file=sys.stderr)
        leave_failure_message(error)
        return EXIT_STORAGE_UNAVAILABLE
    except (ValueError, ShardError, StorageError, FileNotFoundError, CheckpointTampered) as err:
        # A tampered checkpoint stays tampered: a restart would only meet it again.
        print(f"pretrain_trainer: cannot train job {job.name}: {err}", file=sys.stderr)
        return EXIT_BAD_CONFIG
    _leave_termination_message(summary)
    return EXIT_PREEMPTED if summary.preempted else EXIT_OK


def leave_failure_message(error: str) -> None:
    """Any rank that stops on a known, retryable cause says why where Kubernetes reads the container's termination
    message (processes of one pod share the file: the last writer's cause stands)."""
    path = os.environ.get(PRETRAIN_TERMINATION_LOG)
    if not path:
        return
    from pretrain_trainer.report import failure_record

    try:
        Path(path).write_text(failure_record(error))
    except OSError as err:
        logging.getLogger(__name__).warning("cannot write the termination message to %s: %s", path, err)


def _leave_termination_message(summary: object) -> None:
    """Global rank 0 writes its summary where Kubernetes reads the container's termination message."""
    path = os.environ.get(PRETRAIN_TERMINATION_LOG)
    if not path or os.environ.get("RANK", "0") != "0":
        return
    from dataclasses import asdict

    from pretrain_trainer.report import termination_record

    try:
        Path(path).write_text(termination_record(asdict(summary)))  # type: ignore[call-overload]
    except OSError as err:  # not fatal: the operator also scrapes progress from /metrics
        logging.getLogger(__name__).warning("cannot write the termination message to %s: %s", path, err)


if __name__ == "__main__":
    sys.exit(main())
