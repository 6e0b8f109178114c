"""Prometheus metrics of a training run, served by rank 0, and the arithmetic behind them (all-rank reductions,
model FLOPs, peak FLOP/s for MFU).

    metrics = TrainerMetrics(job.name, job.spec.metrics.port, enabled=rank == 0 and job.spec.metrics.port != 0)
    metrics.start()
    metrics.set_max_steps(spec.training.max_steps)
    ...
    reduced = all_reduce_mean({"loss": loss, "grad_norm": norm})        # every rank calls it, in the same order
    counts = all_reduce_sum({"tokens": tokens, "bytes": bytes_read})
    metrics.update(step, StepMetrics(loss=reduced["loss"], ...))           # a no-op unless enabled

Each TrainerMetrics has its own CollectorRegistry (not prometheus_client's global one), so several can live in one
process (tests) and the endpoint shows only the trainer's series, not the client library's process/GC
collectors. Every series carries a `job_name` label with the PretrainJob's name; `job` is left alone because
Prometheus sets it to the scrape job's name.
"""

from __future__ import annotations

import contextlib
import math
import os
import re
import threading
import time
from dataclasses import dataclass

import torch
import torch.distributed as dist
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from pretrain_trainer.contract import METRICS_LOCAL_ADDR, PRETRAIN_METRICS_ADDR

# The metric families as they appear on /metrics (counters with their `_total` suffix; histograms also expose
# `<name>_bucket`, `<name>_sum` and `<name>_count`). Dashboards and alerts may use exactly these names.
METRIC_NAMES: tuple[str, ...] = (
    "pretrain_loss",
    "pretrain_learning_rate",
    "pretrain_grad_norm",
    "pretrain_tokens_per_second",
    "pretrain_samples_per_second",
    "pretrain_mfu_ratio",
    "pretrain_step_duration_seconds",
    "pretrain_data_wait_seconds",
    "pretrain_step",
    "pretrain_max_steps",
    "pretrain_tokens_total",
    "pretrain_samples_total",
    "pretrain_storage_read_bytes_total",
    "pretrain_checkpoint_save_duration_seconds",
    "pretrain_checkpoint_blocked_seconds",
    "pretrain_last_checkpoint_step",
    "pretrain_last_checkpoint_timestamp_seconds",
    "pretrain_non_finite_steps_total",
    "pretrain_validation_loss",
    "pretrain_validation_perplexity",
    "pretrain_objective_metric",
    "pretrain_probe_accuracy",
    "pretrain_probe_accuracy_bound",
    "pretrain_probe_step",
)
LABEL = "job_name"

# Steps run from tens of milliseconds (small models, tests) to minutes (large global batches).
STEP_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, math.inf)
# Time a step waited for its batch: ideally ~0 (prefetch keeps up); seconds mean storage is the bottleneck.
DATA_WAIT_BUCKETS = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    math.inf,
)
# From a background save's copy to host memory (milliseconds) to a large save in place (an hour).
CHECKPOINT_BUCKETS = (0.01, 0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0, math.inf)


@dataclass(frozen=True)
class StepMetrics:
    """One optimizer step, already reduced over all ranks (see all_reduce_mean/all_reduce_sum)."""

    loss: float
    learning_rate: float
    grad_norm: float
    tokens_per_second: float
    samples_per_second: float
    mfu: float | None  # model FLOPs utilisation as a ratio 0..1; None (unknown peak, e.g. CPU): not exported
    step_seconds: float
    data_wait_seconds: float
    tokens: int  # trained in this step, all ranks: added to pretrain_tokens_total
    samples: int  # added to pretrain_samples_total
    storage_bytes_read: int  # read from storage since the last update, all ranks


