"""Operator scale: create many PretrainJobs against the Kubernetes API emulation and time the operator.

    .venv/bin/python benchmarks/operator_reconcile.py                  # 100 and 500 jobs, 4 workers each
    .venv/bin/python benchmarks/operator_reconcile.py --jobs 50 --workers 8

The operator runs as its own process (`pretrain-operator --all-namespaces`, logged in through a kubeconfig that
points at the emulator), as in a cluster. For each round the script creates the jobs as fast as it can, then
prints: create → all-pods-created latency per job (p50, p99, max), reconcile throughput (reconciles per second
from the operator's own reconcile histogram), the operator's own CPU time per job (from /proc/PID/stat, apart from
the emulator's, which this process's CPU time shows), its resident memory, and the load average. The latencies
include the emulator's cost (one Python process serving every request, on the same cores).
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pretrain_operator import naming
from pretrain_trainer.contract import API_VERSION, PLURAL
from pretrain_trainer.launch import free_port
from tests.support.kube_api import ApiServer


def manifest(name: str, namespace: str, workers: int) -> dict:
    return {
        "apiVersion": API_VERSION,
        "kind": "PretrainJob",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "tokenizer": {"uri": "s3://bench/tok.json"},
            "data": {"train": "s3://bench/train", "sequenceLength": 512},
            "workers": {"replicas": workers},
            "training": {"maxSteps": 1000, "globalBatchSamples": 8 * workers, "microBatchSize": 8},
        },
    }


def scrape(port: int) -> dict[str, float]:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    out = {}
    for line in text.splitlines():
        if line.startswith("pretrain_operator_reconcile_duration_seconds_") and "{" not in line:
            key, value = line.rsplit(" ", 1)
            out[key] = float(value)
    return out


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (fields 14 and 15 of /proc/PID/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def own_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def run_round(api: ApiServer, metrics_port: int, pid: int, n_jobs: int, workers: int, namespace: str) -> None:
    api.create("v1", "namespaces", None, {"metadata": {"name": namespace}})
    before = scrape(metrics_port)
    cpu_before, own_before = cpu_seconds(pid), own_cpu_seconds()
    created: dict[str, float] = {}
    started = time.perf_counter()
    for i in range(n_jobs):
        name = f"job-{i:04d}"
        api.create(API_VERSION, PLURAL, namespace, manifest(name, namespace, workers))
        created[name] = time.perf_counter()
    submit_s = time.perf_counter() - started
    done: dict[str, float] = {}
    deadline = time.perf_counter() + 600
    while len(done) < n_jobs and time.perf_counter() < deadline:
        counts: dict[str, int] = {}
        for pod in api.stored("v1", "pods", namespace):  # read in-process: no HTTP or JSON on the emulator
            job = pod["metadata"]["labels"][naming.JOB_LABEL]
            counts[job] = counts.get(job, 0) + 1
        now = time.perf_counter()
        for job, count in counts.items():
            if count == workers and job not in done:
                done[job] = now
        time.sleep(0.2)
    total_s = time.perf_counter() - started
    cpu_done, own_done = cpu_seconds(pid), own_cpu_seconds()
    after = scrape(metrics_port)
    latencies = [done[j] - created[j] for j in done]
    reconciles = after["pretrain_operator_reconcile_duration_seconds_count"] - before.get(
        "pretrain_operator_reconcile_duration_seconds_count", 0.0
    )
    busy = after["pretrain_operator_reconcile_duration_seconds_sum"] - before.get(
        "pretrain_operator_reconcile_duration_seconds_sum", 0.0
    )
    print(
        f"{n_jobs} jobs × {workers} workers: submitted in {submit_s:.1f} s; all pods of "
        f"{len(done)}/{n_jobs} jobs created after {total_s:.1f} s"
    )
    if latencies:
        print(
            f"  create → all pods created: p50 {statistics.median(latencies) * 1000:.0f} ms, "
            f"p99 {percentile(latencies, 0.99) * 1000:.0f} ms, max {max(latencies) * 1000:.0f} ms"
        )
    print(
        f"  reconciles: {reconciles:.0f} in {total_s:.1f} s = {reconciles / total_s:.1f}/s; "
        f"mean reconcile {busy / max(reconciles, 1) * 1000:.1f} ms"
    )
    print(
        f"  operator CPU until all pods existed: {cpu_done - cpu_before:.1f} s = "
        f"{(cpu_done - cpu_before) / n_jobs * 1000:.0f} ms per job; emulator + this client: "
        f"{own_done - own_before:.1f} s = {(own_done - own_before) / n_jobs * 1000:.0f} ms per job"
    )
    print(f"  operator resident memory: {rss_mib(pid):.0f} MiB; load average {os.getloadavg()[0]:.1f}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, nargs="+", default=[100, 500], help="jobs per round")
    parser.add_argument("--workers", type=int, default=4, help="worker pods per job")
    parser.add_argument("--resync", type=float, default=60.0, help="operator --resync-seconds")
    args = parser.parse_args()
    with ApiServer() as api, tempfile.TemporaryDirectory() as tmp:
        kubeconfig = Path(tmp) / "kubeconfig"
        kubeconfig.write_text(
            "apiVersion: v1\nkind: Config\ncurrent-context: emu\n"
            f"clusters: [{{name: emu, cluster: {{server: '{api.url}'}}}}]\n"
            "users: [{name: emu, user: {}}]\n"
            "contexts: [{name: emu, context: {cluster: emu, user: emu}}]\n"
        )
        metrics_port = free_port()
        cmd = [
            str(Path(sys.executable).parent / "pretrain-operator"),
            "--all-namespaces",
            f"--metrics-port={metrics_port}",
            "--health-port=0",
            f"--resync-seconds={args.resync}",
        ]
        env = {**os.environ, "KUBECONFIG": str(kubeconfig)}
        log = Path(tmp, "operator.log").open("w")  # noqa: SIM115 (closed with the process, below)
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=log)
        try:
            for _ in range(100):
                try:
                    scrape(metrics_port)
                    break
                except OSError:
                    time.sleep(0.1)
            time.sleep(1.0)  # kopf's initial discovery and watches
            print(f"operator idle: {rss_mib(proc.pid):.0f} MiB resident")
            for n, n_jobs in enumerate(args.jobs):
                run_round(api, metrics_port, proc.pid, n_jobs, args.workers, f"bench-{n}")
        finally:
            proc.terminate()
            proc.wait(30)
            log.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
