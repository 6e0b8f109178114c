"""Rank 0's Prometheus endpoint scraped over HTTP, all-rank reductions in a real gloo group, and the MFU inputs."""

from __future__ import annotations

import json
import math
import time
import urllib.request

import pytest
import torch
import torch.multiprocessing as mp
from prometheus_client.parser import text_string_to_metric_families

from pretrain_trainer import metrics as m
from pretrain_trainer.contract import PRETRAIN_METRICS_ADDR
from pretrain_trainer.launch import free_port
from pretrain_trainer.metrics import METRIC_NAMES, StepMetrics, TrainerMetrics

STEP = StepMetrics(
    loss=2.5,
    learning_rate=3e-4,
    grad_norm=0.75,
    tokens_per_second=12345.0,
    samples_per_second=12.0,
    mfu=0.42,
    step_seconds=0.3,
    data_wait_seconds=0.002,
    tokens=4096,
    samples=4,
    storage_bytes_read=8192,
)


def scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
        assert resp.status == 200
        return resp.read().decode()


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """{(sample name, sorted labels): value} of an exposition."""
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def value(text: str, name: str, job: str = "demo", **labels: str) -> float:
    return samples(text)[(name, tuple(sorted({"job_name": job, **labels}.items())))]


@pytest.fixture
def served():
    tm = TrainerMetrics("demo", 0, enabled=True)
    port = tm.start()
    assert port > 0
    yield tm, port
    tm.stop()


def test_step_values_counters_and_histograms_over_http(served):
    tm, port = served
    tm.set_max_steps(1000)
    tm.update(1, STEP)
    tm.update(2, StepMetrics(**{**STEP.__dict__, "loss": 2.25, "step_seconds": 7.0}))
    text = scrape(port)

    assert value(text, "pretrain_step") == 2
    assert value(text, "pretrain_max_steps") == 1000
    assert value(text, "pretrain_loss") == 2.25
    assert value(text, "pretrain_learning_rate") == pytest.approx(3e-4)
    assert value(text, "pretrain_grad_norm") == 0.75
    assert value(text, "pretrain_tokens_per_second") == 12345.0
    assert value(text, "pretrain_samples_per_second") == 12.0
    assert value(text, "pretrain_mfu_ratio") == pytest.approx(0.42)
    # Counters accumulate the per-step increments and carry the _total suffix.
    assert 'pretrain_tokens_total{job_name="demo"} 8192.0' in text
    assert value(text, "pretrain_samples_total") == 8
    assert value(text, "pretrain_storage_read_bytes_total") == 16384
    # Histograms: cumulative buckets, sum and count.
    assert value(text, "pretrain_step_duration_seconds_count") == 2
    assert value(text, "pretrain_step_duration_seconds_sum") == pytest.approx(7.3)
    assert value(text, "pretrain_step_duration_seconds_bucket", le="0.25") == 0
    assert value(text, "pretrain_step_duration_seconds_bucket", le="0.5") == 1
    assert value(text, "pretrain_step_duration_seconds_bucket", le="10.0") == 2
    assert value(text, "pretrain_step_duration_seconds_bucket", le="+Inf") == 2
    assert value(text, "pretrain_data_wait_seconds_bucket", le="0.0025") == 2
    assert value(text, "pretrain_data_wait_seconds_bucket", le="0.001") == 0
    # No series is labelled `job` (Prometheus's own scrape label).
    assert all("job" not in dict(labels) for _, labels in samples(text))


def test_checkpoint_validation_and_every_documented_name_is_exposed(served):
    tm, port = served
    tm.set_max_steps(10)
    tm.update(5, STEP)
    before = time.time()
    tm.observe_checkpoint(5, 42.0)
    tm.observe_checkpoint_blocked(0.03)  # a background save: the loop waited only for the copy to host memory
    tm.observe_validation(2.0, math.exp(2.0))
    tm.observe_non_finite()
    tm.observe_objective({"generator_loss": 3.5, "replaced_ratio": 0.12})
    tm.observe_probe(4, "language", 0.8, 0.75, 0.85)
    text = scrape(port)

    assert value(text, "pretrain_checkpoint_save_duration_seconds_count") == 1
    assert value(text, "pretrain_checkpoint_save_duration_seconds_bucket", le="30.0") == 0
    assert value(text, "pretrain_checkpoint_save_duration_seconds_bucket", le="60.0") == 1
    assert value(text, "pretrain_checkpoint_blocked_seconds_bucket", le="0.01") == 0
    assert value(text, "pretrain_checkpoint_blocked_seconds_bucket", le="0.1") == 1
    assert value(text, "pretrain_last_checkpoint_step") == 5
    assert before - 1 <= value(text, "pretrain_last_checkpoint_timestamp_seconds") <= time.time() + 1
    assert value(text, "pretrain_validation_loss") == 2.0
    assert value(text, "pretrain_validation_perplexity") == pytest.approx(math.exp(2.0))
    assert value(text, "pretrain_non_finite_steps_total") == 1
    assert value(text, "pretrain_objective_metric", metric="generator_loss") == 3.5
    assert value(text, "pretrain_objective_metric", metric="replaced_ratio") == 0.12
    assert value(text, "pretrain_probe_accuracy", task="language") == 0.8
    assert value(text, "pretrain_probe_accuracy_bound", task="language", bound="high") == 0.85
    assert value(text, "pretrain_probe_step") == 4

    # METRIC_NAMES is exactly the set of families on /metrics, each with samples (besides the `<name>_created`
    # gauges that prometheus_client adds for counters and histograms).
    families = {
        f.name + ("_total" if f.type == "counter" else ""): f
        for f in text_string_to_metric_families(text)
        if not f.name.endswith("_created")
    }
    assert sorted(families) == sorted(METRIC_NAMES)
    assert all(f.samples for f in families.values())
    assert len(set(METRIC_NAMES)) == len(METRIC_NAMES)


