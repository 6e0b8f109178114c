"""Full-size object-store brown-outs during training: how long the trainer takes to notice the store is back, and how
long it waits before it gives up with the retryable exit code.

    .venv/bin/python benchmarks/storage_brownout.py                          # a 30 s outage against the 300 s default
    .venv/bin/python benchmarks/storage_brownout.py --outage 600 --budget 300  # ends in exit 75 after ~300 s

A tiny GPT-2 trains 12 steps in this process on the bundled corpus, with data and checkpoints in an embedded moto
S3 endpoint behind the tests' fault-injecting proxy (`tests/support/s3.py`). The outage starts at the first checkpoint
upload (step 4); during it every request fails with 503 ServiceUnavailable, data reads included. A reference run
without an outage gives the losses to compare with. Figures only, nothing asserted; the CI tests
(`tests/integration/test_brownout.py`) prove the same behaviour with a 3 s outage and a 10 s budget.

Printed: the outage and the budget; the outcome (completed, or the exit code and the termination message); for a
completed run, the time from the end of the outage to the first request the store answered ("time to resume": the
retry backoff's share) and to the next finished step (which adds the rest of that step), and whether every loss
equals the reference run's; for a failed run, the time from the start of the outage to the exit.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the fault proxy and the job builders live with the tests

from pretrain_trainer.__main__ import run_job  # noqa: E402
from pretrain_trainer.config import load_job  # noqa: E402
from pretrain_trainer.contract import ERROR, PRETRAIN_TERMINATION_LOG  # noqa: E402
from pretrain_trainer.distributed import DistEnv  # noqa: E402
from pretrain_trainer.storage import StorageOptions  # noqa: E402
from pretrain_trainer.storage.local_s3 import start_local_s3  # noqa: E402
from pretrain_trainer.tokenizer.train import TokenizerTrainingSpec  # noqa: E402
from pretrain_trainer.trainer import train  # noqa: E402
from tests.support.jobs import make_dataset, write_job  # noqa: E402
from tests.support.s3 import TEST_ACCESS_KEY_ID, TEST_SECRET_ACCESS_KEY, FaultyProxy  # noqa: E402

BUCKET = "s3://bench-brownout"


def _job(folder: Path, name: str, data: object, endpoint: str, budget: int) -> Path:
    return write_job(
        folder / f"{name}.yaml",
        name,
        data,
        endpoint,
        training={"maxSteps": 12, "stallTimeoutSeconds": budget + 60},
        checkpoint={"uri": f"{BUCKET}/runs/{folder.name}-{name}", "everySteps": 4},
        storage={"retryTimeoutSeconds": budget},
    )


def _step_times(run_dir: Path) -> list[float]:
    lines = [json.loads(line) for line in (run_dir / "train.jsonl").read_text().splitlines()]
    return [r["time"] for r in lines if "loss" in r and "event" not in r]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--outage", type=float, default=30.0, help="seconds the store stays down")
    parser.add_argument("--budget", type=int, default=300, help="spec.storage.retryTimeoutSeconds")
    args = parser.parse_args()
    os.environ.update(AWS_ACCESS_KEY_ID=TEST_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY=TEST_SECRET_ACCESS_KEY)
    os.environ.update(AWS_CONFIG_FILE=os.devnull, AWS_SHARED_CREDENTIALS_FILE=os.devnull, PRETRAIN_LOG_LEVEL="ERROR")
    with ExitStack() as stack:
        endpoint = stack.enter_context(start_local_s3())
        proxy = stack.enter_context(FaultyProxy(endpoint))
        folder = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="brownout-")))
        options = StorageOptions.from_env(endpoint_url=endpoint, region="us-east-1")
        data = make_dataset(BUCKET, "bundled", TokenizerTrainingSpec(model="bpe", vocab_size=512), options)
        reference = train(load_job(_job(folder, "ref", data, proxy.url, args.budget)), DistEnv(), folder / "ref")

        proxy.outage(args.outage, starting_on=f"{folder.name}-out/step-")
        record = folder / "termination-log"
        os.environ[PRETRAIN_TERMINATION_LOG] = str(record)
        code = run_job(str(_job(folder, "out", data, proxy.url, args.budget)), str(folder / "out"))
        ended = time.monotonic()
        assert proxy.outage_started is not None, "the outage never started"
        started_wall = time.time() - (ended - proxy.outage_started)
        print(f"outage {args.outage:g} s, storage.retryTimeoutSeconds {args.budget}")
        if code == 0:
            summary = json.loads((folder / "out" / "summary.json").read_text())
            outage_end = proxy.outage_started + args.outage
            answered = min(r.at for r in proxy.requests if r.fault is None and r.at >= outage_end)
            stepped = min(t for t in _step_times(folder / "out") if t > started_wall + args.outage)
            print(f"outcome: completed {summary['steps']} steps; exit code 0")
            print(f"time to resume (end of outage to the first answered request): {answered - outage_end:.2f} s")
            print(f"end of outage to the next finished step: {stepped - started_wall - args.outage:.2f} s")
            print(f"losses identical to the uninterrupted run: {summary['losses'] == reference.losses}")
        else:
            print(f"outcome: exit code {code} after {ended - proxy.outage_started:.1f} s of outage")
            print(f"termination message: {json.loads(record.read_text())[ERROR][:300]}")


if __name__ == "__main__":
    main()