class TrainerMetrics:
    """The trainer's metrics and their HTTP endpoint. With enabled=False (ranks other than 0, or
    `metrics.port: 0`) every method is a cheap no-op and nothing listens."""

    def __init__(self, job: str, port: int, enabled: bool = True, addr: str | None = None) -> None:
        """`addr`: where /metrics listens; default $PRETRAIN_METRICS_ADDR (the pod IP in a pod), else loopback."""
        self.job = job
        self.port = port
        self.enabled = enabled
        self.addr = addr or os.environ.get(PRETRAIN_METRICS_ADDR) or METRICS_LOCAL_ADDR
        self.registry = CollectorRegistry(auto_describe=True)
        self._server = None
        self._thread: threading.Thread | None = None
        r, labels = self.registry, (LABEL,)

        def gauge(name: str, doc: str) -> Gauge:
            return Gauge(name, doc, labels, registry=r)

        def counter(name: str, doc: str) -> Counter:
            # prometheus_client appends `_total` to counter names itself.
            return Counter(name.removesuffix("_total"), doc, labels, registry=r)

        def histogram(name: str, doc: str, buckets: tuple[float, ...]) -> Histogram:
            return Histogram(name, doc, labels, registry=r, buckets=buckets)

        self._loss = gauge("pretrain_loss", "Training loss of the last step, mean over ranks.")
        self._objective = Gauge(
            "pretrain_objective_metric",
            "The objective's own numbers of the last step, by `metric` (ELECTRA: generator_loss, "
            "generator_accuracy, discriminator_loss, discriminator_accuracy, replaced_ratio).",
            (LABEL, "metric"),
            registry=r,
        )
        self._lr = gauge("pretrain_learning_rate", "Learning rate of the last step.")
        self._grad_norm = gauge("pretrain_grad_norm", "Global gradient norm before clipping, last step.")
        self._tps = gauge("pretrain_tokens_per_second", "Training throughput over all ranks, tokens per second.")
        self._sps = gauge("pretrain_samples_per_second", "Training throughput over all ranks, samples per second.")
        self._mfu = gauge(
            "pretrain_mfu_ratio",
            "Model FLOPs utilisation (0-1): model FLOP/s over the GPUs' dense "
            "bf16 peak. Absent where the peak is unknown (CPU, unlisted GPUs).",
        )
        self._step_seconds = histogram(
            "pretrain_step_duration_seconds", "Wall time of an optimizer step.", STEP_BUCKETS
        )
        self._data_wait = histogram(
            "pretrain_data_wait_seconds", "Time a step waited for its input batch.", DATA_WAIT_BUCKETS
        )
        self._step = gauge("pretrain_step", "Optimizer steps completed.")
        self._max_steps = gauge("pretrain_max_steps", "Optimizer steps the job trains for.")
        self._tokens = counter(
            "pretrain_tokens_total",
            "Tokens trained on, all ranks (restarts from 0 when the trainer restarts; use increase()/rate()).",
        )
        self._samples = counter("pretrain_samples_total", "Samples trained on, all ranks.")
        self._bytes_read = counter(
            "pretrain_storage_read_bytes_total", "Bytes read from storage by the data loader, all ranks."
        )
        self._ckpt_seconds = histogram(
            "pretrain_checkpoint_save_duration_seconds", "Wall time of a checkpoint save.", CHECKPOINT_BUCKETS
        )
        self._ckpt_blocked = histogram(
            "pretrain_checkpoint_blocked_seconds",
            "Time the training loop was blocked by a checkpoint save: the copy to host memory for a background "
            "save (checkpoint.async), the whole save otherwise.",
            CHECKPOINT_BUCKETS,
        )
        self._ckpt_step = gauge("pretrain_last_checkpoint_step", "Step of the last checkpoint saved.")
        self._ckpt_time = gauge(
            "pretrain_last_checkpoint_timestamp_seconds", "Unix time the last checkpoint finished saving."
        )
        self._non_finite = counter(
            "pretrain_non_finite_steps_total",
            "Steps whose loss or gradient norm was NaN or infinite (not applied: stopped, skipped or rolled back).",
        )
        self._val_loss = gauge("pretrain_validation_loss", "Loss on the validation set at the last evaluation.")
        self._val_ppl = gauge("pretrain_validation_perplexity", "exp(validation loss) at the last evaluation.")
        self._probe = Gauge(
            "pretrain_probe_accuracy",
            "Test accuracy of the last downstream probe (spec.evaluation.probes), by `task`.",
            (LABEL, "task"),
            registry=r,
        )
        self._probe_bound = Gauge(
            "pretrain_probe_accuracy_bound",
            "The Wilson 95 % interval of pretrain_probe_accuracy, by `task` and `bound` (low, high).",
            (LABEL, "task", "bound"),
            registry=r,
        )
        self._probe_step = gauge("pretrain_probe_step", "The step of the last downstream probe.")

    # ------------------------------------------------------------------------------------------ serving

    def start(self) -> int:
        """Serve /metrics on addr:port (port 0: a free port); returns the port, or 0 when disabled."""
        if not self.enabled:
            return 0
        if self._server is None:
            self._server, self._thread = start_http_server(self.port, addr=self.addr, registry=self.registry)
            self.port = self._server.server_port
        return self.port

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            if self._thread is not None:
                self._thread.join(timeout=5)
            self._server = self._thread = None

    def __enter__(self) -> TrainerMetrics:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ---------------------------------------------------------------------------------------- recording

    def update(self, step: int, values: StepMetrics) -> None:
        if not self.enabled:
            return
        job = self.job
        self._step.labels(job).set(step)
        self._loss.labels(job).set(values.loss)
        self._lr.labels(job).set(values.learning_rate)
        self._grad_norm.labels(job).set(values.grad_norm)
        self._tps.labels(job).set(values.tokens_per_second)
        self._sps.labels(job).set(values.samples_per_second)
        if values.mfu is None:
            with contextlib.suppress(KeyError):  # withdraw a stale value rather than leave it behind
                self._mfu.remove(job)
        else:
            self._mfu.labels(job).set(values.mfu)
        self._step_seconds.labels(job).observe(values.step_seconds)
        self._data_wait.labels(job).observe(values.data_wait_seconds)
        self._tokens.labels(job).inc(values.tokens)
        self._samples.labels(job).inc(values.samples)
        self._bytes_read.labels(job).inc(values.storage_bytes_read)

    def observe_checkpoint(self, step: int, seconds: float) -> None:
        if not self.enabled:
            return
        self._ckpt_seconds.labels(self.job).observe(seconds)
        self._ckpt_step.labels(self.job).set(step)
        self._ckpt_time.labels(self.job).set(time.time())

    def observe_objective(self, values: dict[str, float]) -> None:
        """The objective's own per-step numbers (`Objective.metrics`, e.g. ELECTRA's generator_loss)."""
        if not self.enabled:
            return
        for name, value in values.items():
            self._objective.labels(self.job, name).set(value)

    def observe_probe(self, step: int, task: str, accuracy: float, low: float, high: float) -> None:
        if not self.enabled:
            return
        self._probe.labels(self.job, task).set(accuracy)
        self._probe_bound.labels(self.job, task, "low").set(low)
        self._probe_bound.labels(self.job, task, "high").set(high)
        self._probe_step.labels(self.job).set(step)

    def observe_checkpoint_blocked(self, seconds: float) -> None:
        if self.enabled:
            self._ckpt_blocked.labels(self.job).observe(seconds)

    def observe_validation(self, loss: float, perplexity: float) -> None:
        if not self.enabled:
            return
        self._val_loss.labels(self.job).set(loss)
        self._val_ppl.labels(self.job).set(perplexity)

    def observe_non_finite(self) -> None:
        if self.enabled:
            self._non_finite.labels(self.job).inc()

    def set_max_steps(self, n: int) -> None:
        if self.enabled:
            self._max_steps.labels(self.job).set(n)


