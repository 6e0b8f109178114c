"""A stand-in trainer for launcher tests: `python -m tests.support.echo_worker --config JOB.yaml`.

Prints one `ENV {json}` line with its command line, pid, start time and the launcher contract's variables, a line
on stderr, then acts on ECHO_* variables: ECHO_FAIL_RANK=r makes rank r exit with ECHO_FAIL_CODE (default 3)
after ECHO_FAIL_AFTER seconds (only in runs whose TORCHELASTIC_RUN_ID ends with ECHO_FAIL_RUN_ID_SUFFIX, when
set); ECHO_SLEEP=s makes the other ranks sleep s seconds first. On SIGTERM it prints `SIGTERM` and exits 0 (a
trainer that checkpoints and stops). With `--standby GO` it first waits for the file GO and takes its variables,
as the trainer does. Imports nothing heavy, so it starts in milliseconds.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time

KEYS = (
    "RANK",
    "LOCAL_RANK",
    "WORLD_SIZE",
    "LOCAL_WORLD_SIZE",
    "GROUP_RANK",
    "MASTER_ADDR",
    "MASTER_PORT",
    "TORCHELASTIC_RUN_ID",
    "PET_NNODES",
    "PET_NPROC_PER_NODE",
    "PET_NODE_RANK",
    "PET_MASTER_ADDR",
    "PET_MASTER_PORT",
    "PYTHONUNBUFFERED",
    "OMP_NUM_THREADS",
    "PRETRAIN_RUN_DIR",
    "PRETRAIN_DATA_CACHE_DIR",
    "ECHO_MARK",
)


def on_sigterm(_signum: int, _frame: object) -> None:
    print("SIGTERM", flush=True)
    sys.exit(0)


def main() -> int:
    started = time.time()
    signal.signal(signal.SIGTERM, on_sigterm)
    if "--standby" in sys.argv:  # started ahead of a round, as the trainer's --standby: wait for the go file
        go = sys.argv[sys.argv.index("--standby") + 1]
        while not os.path.exists(go):
            time.sleep(0.01)
        with open(go) as f:
            os.environ.update(json.load(f))
    env = {k: os.environ.get(k) for k in KEYS}
    print("ENV " + json.dumps({"argv": sys.argv[1:], "pid": os.getpid(), "started": started, "env": env}))
    print(f"rank {env['RANK']} says hello on stderr", file=sys.stderr)
    rank = int(os.environ["RANK"])
    failing_run = os.environ.get("TORCHELASTIC_RUN_ID", "").endswith(os.environ.get("ECHO_FAIL_RUN_ID_SUFFIX", ""))
    if os.environ.get("ECHO_FAIL_RANK") == str(rank) and failing_run:
        time.sleep(float(os.environ.get("ECHO_FAIL_AFTER", "0")))
        print(f"rank {rank} failing", flush=True)
        return int(os.environ.get("ECHO_FAIL_CODE", "3"))
    time.sleep(float(os.environ.get("ECHO_SLEEP", "0")))
    print(f"rank {rank} done", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