def test_unknown_mfu_is_not_exported(served):
    tm, port = served
    tm.update(1, StepMetrics(**{**STEP.__dict__, "mfu": None}))
    assert "pretrain_mfu_ratio{" not in scrape(port)
    tm.update(2, STEP)
    assert value(scrape(port), "pretrain_mfu_ratio") == pytest.approx(0.42)
    tm.update(3, StepMetrics(**{**STEP.__dict__, "mfu": None}))  # a stale value is withdrawn, not left behind
    assert "pretrain_mfu_ratio{" not in scrape(port)


def test_two_instances_do_not_clash():
    a, b = TrainerMetrics("job-a", 0, enabled=True), TrainerMetrics("job-b", 0, enabled=True)
    with a, b:
        assert a.port != b.port
        a.update(1, STEP)
        b.update(7, StepMetrics(**{**STEP.__dict__, "loss": 9.0}))
        text_a, text_b = scrape(a.port), scrape(b.port)
    assert value(text_a, "pretrain_step", job="job-a") == 1
    assert value(text_b, "pretrain_step", job="job-b") == 7
    assert value(text_b, "pretrain_loss", job="job-b") == 9.0
    assert "job-b" not in text_a and "job-a" not in text_b
    # Own registries: no process/GC collectors of the global registry.
    assert "process_cpu_seconds_total" not in text_a and "python_gc" not in text_a


def test_disabled_metrics_do_nothing_and_listen_nowhere():
    tm = TrainerMetrics("off", 0, enabled=False)
    assert tm.start() == 0
    tm.update(1, STEP)
    tm.observe_checkpoint(1, 1.0)
    tm.observe_validation(1.0, math.e)
    tm.set_max_steps(3)
    tm.stop()
    assert all(s.labels == {} for f in tm.registry.collect() for s in f.samples)


def test_reductions_without_a_process_group_return_the_values():
    values = {"loss": 2.0, "tokens": 7.0}
    assert m.all_reduce_mean(values) == values
    assert m.all_reduce_sum(values) == values
    assert m.all_reduce_mean(values) is not values


def test_reductions_in_a_real_two_process_gloo_group(tmp_path):
    from tests.support.dist_worker import reduce_metrics

    mp.spawn(reduce_metrics, args=(2, free_port(), str(tmp_path)), nprocs=2, join=True)
    results = [json.loads((tmp_path / f"rank-{r}.json").read_text()) for r in range(2)]
    assert results[0] == results[1]
    got = results[0]
    assert got["mean"] == {"loss": 1.5, "grad_norm": 15.0, "lr": pytest.approx(3e-4)}
    assert got["sum"] == {"tokens": 3000, "bytes": 2**41 + 1}  # float64: exact well beyond 2**24
    assert got["empty"] == {}


@pytest.mark.parametrize(
    ("name", "flops"),
    [
        ("NVIDIA H100 80GB HBM3", 989e12),
        ("NVIDIA H100 PCIe", 756e12),
        ("NVIDIA H200", 989e12),
        ("NVIDIA A100-SXM4-80GB", 312e12),
        ("NVIDIA A100-PCIE-40GB", 312e12),
        ("NVIDIA A10G", 125e12),
        ("NVIDIA L4", 121e12),
        ("NVIDIA L40S", 362e12),
        ("NVIDIA GeForce RTX 4090", 165e12),
        ("Tesla T4", None),
    ],
)
def test_peak_flops_by_device_name(monkeypatch, name, flops):
    monkeypatch.delenv("PRETRAIN_PEAK_FLOPS", raising=False)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: name)
    assert m.peak_flops(torch.device("cuda", 0)) == flops


def test_peak_flops_on_cpu_and_override(monkeypatch):
    monkeypatch.delenv("PRETRAIN_PEAK_FLOPS", raising=False)
    assert m.peak_flops(torch.device("cpu")) is None
    monkeypatch.setenv("PRETRAIN_PEAK_FLOPS", "1e12")
    assert m.peak_flops(torch.device("cpu")) == 1e12


def test_model_flops_per_token_follows_palm():
    # GPT-2 small: 124M parameters, 12 layers, hidden 768, 1024 positions.
    assert m.model_flops_per_token(124_000_000, 12, 768, 1024) == 6 * 124e6 + 12 * 12 * 768 * 1024


def test_a_local_run_serves_metrics_on_loopback_only(monkeypatch):
    monkeypatch.delenv(PRETRAIN_METRICS_ADDR, raising=False)
    with TrainerMetrics("local", 0) as metrics:
        assert metrics._server.server_address[0] == "127.0.0.1"
        assert "pretrain_step" in scrape(metrics.port)


def test_in_a_pod_metrics_listen_on_the_address_the_pod_gives(monkeypatch):
    # The operator sets PRETRAIN_METRICS_ADDR to the pod IP (downward API); loopback stands in for it here.
    monkeypatch.setenv(PRETRAIN_METRICS_ADDR, "127.0.0.2")
    with TrainerMetrics("pod", 0) as metrics:
        assert metrics._server.server_address[0] == "127.0.0.2"