# --------------------------------------------------------------------------------------- all-rank values


def _all_reduce(values: dict[str, float], mean: bool, group: dist.ProcessGroup | None) -> dict[str, float]:
    if not values or not dist.is_available() or not dist.is_initialized():
        return dict(values)
    keys = sorted(values)  # the same order on every rank, whatever order each built its dict in
    backend = str(dist.get_backend(group))
    # gloo (also in a mixed "cpu:gloo,cuda:nccl" group) reduces CPU tensors; NCCL only CUDA ones.
    if "nccl" in backend and "gloo" not in backend:
        device = torch.device("cuda", torch.cuda.current_device())
    else:
        device = torch.device("cpu")
    t = torch.tensor([float(values[k]) for k in keys], dtype=torch.float64, device=device)
    dist.all_reduce(t, op=dist.ReduceOp.SUM, group=group)
    if mean:
        t /= dist.get_world_size(group)
    return dict(zip(keys, t.tolist(), strict=True))


def all_reduce_mean(values: dict[str, float], group: dist.ProcessGroup | None = None) -> dict[str, float]:
    """The mean of each value over all ranks, in one all-reduce (float64). Without an initialised process
    group, the values unchanged. A collective: every rank must call it with the same keys."""
    return _all_reduce(values, True, group)


def all_reduce_sum(values: dict[str, float], group: dist.ProcessGroup | None = None) -> dict[str, float]:
    """The sum of each value over all ranks, in one all-reduce (float64); see all_reduce_mean."""
    return _all_reduce(values, False, group)


