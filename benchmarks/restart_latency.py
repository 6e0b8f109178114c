"""Failure → every rank training again, for an in-place restart and for a gang recreation, in one run.

    .venv/bin/python benchmarks/restart_latency.py               # 2 workers × 1 process, a tiny GPT-2 on CPU
    .venv/bin/python benchmarks/restart_latency.py --replicas 3

The end-to-end harness of `tests/integration/test_operator_e2e.py`, in this process: the Kubernetes API emulation,
the kopf operator, the kubelet fixture running each pod as local processes, and a loopback S3 endpoint holding the
data and the checkpoints (`tests/support/restarts.py`). One job trains; after its first checkpoint the trainer
process of the last worker is SIGKILLed inside its pod (the operator restarts the trainers in place: same pods,
a new rendezvous round), then, once every rank trains again, that pod is force-deleted as a lost node's pods are
(the operator recreates the gang). Each recovery is timed from the failure to the first training step after the
resume, from rank 0's train.jsonl, and split at the resume (the trainers' start-up and checkpoint load end there).

Printed: both figures, their ratio, the checkpoint step each resumed from, and whether the pods kept their UIDs.
The harness has no scheduling, image pulls or container creation, which a recreation pays for in a cluster and an
in-place restart does not: the recreated figure is a floor.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pretrain_trainer.contract import API_VERSION, PLURAL
from pretrain_trainer.launch import free_port
from pretrain_trainer.storage import StorageOptions
from pretrain_trainer.storage.local_s3 import start_local_s3
from pretrain_trainer.tokenizer.train import TokenizerTrainingSpec
from tests.support.jobs import make_dataset, write_job
from tests.support.operator_run import wait_for
from tests.support.restarts import NS, SECRET, Recovery, checkpointed, crash_trainer, e2e_cluster, lose_pod
from tests.support.s3 import TEST_ACCESS_KEY_ID, TEST_SECRET_ACCESS_KEY


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--replicas", type=int, default=2, help="worker pods (1 trainer process each)")
    parser.add_argument("--steps", type=int, default=1_000_000, help="training.maxSteps (more than both failures take)")
    parser.add_argument("--verbose", action="store_true", help="also print the workers' and operator's timeline")
    args = parser.parse_args()
    with start_local_s3() as endpoint, tempfile.TemporaryDirectory() as tmp:
        options = StorageOptions(
            endpoint_url=endpoint,
            region="us-east-1",
            access_key_id=TEST_ACCESS_KEY_ID,
            secret_access_key=TEST_SECRET_ACCESS_KEY,
        )
        tokenizer = TokenizerTrainingSpec(model="bpe", vocab_size=300)
        dataset = make_dataset("s3://bench-restarts", "tiny", tokenizer, options)
        name = "restarts"
        path = write_job(
            Path(tmp) / "job.yaml",
            name,
            dataset,
            endpoint,
            workers={"replicas": args.replicas, "terminationGraceSeconds": 60},
            storage={"credentialsSecret": SECRET},
            metrics={"port": free_port()},
            checkpoint={"uri": f"s3://bench-restarts/runs/{name}", "everySteps": 5},
            training={"maxSteps": args.steps, "logEverySteps": 1000, "evalEverySteps": 0},
        )
        with e2e_cluster(Path(tmp) / "nodes") as (api, kubelet, op):
            api.create(API_VERSION, PLURAL, NS, yaml.safe_load(path.read_text()))
            started = time.monotonic()
            wait_for("the first checkpoint", lambda: checkpointed(kubelet, api, name) >= 5, 300, op)
            print(f"job {name}: {args.replicas} workers, first checkpoint after {time.monotonic() - started:.1f} s")
            try:
                in_place = crash_trainer(api, kubelet, op, name, args.replicas)
                report(in_place)
                recreated = lose_pod(api, kubelet, op, name, args.replicas)
                report(recreated)
                if args.verbose:
                    for i in range(args.replicas):
                        lines = kubelet.logs(f"{name}-worker-{i}").splitlines()
                        print(f"--- {name}-worker-{i}:", *[ln for ln in lines if "pretrainjob" in ln], sep="\n")
                    for e in api.list("v1", "events", NS):
                        print(e.get("firstTimestamp") or e.get("eventTime"), e["reason"], e["message"][:150])
            except AssertionError:
                status = (api.get(API_VERSION, PLURAL, NS, name) or {}).get("status")
                events = [(e["reason"], e["message"]) for e in api.list("v1", "events", NS)]
                print(f"status: {status}\nevents: {events}", file=sys.stderr)
                for i in range(args.replicas):
                    print(f"--- {name}-worker-{i}:\n{kubelet.logs(f'{name}-worker-{i}')[-3000:]}", file=sys.stderr)
                raise
    print(
        f"failure -> every rank training again: in place {in_place.seconds:.2f} s, recreated "
        f"{recreated.seconds:.2f} s; recreation takes {recreated.seconds / in_place.seconds:.2f}x as long"
    )


def report(r: Recovery) -> None:
    kept = sum(r.uids_after[p] == r.uids_before[p] for p in r.uids_before)
    print(
        f"{r.path:>9}: {r.seconds:6.2f} s to every rank training again (resume done at {r.resumed_seconds:.2f} s), "
        f"resumed from step {r.resumed_from}, {kept}/{len(r.uids_before)} pods kept their UID"
    )


if __name__ == "__main__":
    main()
