"""The training loop: one optimizer step per global batch, gradient accumulation over micro batches, the loss
normalised over every label token of the global batch so that any world size gives the same numbers.

Loss normalisation: each rank sums the token losses of its micro batches and divides by the number of label
tokens in the whole global batch (all-reduced before the backward passes), times the world size, because DDP and
FSDP average gradients over ranks. A 1-process and a 2-process run of the same job therefore follow the same loss
curve, and masked LM (whose label count varies) is weighted per token, not per micro batch.

Masking is seeded per sample by its global position, so masks do not depend on the world size or on restarts.
The objective (`objectives.build_objective`) builds the model, the batches and the loss parts; the loop is the same
for all of them.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import math
import signal
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from torch.nn.parallel import DistributedDataParallel

from pretrain_trainer import distributed
from pretrain_trainer.batches import job_loader
from pretrain_trainer.checkpoint import CheckpointManager
from pretrain_trainer.checkpoint.async_save import CheckpointSaver, Saved
from pretrain_trainer.config import ConfigError, Job, PretrainJobSpec
from pretrain_trainer.data.loader import StreamingLoader
from pretrain_trainer.data.shards import ShardSet
from pretrain_trainer.distributed import DistEnv
from pretrain_trainer.metrics import TrainerMetrics, all_reduce_sum, peak_flops
from pretrain_trainer.model import max_positions
from pretrain_trainer.nonfinite import OK, ROLLBACK, NonFiniteError, NonFiniteGuard, RollBack, finite
from pretrain_trainer.objectives import build_objective
from pretrain_trainer.objectives.base import ForwardOutput
from pretrain_trainer.optim import build_optimizer, build_scheduler
from pretrain_trainer.preflight import check_data, check_token_ids, model_config_problems
from pretrain_trainer.probe_runs import TrainingProbes
from pretrain_trainer.reporting import Reporter, StepReport, Summary
from pretrain_trainer.resume import CheckpointSession, Progress, trainer_state
from pretrain_trainer.storage import StorageOptions
from pretrain_trainer.token_roles import TokenRoles
from pretrain_trainer.tokenizer.load import LoadedTokenizer, load_tokenizer
from pretrain_trainer.watchdog import HeartbeatBoard, StallWatchdog, exit_stalled

log = logging.getLogger("pretrain_trainer.train")


@dataclass
class StepResult:
    loss: float
    grad_norm: float
    stop: bool
    """Whether any rank was asked to stop."""
    metrics: dict[str, float]
    """The objective's own per-step numbers (`Objective.metrics`)."""


def _accumulate(into: dict[str, float], values: dict[str, float]) -> None:
    for key, value in values.items():
        into[key] = into.get(key, 0.0) + value


class StopFlag:
    """Set by SIGTERM (preemption, suspend, pod deletion): finish the step, checkpoint, exit."""

    def __init__(self) -> None:
        self.requested = False

    def install(self) -> None:
        signal.signal(signal.SIGTERM, self._handle)

    def _handle(self, signum: int, frame: object) -> None:
        self.requested = True