# ------------------------------------------------------------------------------------------------- MFU

# Dense (no structured sparsity) bf16 tensor-core peak FLOP/s per GPU, from NVIDIA's product datasheets: the
# "BF16 Tensor Core" figures, halved where the sheet quotes them "with sparsity" (H100 SXM 1,979 → 989.5 T,
# H100 PCIe 1,513 → 756 T, H100 NVL 1,671 → 835 T, H200 as H100 SXM, A100 312 T, A10 125 T (the A10G is AWS's
# variant of the A10; its sheet figure is used), L4 242 → 121 T, L40S 733 → 362 T, RTX 4090 (Ada whitepaper,
# FP32 accumulate) 165 T). First match wins, so the specific names come before the generic ones. Override with
# PRETRAIN_PEAK_FLOPS (FLOP/s) for a GPU not listed here or a clock-limited part.
PEAK_BF16_FLOPS: tuple[tuple[str, float], ...] = (
    (r"\bH100\b.*\bPCIe\b", 756e12),
    (r"\bH100\b.*\bNVL\b", 835e12),
    (r"\bH100\b", 989e12),  # SXM5: "NVIDIA H100 80GB HBM3"
    (r"\bGH200\b", 989e12),
    (r"\bH200\b", 989e12),
    (r"\bA100\b", 312e12),
    (r"\bA10G\b", 125e12),
    (r"\bL40S\b", 362e12),
    (r"\bL4\b", 121e12),
    (r"\bRTX 4090\b", 165e12),
)


def peak_flops(device: torch.device) -> float | None:
    """Dense bf16 peak FLOP/s of one `device`, or None for a CPU or a GPU not in PEAK_BF16_FLOPS."""
    override = os.environ.get("PRETRAIN_PEAK_FLOPS")
    if override:
        return float(override)
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    for pattern, flops in PEAK_BF16_FLOPS:
        if re.search(pattern, name, re.IGNORECASE):
            return flops
    return None


def model_flops_per_token(num_params: int, num_layers: int, hidden: int, seq_len: int) -> float:
    """Training FLOPs per token (forward and backward), as in the PaLM paper's appendix B:
    6·N for the parameter matmuls (2 forward, 4 backward per parameter) plus 12·L·H·T for attention's
    QKᵀ and attention-times-V matmuls over a sequence of T tokens (counted in full, not halved for causal
    masking). N should count the parameters that take part in matmuls: the token embedding when it is tied to
    the output layer (nanoGPT's convention), not learned position embeddings (a lookup). Recomputation for
    activation checkpointing is not counted: MFU measures useful model work, not hardware utilisation.

    MFU = tokens_per_second × model_flops_per_token / (world_size × peak_flops).
    """
    return 6.0 * num_params + 12.0 * num_layers * hidden * seq_len


def seq2seq_flops_per_token(
    *,
    encoder_params: int,
    decoder_params: int,
    encoder_layers: int,
    decoder_layers: int,
    hidden: int,
    encoder_length: int,
    decoder_length: int,
) -> float:
    """`model_flops_per_token` of an encoder–decoder, per encoder token: the encoder's parameters work on
    encoder_length tokens and the decoder's (with the LM head: the shared embedding) on decoder_length, per
    sample; attention adds 12·H per layer per query–key pair: encoder self-attention (Le²), decoder
    self-attention (Ld²) and cross-attention (Ld·Le)."""
    le, ld = encoder_length, decoder_length
    matmuls = 6.0 * (encoder_params * le + decoder_params * ld)
    attention = 12.0 * hidden * (encoder_layers * le * le + decoder_layers * (ld * ld + ld * le))
    return (matmuls + attention) / le


__all__ = [
    "METRIC_NAMES",
    "PEAK_BF16_FLOPS",
    "StepMetrics",
    "TrainerMetrics",
    "all_reduce_mean",
    "all_reduce_sum",
    "model_flops_per_token",
    "peak_flops",
    "seq2seq_flops_per_token",
]
