"""Where a training run's progress goes, from one place: rank 0's Prometheus endpoint, the JSON-lines log
`<run_dir>/train.jsonl`, the console line every `logEverySteps` steps, and at the end `<run_dir>/summary.json`.

    reporter = Reporter(job.name, run_dir, metrics_port=..., is_main=rank == 0, max_steps=..., log_every_steps=...,
                        world_size=..., flops_per_token=..., peak_flops=...)
    reporter.start()
    reporter.step(StepReport(step=1, loss=..., ...))          # once per optimizer step, on every rank
    reporter.validation(step, loss, perplexity)                # once per evaluation
    reporter.probe(step, result, seconds)                      # once per downstream probe task run (rank 0)
    reporter.checkpoint(step, uri, seconds)                    # once per checkpoint saved
    summary = reporter.finish(steps=..., tokens_seen=..., ...)  # builds the Summary, writes summary.json

Every rank keeps the same record (losses are already all-reduced), so every rank returns the same Summary (but for
the probes, which only rank 0 runs); only rank 0 (`is_main`) writes, prints and serves metrics.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pretrain_trainer.metrics import StepMetrics, TrainerMetrics
from pretrain_trainer.report import LOG_FILE, SUMMARY_FILE

if TYPE_CHECKING:
    from pretrain_trainer.probe import ProbeResult

log = logging.getLogger("pretrain_trainer.train")


@dataclass
class Summary:
    """What a run did; written to summary.json, returned by `train()`, and the source of the termination message."""

    job: str
    steps: int
    final_loss: float
    tokens_seen: int
    tokens_per_second: float
    seconds: float
    world_size: int
    num_params: int
    validation_loss: float | None = None
    validation_perplexity: float | None = None
    last_checkpoint: str | None = None
    last_checkpoint_step: int | None = None
    hf_export: str | None = None
    resumed_from: int | None = None
    preempted: bool = False
    losses: list[float] = field(default_factory=list)
    probes: dict[str, dict[str, float]] = field(default_factory=dict)
    """The last downstream probe per task (rank 0's): step, accuracy, low, high (the 95 % interval)."""


@dataclass(frozen=True)
class StepReport:
    """One optimizer step as the loop measured it; the loss and grad norm already reduced over all ranks."""

    step: int
    loss: float
    learning_rate: float
    grad_norm: float
    seconds: float
    data_wait_seconds: float
    storage_bytes_read: int  # this rank's bytes read during the step
    tokens: int  # trained in this step, all ranks
    samples: int  # trained in this step, all ranks
    first_sample: int = 0  # the global position of its first sample: the step trained first_sample..+samples-1
    objective_metrics: dict[str, float] = field(default_factory=dict)  # the objective's own (`Objective.metrics`)


class Reporter:
    """The one sink of a run's progress: Prometheus, train.jsonl, the console, summary.json (see the module doc)."""

    def __init__(
        self,
        job: str,
        run_dir: Path,
        *,
        metrics_port: int,
        is_main: bool,
        max_steps: int,
        log_every_steps: int,
        world_size: int,
        flops_per_token: float,
        peak_flops: float | None,
    ) -> None:
        """`flops_per_token` and `peak_flops` (per device, None when unknown) give MFU; `metrics_port` 0 serves
        no /metrics."""
        self.job = job
        self.run_dir = run_dir
        self.is_main = is_main
        self.max_steps = max_steps
        self.log_every_steps = log_every_steps
        self.world_size = world_size
        self.flops_per_token = flops_per_token
        self.peak_flops = peak_flops
        self.metrics = TrainerMetrics(job, metrics_port, enabled=is_main and metrics_port > 0)
        self._losses: list[float] = []
        self._validation: tuple[float, float] | None = None
        self._checkpoint: tuple[int, str] | None = None
        self._probes: dict[str, dict[str, float]] = {}

    def start(self) -> None:
        """Create the run folder and, on rank 0, serve /metrics."""
        self.run_dir.mkdir(parents=True, exist_ok=True)
        if self.is_main:
            self.metrics.start()
            self.metrics.set_max_steps(self.max_steps)

    def mfu(self, tokens_per_second: float) -> float | None:
        """Model FLOPs utilisation of all ranks at this throughput; None where the peak is unknown (CPU)."""
        if not self.peak_flops:
            return None
        return self.flops_per_token * tokens_per_second / (self.peak_flops * self.world_size)

    def step(self, report: StepReport) -> None:
        self._losses.append(report.loss)
        if not self.is_main:
            return
        tps = report.tokens / report.seconds
        mfu = self.mfu(tps)
        self.metrics.update(
            report.step,
            StepMetrics(
                loss=report.loss,
                learning_rate=report.learning_rate,
                grad_norm=report.grad_norm,
                tokens_per_second=tps,
                samples_per_second=report.samples / report.seconds,
                mfu=mfu,
                step_seconds=report.seconds,
                data_wait_seconds=report.data_wait_seconds,
                tokens=report.tokens,
                samples=report.samples,
                storage_bytes_read=report.storage_bytes_read,
            ),
        )
        self.metrics.observe_objective(report.objective_metrics)
        self.event(
            {
                "step": report.step,
                "loss": report.loss,
                "first_sample": report.first_sample,
                "lr": report.learning_rate,
                "grad_norm": report.grad_norm,
                "tokens_per_second": tps,
                "mfu": mfu,
                "step_seconds": report.seconds,
                "data_wait_seconds": report.data_wait_seconds,
                **report.objective_metrics,
            }
        )
        if report.step % self.log_every_steps == 0 or report.step == 1:
            mfu_text = f" | mfu {mfu:.1%}" if mfu is not None else ""
            print(
                f"step {report.step:>6}/{self.max_steps} | loss {report.loss:.4f} | lr {report.learning_rate:.2e} | "
                f"grad {report.grad_norm:.3f} | {tps:,.0f} tok/s{mfu_text} | "
                f"data wait {report.data_wait_seconds / report.seconds:.0%}",
                flush=True,
            )

    def validation(self, step: int, loss: float, perplexity: float) -> None:
        self._validation = (loss, perplexity)
        if not self.is_main:
            return
        self.metrics.observe_validation(loss, perplexity)
        self.event({"event": "validation", "step": step, "loss": loss, "perplexity": perplexity})
        print(f"validation at step {step}: loss {loss:.4f} | perplexity {perplexity:.2f}", flush=True)

    def probe(self, step: int, result: ProbeResult, seconds: float) -> None:
        """A downstream probe of the model at `step` (`probe_runs.TrainingProbes`; rank 0's)."""
        self._probes[result.task] = {"step": step, "accuracy": result.accuracy, "low": result.low, "high": result.high}
        if not self.is_main:
            return
        self.metrics.observe_probe(step, result.task, result.accuracy, result.low, result.high)
        self.event({"event": "probe", **asdict(result), "step": step, "seconds": round(seconds, 3)})
        print(f"probe at step {step}: {result.format()} ({seconds:.1f} s)", flush=True)

    def checkpoint(self, step: int, uri: str, seconds: float) -> None:
        self._checkpoint = (step, uri)
        self.metrics.observe_checkpoint(step, seconds)
        self.event({"event": "checkpoint", "step": step, "uri": uri, "seconds": round(seconds, 3)})

    def non_finite(self, record: dict[str, Any]) -> None:
        """A step whose loss or grad norm was not finite, not applied (`nonfinite.NonFiniteGuard` calls this)."""
        self.metrics.observe_non_finite()
        self.event({"event": "non_finite", **record})
        if self.is_main:
            log.warning("non-finite step, not applied: %s", record)

    def rewind(self, steps_kept: int) -> None:
        """After a rollback: forget the losses of all but the first `steps_kept` steps of this run (they are
        trained again)."""
        del self._losses[max(0, steps_kept) :]

    def finish(
        self,
        *,
        steps: int,
        tokens_seen: int,
        tokens_this_run: int,
        seconds: float,
        num_params: int,
        resumed_from: int | None,
        preempted: bool,
        hf_export: str | None,
    ) -> Summary:
        """The run's Summary from what was reported and these final figures; rank 0 writes summary.json. Stops
        serving /metrics."""
        validation_loss, validation_perplexity = self._validation or (None, None)
        checkpoint_step, checkpoint_uri = self._checkpoint or (None, None)
        summary = Summary(
            job=self.job,
            steps=steps,
            final_loss=self._losses[-1] if self._losses else float("nan"),
            tokens_seen=tokens_seen,
            tokens_per_second=tokens_this_run / seconds if seconds else 0.0,
            seconds=seconds,
            world_size=self.world_size,
            num_params=num_params,
            validation_loss=validation_loss,
            validation_perplexity=validation_perplexity,
            last_checkpoint=checkpoint_uri,
            last_checkpoint_step=checkpoint_step,
            hf_export=hf_export,
            resumed_from=resumed_from,
            preempted=preempted,
            losses=list(self._losses),
            probes=dict(self._probes),
        )
        if self.is_main:
            (self.run_dir / SUMMARY_FILE).write_text(json.dumps(asdict(summary), indent=1))
        self.metrics.stop()
        return summary

    def event(self, record: dict[str, Any]) -> None:
        """One line of train.jsonl (rank 0 only), stamped with the time."""
        if not self.is_main:
            return
        with open(self.run_dir / LOG_FILE, "a") as f:
            f.write(json.dumps({"time": round(time.time(), 3), **record}) + "\n")


__all__ = ["Reporter", "StepReport", "Summary"]