class Trainer:
    """One worker's part of a run: built from the job spec on every rank, then `run()` trains to maxSteps."""

    def __init__(self, job: Job, env: DistEnv, run_dir: Path) -> None:
        self.job = job
        self.spec: PretrainJobSpec = job.spec
        self.env = env
        self.run_dir = run_dir
        # A misspelt model setting fails before the rendezvous, not after minutes of setup on every rank.
        if problems := model_config_problems(self.spec.model):
            raise ConfigError(problems)
        self.device = distributed.init(env, collective_timeout_s=2.0 * self.spec.training.stall_timeout_seconds)
        self.options = StorageOptions.from_spec(self.spec.storage)
        self.seq = self.spec.data.sequence_length
        self.global_samples = self.spec.training.batch_samples(self.seq)
        self.tokens_per_step = self.global_samples * self.seq
        self.micro = self.spec.training.micro_batch_size
        self.accum = self.global_samples // (self.micro * env.world_size)
        if self.accum * self.micro * env.world_size != self.global_samples:
            raise ValueError(
                f"spec.training: {self.global_samples} samples per step cannot be split into micro batches of "
                f"{self.micro} over a world of {env.world_size}"
            )
        self._open_data()
        self.checkpoints = self._checkpoint_manager()
        # checkpoint.async: the loop waits only for the copy to host memory (a collective: every rank builds it).
        self.saver = self.checkpoints and CheckpointSaver(self.checkpoints, background=self.spec.checkpoint.async_)
        self._build_model()
        self.reporter = Reporter(
            job.name,
            run_dir,
            metrics_port=self.spec.metrics.port,
            is_main=env.is_main,
            max_steps=self.spec.training.max_steps,
            log_every_steps=self.spec.training.log_every_steps,
            world_size=env.world_size,
            flops_per_token=self.objective.flops_per_token(self.raw_model, self.info, self.seq),
            peak_flops=peak_flops(self.device),
        )
        self.stop = StopFlag()
        fsdp = self.spec.training.parallelism == "fsdp" and env.world_size > 1  # see probe_runs' module doc
        self.probes = TrainingProbes(self.spec.evaluation.probes, self.tokenizer.tokenizer, env.is_main, fsdp)

    @property
    def metrics(self) -> TrainerMetrics:
        """Rank 0's Prometheus metrics (a disabled no-op elsewhere), owned by the reporter."""
        return self.reporter.metrics

    # ------------------------------------------------------------------------------------------------ setup

    def _open_data(self) -> None:
        """Tokenizer, objective and shard sets. Runs before the model is built: a wrong URI or tokenizer fails in
        seconds, not minutes."""
        self.tokenizer: LoadedTokenizer = load_tokenizer(self.spec.tokenizer.uri, self.options)
        roles = TokenRoles.from_tokenizer(self.tokenizer.tokenizer, eos_id=self.tokenizer.eos_id)
        self.objective = build_objective(self.spec, roles)
        self.train_set = ShardSet.open(self.spec.data.train, self.options, self.tokenizer.fingerprint)
        self.val_set = (
            ShardSet.open(self.spec.data.validation, self.options, self.tokenizer.fingerprint)
            if self.spec.data.validation
            else None
        )
        check_data(
            self.train_set,
            self.val_set,
            sequence_length=self.objective.raw_length(self.spec),
            causal=self.objective.causal,
            global_batch_samples=self.global_samples,
            eval_batches=self.spec.training.eval_batches,
            vocab_size=self.tokenizer.vocab_size,
        )

    def _checkpoint_manager(self) -> CheckpointManager | None:
        if not self.spec.checkpoint.uri:
            return None
        return CheckpointManager(
            self.spec.checkpoint.uri,
            self.options,
            keep=self.spec.checkpoint.keep,
            rank=self.env.rank,
            world_size=self.env.world_size,
            every_steps=self.spec.checkpoint.every_steps,
        )

    def _build_model(self) -> None:
        """The model (seeded, so every rank starts identical), its wrapper, optimizer and scheduler."""
        torch.manual_seed(self.spec.training.seed)
        model, self.info = self.objective.build_model(
            self.tokenizer.tokenizer, self.tokenizer.model_token_ids(), self.options
        )
        positions = max_positions(model)
        if positions is not None and self.seq > positions:
            raise ValueError(f"spec.data.sequenceLength: {self.seq} exceeds the model's {positions} positions")
        self.raw_model = model.to(self.device)
        if self.spec.training.activation_checkpointing:
            # transformers 5 renamed gradient checkpointing; 4.x only has the old name.
            enable = getattr(self.raw_model, "activation_checkpointing_enable", None)
            (enable or self.raw_model.gradient_checkpointing_enable)()
        self.model = self._wrap(self.raw_model)
        self.optimizer = build_optimizer(self.raw_model, self.spec.optimizer, self.device)
        self.scheduler = build_scheduler(self.optimizer, self.spec.optimizer, self.spec.training.max_steps)
        self.autocast = self._autocast_dtype()

    def _wrap(self, model: torch.nn.Module) -> torch.nn.Module:
        if self.spec.training.parallelism == "fsdp" and self.env.world_size > 1:
            from torch.distributed.fsdp import fully_shard

            for module in model.modules():
                if type(module).__name__.endswith(("Block", "DecoderLayer", "Layer")) and module is not model:
                    fully_shard(module)
            fully_shard(model)
            wrapped: torch.nn.Module = model
        elif self.env.world_size > 1:
            ids = [self.device.index] if self.device.type == "cuda" else None
            wrapped = DistributedDataParallel(model, device_ids=ids)
        else:
            wrapped = model
        if self.spec.training.compile:
            wrapped = torch.compile(wrapped)
        return wrapped

    def _autocast_dtype(self) -> torch.dtype | None:
        precision = self.spec.training.precision
        if precision == "bf16" or (precision == "auto" and self.device.type == "cuda"):
            return torch.bfloat16
        return None

    def _loader(self, shards: ShardSet, samples_consumed: int, train: bool) -> StreamingLoader:
        return job_loader(
            self.spec,
            shards,
            samples_consumed=samples_consumed,
            train=train,
            rank=self.env.rank,
            world_size=self.env.world_size,
            local_rank=self.env.local_rank,
        )

    # --------------------------------------------------------------------------------------------- one step

    def _batch(self, window: torch.Tensor, first_position: int) -> dict[str, torch.Tensor]:
        return self.objective.batch(window, first_position)

    def _forward(self, batch: dict[str, torch.Tensor]) -> ForwardOutput:
        ctx = (
            torch.autocast(self.device.type, dtype=self.autocast)
            if self.autocast is not None
            else contextlib.nullcontext()
        )
        with ctx:
            return self.objective.forward(self.model, {k: v.to(self.device) for k, v in batch.items()})

    def train_step(self, window: torch.Tensor, first_position: int, stop_requested: bool) -> StepResult:
        """One optimizer step on this rank's part of a global batch. The stop flag rides on the loss all-reduce,
        so agreeing on it costs no extra collective. A step whose loss or grad norm is not finite is not applied
        (nor is the scheduler stepped)."""
        batch = self._batch(window, first_position)
        totals = all_reduce_sum(self.objective.counts(batch))
        sums: dict[str, float] = {}
        self.model.train()
        for i in range(self.accum):
            micro = {k: v[i * self.micro : (i + 1) * self.micro] for k, v in batch.items()}
            last = i == self.accum - 1
            sync = contextlib.nullcontext() if last or not hasattr(self.model, "no_sync") else self.model.no_sync()
            with sync:
                out = self._forward(micro)
                (self.objective.loss(out.sums, totals) * self.env.world_size).backward()
            _accumulate(sums, {k: v.detach().double().item() for k, v in out.sums.items()})
            _accumulate(sums, {f"stat:{k}": v for k, v in out.stats.items()})
        clip = self.spec.optimizer.grad_clip
        grad_norm = torch.nn.utils.clip_grad_norm_(self.raw_model.parameters(), clip if clip > 0 else float("inf"))
        if hasattr(grad_norm, "full_tensor"):  # FSDP2: a DTensor sharded like the parameters
            grad_norm = grad_norm.full_tensor()
        # The loss all-reduce comes before the update: a non-finite loss on any rank, or a non-finite global grad
        # norm (the same on every rank), keeps every rank from applying the step, with no collective of its own.
        reduced = all_reduce_sum({**sums, "stop": float(stop_requested)})
        parts = {k: v for k, v in reduced.items() if k in self.objective.weights}
        stats = {k.removeprefix("stat:"): v for k, v in reduced.items() if k.startswith("stat:")}
        loss, norm = float(self.objective.loss(parts, totals)), float(grad_norm)
        if finite(loss, norm):
            self.optimizer.step()
            self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        return StepResult(loss, norm, reduced["stop"] > 0, self.objective.metrics(parts, totals, stats))

    @torch.no_grad()
    def evaluate(self) -> tuple[float, float] | None:
        """Validation loss and perplexity over up to eval_batches global batches (the same ones every time)."""
        if self.val_set is None:
            return None
        self.model.eval()
        sums: dict[str, float] = {}
        with self._loader(self.val_set, 0, train=False) as loader:
            for n, window in enumerate(loader):
                if n >= self.spec.training.eval_batches:
                    break
                position = n * self.global_samples + self.env.rank * window.shape[0]
                check_token_ids(window, self.tokenizer.vocab_size, f"spec.data.validation: {self.val_set.store.uri}")
                batch = self._batch(torch.from_numpy(window), position)
                _accumulate(sums, {f"count:{k}": v for k, v in self.objective.counts(batch).items()})
                for i in range(0, window.shape[0], self.micro):
                    micro = {k: v[i : i + self.micro] for k, v in batch.items()}
                    _accumulate(sums, {k: v.double().item() for k, v in self._forward(micro).sums.items()})
        # Every rank sends every key (a rank with no validation batch sends zeros), in the same order.
        keys = [*self.objective.weights, *(f"count:{k}" for k in self.objective.weights)]
        reduced = all_reduce_sum({k: sums.get(k, 0.0) for k in keys})
        counts = {k: reduced[f"count:{k}"] for k in self.objective.weights}
        lm = self.objective.lm_part
        if counts[lm] == 0:
            return None
        loss = self.objective.loss({k: reduced[k] for k in self.objective.weights}, counts)
        return loss, math.exp(min(reduced[lm] / counts[lm], 50.0))

    # ---------------------------------------------------------------------------------------------- the run

    def run(self) -> Summary:
        """Train from the newest checkpoint that verifies (or step 0) to maxSteps, or until SIGTERM; checkpoint,
        evaluate and export along the way. Every rank calls it; every rank returns the same Summary."""
        self.stop.install()
        self.reporter.start()
        session = (
            CheckpointSession(self.checkpoints, self.job, self.run_dir, self.global_samples, self.reporter.event)
            if self.checkpoints is not None
            else None
        )
        try:
            if session is not None:
                session.start()
            progress = session.resume(self.model, self.optimizer, self.scheduler) if session else Progress()
            return self._run(progress, session)
        finally:
            if session is not None:
                session.stop()

    def _run(self, progress: Progress, session: CheckpointSession | None) -> Summary:
        """Train (rolling back when the non-finite policy asks), evaluate and export; the Summary."""
        first_step, resumed_from = progress.step, progress.resumed_from
        self._log_start(progress.step, resumed_from)
        started = time.perf_counter()
        tokens_this_run = 0
        guard = NonFiniteGuard(self.spec.training.non_finite, self.reporter.non_finite)
        while True:
            before = progress.tokens_seen
            try:
                preempted = self._train(progress, guard)
                tokens_this_run += progress.tokens_seen - before
                break
            except RollBack as rollback:
                tokens_this_run += rollback.tokens_seen - before
                assert session is not None and self.saver is not None  # rollback needs checkpoint.uri (spec_checks)
                self._saved(self.saver.wait())  # the save in flight counts for the rollback
                guard.passed.add(rollback.start)
                progress = session.roll_back(self.model, self.optimizer, self.scheduler, rollback.start)
                self.reporter.rewind(progress.step - first_step)
            except NonFiniteError:
                # Every rank stops here together (the loss is global); the save in flight is of a good step.
                if self.saver is not None:
                    self._saved(self.saver.wait())
                raise
        step = progress.step
        if not preempted and not self._eval_due(step):
            self._evaluate(step)
        if not preempted and self.probes.enabled and not self.probes.due(step):
            self._probe(step)
        hf_export = None
        if not preempted and self.checkpoints is not None and self.spec.checkpoint.export_hf:
            hf_export = self.objective.export(self.checkpoints, step, self.model, self.spec.tokenizer.uri)
        return self.reporter.finish(
            steps=step,
            tokens_seen=progress.tokens_seen,
            tokens_this_run=tokens_this_run,
            seconds=time.perf_counter() - started,
            num_params=self.info.num_params,
            resumed_from=resumed_from,
            preempted=preempted,
            hf_export=hf_export,
        )

    def _train(self, progress: Progress, guard: NonFiniteGuard) -> bool:
        """Train from `progress` to maxSteps (or a stop request), checkpointing and evaluating on the way; returns
        whether any rank was asked to stop. Raises RollBack when the non-finite policy asks for one."""
        with (
            self._loader(self.train_set, progress.samples, train=True) as loader,
            self._watchdog(progress.step) as watchdog,
        ):
            preempted = False
            while progress.step < self.spec.training.max_steps and not preempted:
                t0 = time.perf_counter()
                wait0, read0 = loader.wait_seconds, self.train_set.bytes_read
                start = loader.samples_consumed
                batch = next(loader)
                if start in guard.passed:  # the global batch a rollback goes past
                    progress.skipped += 1
                    self.reporter.event({"event": "batch_skipped", "step": progress.step + 1, "samples": start})
                    continue
                check_token_ids(batch, self.tokenizer.vocab_size, f"spec.data.train: {self.train_set.store.uri}")
                position = start + self.env.rank * (self.global_samples // self.env.world_size)
                result = self.train_step(torch.from_numpy(batch), position, self.stop.requested)
                preempted = result.stop
                action = guard.decide(
                    progress.step + 1, result.loss, result.grad_norm, (start, start + self.global_samples)
                )
                if action == ROLLBACK:
                    raise RollBack(start, progress.tokens_seen)
                if action != OK:
                    progress.skipped += 1
                    continue
                progress.step += 1
                progress.tokens_seen += self.tokens_per_step
                watchdog.beat(progress.step)
                self._report_step(progress.step, result, time.perf_counter() - t0, loader, wait0, read0)
                if self.saver is not None:
                    self._saved(self.saver.poll())
                if self.checkpoints is not None and self.checkpoints.due(progress.step):
                    self._save(progress, loader)
                    watchdog.beat(progress.step)
                if self._eval_due(progress.step):
                    self._evaluate(progress.step)
                    watchdog.beat(progress.step)
                if self.probes.due(progress.step):
                    self._probe(progress.step)
                    watchdog.beat(progress.step)
            if self.checkpoints is not None and self.checkpoints.due(progress.step, final=True):
                self._save(progress, loader)
            if self.saver is not None:  # the run ends (or SIGTERM): the last save completes before the exit
                self._saved(self.saver.wait())
        return preempted

    def _report_step(
        self, step: int, result: StepResult, seconds: float, loader: StreamingLoader, wait0: float, read0: int
    ) -> None:
        self.reporter.step(
            StepReport(
                step=step,
                loss=result.loss,
                learning_rate=self.scheduler.get_last_lr()[0],
                grad_norm=result.grad_norm,
                seconds=seconds,
                data_wait_seconds=loader.wait_seconds - wait0,
                storage_bytes_read=self.train_set.bytes_read - read0,
                tokens=self.tokens_per_step,
                samples=self.global_samples,
                first_sample=loader.samples_consumed - self.global_samples,
                objective_metrics=result.metrics,
            )
        )

    def _log_start(self, step: int, resumed_from: int | None) -> None:
        if not self.env.is_main:
            return
        log.info(
            "job %s: %s %s, %.1fM parameters, world %d, global batch %d × %d tokens, %d micro steps; %s",
            self.job.name,
            self.spec.objective.type,
            self.spec.model.architecture,
            self.info.num_params / 1e6,
            self.env.world_size,
            self.global_samples,
            self.seq,
            self.accum,
            f"resumed from step {step}" if resumed_from is not None else "starting from step 0",
        )

    def _save(self, progress: Progress, loader: StreamingLoader) -> None:
        """Checkpoint; in the background, the save completes during the next steps and a later poll reports it."""
        assert self.saver is not None
        state = trainer_state(progress, loader.state().as_dict(), self.global_samples, self.job)
        started = time.monotonic()  # a save still running completes (and is reported) first; that wait blocks too
        self._saved(self.saver.wait())
        # known_good: the step's loss and grad norm were finite (a non-finite step is never applied nor saved).
        self.saver.save(progress.step, self.model, self.optimizer, self.scheduler, state, known_good=True)
        self.reporter.metrics.observe_checkpoint_blocked(time.monotonic() - started)
        self._saved(self.saver.poll())  # a save in place is complete now

    def _saved(self, saved: Saved | None) -> None:
        if saved is not None:  # its manifest is written: the checkpoint counts
            self.reporter.checkpoint(saved.step, saved.uri, saved.seconds)

    def _watchdog(self, step: int) -> StallWatchdog:
        """This rank's stall watchdog; with more than one rank, it shares heartbeats through the rendezvous store."""
        env = self.env
        board = HeartbeatBoard.connect(env.master_addr, env.master_port, env.world_size) if env.world_size > 1 else None
        timeout = self.spec.training.stall_timeout_seconds
        return StallWatchdog(timeout, rank=env.rank, board=board, on_stall=exit_stalled, step=step)

    def _eval_due(self, step: int) -> bool:
        every = self.spec.training.eval_every_steps
        return bool(every) and step % every == 0

    def _evaluate(self, step: int) -> None:
        result = self.evaluate()
        if result is not None:
            self.reporter.validation(step, *result)

    def _probe(self, step: int) -> None:
        target = self.objective.probe_target(self.raw_model)
        for result, seconds in self.probes.run(self.raw_model, target, self.device, self.autocast):
            self.reporter.probe(step, result, seconds)

    def release(self) -> None:
        """Drop the wrapped model and optimizer while the process group still exists.

        Freed after destroy_process_group, DDP's reducer would be the last owner of the gloo group and join its
        worker thread while holding the GIL, which that thread needs: rank 1 then hangs at exit.
        """
        self.model = self.raw_model = self.optimizer = self.scheduler = None  # type: ignore[assignment]
        gc.collect()


def train(job: Job, env: DistEnv, run_dir: Path) -> Summary:
    trainer = None
    try:
        trainer = Trainer(job, env, run_dir)
        return trainer.run()
    finally:
        if trainer is not None:
            trainer.release()
        distributed.shutdown()
