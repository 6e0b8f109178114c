"""Training throughput of the project's Trainer next to Hugging Face `transformers.Trainer` on the same model and data.

    .venv/bin/python benchmarks/train_throughput.py                                  # tiny GPT-2, CPU, ~30 s
    .venv/bin/python benchmarks/train_throughput.py --model gpt2-124m                # GPT-2 small on one GPU
    .venv/bin/python benchmarks/train_throughput.py --model llama-1b --compile --activation-checkpointing
    .venv/bin/python benchmarks/train_throughput.py --model tiny --skip-hf --data s3 --steps 50

Prepares a shard set from generated multilingual documents (`generate_documents(seed)` for as many seeds as the
run needs) with a byte-level BPE tokenizer, in a file:// temp folder or (--data s3) a bucket on an embedded moto
endpoint. Then, in this one process and one after the other:

  ours  `Trainer(job, DistEnv(), run_dir).run()` on a PretrainJob spec for the model (`model.config` overrides of
        the gpt2 or llama architecture), for --warmup-steps + --steps optimizer steps
  hf    `transformers.Trainer` on the same model config and initial weights (same seed, built by the project's
        `build_model`), the same token windows in the same order (read up front from the shard set through
        `StreamingLoader` with the trainer's seed and global batch, then served from memory), the same global
        batch (per_device_train_batch_size × gradient_accumulation_steps), AdamW with the same hyper-parameters
        (fused on CUDA) and the project's learning-rate schedule, the same precision, torch_compile and
        activation checkpointing when asked; no evaluation, saving or logging

Each is timed over the last --steps steps (after the same warm-up) between step ends: tokens/s is
steps × global batch × seq over that span. Median step time for ours is the `step_seconds` of train.jsonl, for
hf the interval between `on_step_end` callbacks (synchronised on CUDA). MFU is model_flops_per_token × tokens/s
over `peak_flops(device)` (n/a on a CPU). Peak memory is `torch.cuda.max_memory_allocated` on a GPU and the
process's peak RSS (`getrusage`, reset through /proc/self/clear_refs before each run) on a CPU. One process, one
device: with a world of one the trainer wraps the model in neither DDP nor FSDP, so --parallelism only changes the
spec. Figures only: nothing here asserts on timing. See benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import os
import resource
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from transformers import AutoModelForCausalLM

from pretrain_trainer.bundled_corpus import load_bundled_documents
from pretrain_trainer.config import Job, parse_job
from pretrain_trainer.contract import API_VERSION
from pretrain_trainer.data.loader import MiB, StreamingLoader
from pretrain_trainer.data.prepare import PrepareConfig, prepare
from pretrain_trainer.data.shards import ShardSet
from pretrain_trainer.distributed import DistEnv
from pretrain_trainer.metrics import model_flops_per_token, peak_flops
from pretrain_trainer.model import build_model
from pretrain_trainer.optim import build_scheduler
from pretrain_trainer.reporting import StepReport
from pretrain_trainer.storage import StorageOptions
from pretrain_trainer.tokenizer.load import load_tokenizer
from pretrain_trainer.tokenizer.train import TokenizerTrainingSpec, save_tokenizer, train_tokenizer
from pretrain_trainer.trainer import Trainer

# The corpus generator is a developer tool at the repository root, not part of the installed package.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tools.bundled_corpus.generate import generate_documents

SEED = 0
BUCKET = "s3://bench-train"
MAX_CORPUS_SEEDS = 200  # ~60 MB of text; beyond that the loader repeats samples (epochs > 1)


@dataclass(frozen=True)
class ModelSize:
    architecture: str
    config: dict[str, Any]
    seq: int
    micro_batch: int
    global_batch: int
    steps: int
    warmup: int
    lr: float


NO_DROPOUT_GPT2 = {"resid_pdrop": 0.0, "embd_pdrop": 0.0, "attn_pdrop": 0.0}
MODELS: dict[str, ModelSize] = {
    # GPT-2 style, small enough for two CPU cores.
    "tiny": ModelSize(
        "gpt2",
        {"n_layer": 2, "n_embd": 128, "n_head": 4, "n_positions": 1024, **NO_DROPOUT_GPT2},
        seq=256,
        micro_batch=4,
        global_batch=8,
        steps=20,
        warmup=3,
        lr=1e-3,
    ),
    # GPT-2 small (124 M with GPT-2's 50257-token vocabulary; fewer here, see the header's parameter count).
    "gpt2-124m": ModelSize(
        "gpt2",
        {"n_layer": 12, "n_embd": 768, "n_head": 12, "n_positions": 1024, **NO_DROPOUT_GPT2},
        seq=1024,
        micro_batch=16,
        global_batch=64,
        steps=20,
        warmup=5,
        lr=6e-4,
    ),
    # Llama style, TinyLlama's widths (hidden 2048, intermediate 5632, 32 heads) over 16 layers.
    "llama-1b": ModelSize(
        "llama",
        {
            "num_hidden_layers": 16,
            "hidden_size": 2048,
            "num_attention_heads": 32,
            "intermediate_size": 5632,
            "max_position_embeddings": 2048,
            "rms_norm_eps": 1e-5,
            "tie_word_embeddings": False,
        },
        seq=2048,
        micro_batch=4,
        global_batch=32,
        steps=20,
        warmup=5,
        lr=3e-4,
    ),
}


@dataclass
class Result:
    name: str
    tokens_per_second: float
    median_step_seconds: float
    mfu: float | None
    peak_memory: str
    first_loss: float
    final_loss: float


# -------------------------------------------------------------------------------------------------- memory


def reset_peak_memory(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    else:
        # Linux: writing 5 resets the process's peak RSS (VmHWM), which getrusage reports as ru_maxrss.
        with contextlib.suppress(OSError), open("/proc/self/clear_refs", "w") as f:
            f.write("5")


def peak_memory(device: torch.device) -> str:
    if device.type == "cuda":
        return f"{torch.cuda.max_memory_allocated(device) / 2**30:.2f} GiB alloc"
    return f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**10:,.0f} MiB RSS"  # ru_maxrss: KiB on Linux


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


# ---------------------------------------------------------------------------------------------------- data


def tokens_per_seed(tokenizer_file: str) -> int:
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(tokenizer_file)
    texts = [d["text"] for d in generate_documents(0)]
    return sum(len(e.ids) + 1 for e in tok.encode_batch(texts, add_special_tokens=False))


def prepare_data(
    folder: Path, output: str, options: StorageOptions | None, vocab_size: int, tokens_needed: int
) -> tuple[str, str, int]:
    """Train the tokenizer, write enough generated JSONL for `tokens_needed` tokens and prepare it into `output`.
    Returns the tokenizer URI, the train shard set's URI and its token count."""
    spec = TokenizerTrainingSpec(model="bpe", vocab_size=vocab_size, objective="clm")
    tok = train_tokenizer((d["text"] for d in load_bundled_documents()), spec)
    tok_uri = save_tokenizer(tok, spec, f"{output}/tokenizer", options)
    local_tok = folder / "tokenizer.json"
    local_tok.write_text(tok.to_str())
    # Seeds share ~9 % of their documents (dropped by dedup), hence the margin.
    seeds = min(MAX_CORPUS_SEEDS, max(1, -(-int(tokens_needed * 1.2) // tokens_per_seed(str(local_tok)))))
    (folder / "corpus").mkdir()
    files = []
    for seed in range(seeds):
        path = folder / "corpus" / f"corpus-{seed:05d}.jsonl"
        with path.open("w", encoding="utf-8", newline="\n") as handle:
            for doc in generate_documents(seed):
                handle.write(json.dumps(doc, ensure_ascii=False) + "\n")
        files.append(str(path))
    cfg = PrepareConfig(inputs=tuple(files), output=f"{output}/data", tokenizer=tok_uri, dedup=True)
    report = prepare(cfg, options)
    tokens = report.tokens["train"]
    print(
        f"data: {tokens:,} tokens from {seeds} generated seeds into {report.outputs['train']} in {report.seconds:.1f} s"
        f" ({tokens / tokens_needed:.2f}× the {tokens_needed:,} tokens the run trains on)",
        flush=True,
    )
    return tok_uri, report.outputs["train"], tokens


# ---------------------------------------------------------------------------------------------------- jobs


def resolved_precision(precision: str, device: torch.device) -> str:
    return "bf16" if precision == "bf16" or (precision == "auto" and device.type == "cuda") else "fp32"


def make_job(args: argparse.Namespace, size: ModelSize, tok_uri: str, train_uri: str, endpoint: str) -> Job:
    total = args.warmup_steps + args.steps
    spec: dict[str, Any] = {
        "tokenizer": {"uri": tok_uri},
        "data": {"train": train_uri, "sequenceLength": args.seq, "seed": SEED},
        "model": {"architecture": size.architecture, "config": size.config},
        "objective": {"type": "clm"},
        "optimizer": {"lr": size.lr, "warmupSteps": args.warmup_steps, "weightDecay": 0.1, "gradClip": 1.0},
        "training": {
            "maxSteps": total,
            "globalBatchSamples": args.global_batch,
            "microBatchSize": args.micro_batch,
            "precision": args.precision,
            "parallelism": args.parallelism,
            "compile": args.compile,
            "activationCheckpointing": args.activation_checkpointing,
            "logEverySteps": total,
            "seed": SEED,
        },
        "metrics": {"port": 0},
    }
    if endpoint:
        spec["storage"] = {"endpoint": endpoint, "region": "us-east-1"}
    return parse_job({"apiVersion": API_VERSION, "kind": "PretrainJob", "metadata": {"name": "bench"}, "spec": spec})


def read_windows(job: Job, options: StorageOptions | None, batches: int) -> np.ndarray:
    """The windows the trainer trains on, in its order: `batches` global batches from a StreamingLoader with the
    job's seed and global batch, world size 1."""
    spec = job.spec
    shards = ShardSet.open(spec.data.train, options)
    out = []
    with StreamingLoader(
        shards,
        sequence_length=spec.data.sequence_length,
        causal=True,
        global_batch_size=spec.training.global_batch_samples,
        seed=spec.data.seed,
        block_bytes=spec.data.block_mib * MiB,
        window_blocks=spec.data.shuffle_window_blocks,
        cache_bytes=spec.data.cache_mib * MiB,
    ) as loader:
        for _ in range(batches):
            out.append(next(loader))
    return np.concatenate(out)


# ----------------------------------------------------------------------------------------------------- ours


def run_ours(job: Job, run_dir: Path, warmup: int) -> tuple[Result, Trainer]:
    trainer = Trainer(job, DistEnv(), run_dir)
    device = trainer.device
    ends: list[float] = []
    report_step = trainer.reporter.step

    def timed_report(report: StepReport) -> None:  # the end of every step, after its loss is on the host
        report_step(report)
        ends.append(time.perf_counter())

    trainer.reporter.step = timed_report  # type: ignore[method-assign]
    reset_peak_memory(device)
    summary = trainer.run()
    memory = peak_memory(device)
    lines = [json.loads(line) for line in (run_dir / "train.jsonl").read_text().splitlines()]
    step_seconds = [r["step_seconds"] for r in lines if "step_seconds" in r and r["step"] > warmup]
    measured = len(ends) - warmup
    tokens = measured * trainer.tokens_per_step
    tps = tokens / (ends[-1] - ends[warmup - 1])
    mfu = trainer.reporter.mfu(tps)
    result = Result("ours", tps, statistics.median(step_seconds), mfu, memory, summary.losses[0], summary.final_loss)
    return result, trainer


# ------------------------------------------------------------------------------------------------------- hf


class WindowDataset(torch.utils.data.Dataset):
    """Causal LM samples from windows of seq + 1 tokens, already shifted: `shift_labels` makes the model's loss
    predict all seq tokens of each window, as the project's trainer does (`labels` alone would lose one per row)."""

    def __init__(self, windows: np.ndarray) -> None:
        self.windows = torch.from_numpy(windows)

    def __len__(self) -> int:
        return len(self.windows)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        w = self.windows[i]
        return {"input_ids": w[:-1], "labels": w[1:], "shift_labels": w[1:]}


def run_hf(args: argparse.Namespace, job: Job, windows: np.ndarray, device: torch.device, run_dir: Path) -> Result:
    import transformers
    from transformers import PrinterCallback, TrainerCallback, TrainingArguments

    transformers.logging.set_verbosity_error()
    spec = job.spec
    tok = load_tokenizer(spec.tokenizer.uri, StorageOptions.from_spec(spec.storage))
    torch.manual_seed(spec.training.seed)  # as Trainer.__init__ does before build_model: the same initial weights
    model, info = build_model(spec.model, AutoModelForCausalLM, tok.tokenizer, tok.model_token_ids())
    ends: list[float] = []
    losses: list[torch.Tensor] = []

    class StepClock(TrainerCallback):
        def on_step_end(self, targs, state, control, **kwargs):  # type: ignore[no-untyped-def]
            synchronize(device)
            ends.append(time.perf_counter())

    class LossKeepingTrainer(transformers.Trainer):
        """Keeps each optimizer step's loss on the device (no host sync); logging is off."""

        pending: torch.Tensor | None = None

        def create_scheduler(self, num_training_steps, optimizer=None):  # type: ignore[no-untyped-def]
            # The project's warm-up + cosine schedule, step for step (HF's own starts its warm-up at lr 0).
            if self.lr_scheduler is None:
                self.lr_scheduler = build_scheduler(optimizer or self.optimizer, spec.optimizer, num_training_steps)
            return self.lr_scheduler

        def training_step(self, model, inputs, num_items_in_batch=None):  # type: ignore[no-untyped-def]
            loss = super().training_step(model, inputs, num_items_in_batch)
            # Normalised by the global batch's label count, so the micro losses of a step sum to its mean loss.
            self.pending = loss if self.pending is None else self.pending + loss
            if self.accelerator.sync_gradients:
                losses.append(self.pending)
                self.pending = None
            return loss

    micro = args.micro_batch
    accum = args.global_batch // micro
    bf16 = resolved_precision(args.precision, device) == "bf16"
    targs = TrainingArguments(
        output_dir=str(run_dir),
        max_steps=args.warmup_steps + args.steps,
        per_device_train_batch_size=micro,
        gradient_accumulation_steps=accum,
        learning_rate=spec.optimizer.lr,
        weight_decay=spec.optimizer.weight_decay,
        adam_beta1=spec.optimizer.beta1,
        adam_beta2=spec.optimizer.beta2,
        adam_epsilon=spec.optimizer.eps,
        max_grad_norm=spec.optimizer.grad_clip,
        optim="adamw_torch_fused" if device.type == "cuda" else "adamw_torch",
        bf16=bf16,
        use_cpu=device.type == "cpu",
        torch_compile=args.compile,
        activation_checkpointing=args.activation_checkpointing,
        train_sampling_strategy="sequential",
        eval_strategy="no",
        save_strategy="no",
        logging_strategy="no",
        report_to=[],
        disable_tqdm=True,
        dataloader_num_workers=0,
        remove_unused_columns=False,
        seed=spec.training.seed,
    )
    trainer = LossKeepingTrainer(model=model, args=targs, train_dataset=WindowDataset(windows), callbacks=[StepClock()])
    trainer.remove_callback(PrinterCallback)  # it prints the end-of-training metrics even with logging off
    reset_peak_memory(device)
    trainer.train()
    memory = peak_memory(device)
    warmup = args.warmup_steps
    tps = args.steps * args.global_batch * args.seq / (ends[-1] - ends[warmup - 1])
    steps = [b - a for a, b in zip(ends[warmup - 1 : -1], ends[warmup:], strict=True)]
    flops = model_flops_per_token(info.num_params, info.num_layers, info.hidden_size, args.seq)
    peak = peak_flops(device)
    values = [float(x) for x in losses]
    result = Result(
        "hf", tps, statistics.median(steps), flops * tps / peak if peak else None, memory, values[0], values[-1]
    )
    del trainer, model
    return result


# ---------------------------------------------------------------------------------------------------- main


def print_table(results: list[Result]) -> None:
    header = ["implementation", "tokens/s", "median step", "MFU", "peak memory", "loss@1", "final loss"]
    rows = [header] + [
        [
            r.name,
            f"{r.tokens_per_second:,.0f}",
            f"{r.median_step_seconds * 1000:,.1f} ms",
            "n/a (CPU)" if r.mfu is None else f"{r.mfu:.1%}",
            r.peak_memory,
            f"{r.first_loss:.4f}",
            f"{r.final_loss:.4f}",
        ]
        for r in results
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    for row in rows:
        print("  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths, strict=True))))


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return f"cuda:{device.index} {torch.cuda.get_device_name(device)}"
    return f"cpu ({os.cpu_count()} cores, {torch.get_num_threads()} torch threads)"


@contextlib.contextmanager
def data_location(kind: str, tmp: Path) -> Iterator[tuple[str, StorageOptions | None, str]]:
    """Where the shards go: a file:// folder, or a bucket on an embedded S3 endpoint (output, options, endpoint)."""
    if kind == "file":
        yield (tmp / "store").as_uri(), None, ""
        return
    from pretrain_trainer.storage.local_s3 import ensure_bucket, start_local_s3

    with start_local_s3() as endpoint:
        # The embedded endpoint accepts any credentials; never let boto3 pick up real ones for it.
        os.environ.update(
            {
                "AWS_ACCESS_KEY_ID": "bench",
                "AWS_SECRET_ACCESS_KEY": "bench-secret",
                "AWS_CONFIG_FILE": os.devnull,
                "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
            }
        )
        options = StorageOptions(endpoint_url=endpoint, region="us-east-1")
        ensure_bucket(BUCKET, options)
        yield BUCKET, options, endpoint


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", choices=tuple(MODELS), default="tiny", help="model size (default tiny)")
    parser.add_argument("--seq", type=int, help="sequence length (default per model: 256, 1024, 2048)")
    parser.add_argument("--micro-batch", type=int, help="samples per forward pass (default per model: 4, 16, 4)")
    parser.add_argument("--global-batch", type=int, help="samples per optimizer step (default per model: 8, 64, 32)")
    parser.add_argument("--steps", type=int, help="measured optimizer steps (default 20)")
    parser.add_argument("--warmup-steps", type=int, help="unmeasured steps before them (default 3 tiny, else 5)")
    parser.add_argument("--precision", choices=("auto", "bf16", "fp32"), default="auto", help="auto: bf16 on GPU")
    parser.add_argument("--parallelism", choices=("ddp", "fsdp"), default="ddp", help="spec value (no-op, world 1)")
    parser.add_argument("--compile", action="store_true", help="torch.compile (ours) / torch_compile=True (hf)")
    parser.add_argument("--activation-checkpointing", action="store_true", help="recompute activations in backward")
    parser.add_argument("--vocab-size", type=int, default=8192, help="BPE vocabulary asked for (default 8192)")
    parser.add_argument("--skip-hf", action="store_true", help="measure only the project's trainer")
    parser.add_argument("--data", choices=("file", "s3"), default="file", help="file:// temp folder or embedded S3")
    args = parser.parse_args(argv)
    size = MODELS[args.model]
    for name in ("seq", "micro_batch", "global_batch", "steps"):
        if getattr(args, name) is None:
            setattr(args, name, getattr(size, name))
    if args.warmup_steps is None:
        args.warmup_steps = size.warmup
    if min(args.seq, args.micro_batch, args.global_batch, args.steps, args.warmup_steps) < 1:
        parser.error("--seq, --micro-batch, --global-batch, --steps and --warmup-steps must be at least 1")
    if args.global_batch % args.micro_batch:
        parser.error(f"--global-batch {args.global_batch} is not a multiple of --micro-batch {args.micro_batch}")
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        parser.error("this benchmark runs one process on one device; do not start it with torchrun")

    device = torch.device("cuda", 0) if torch.cuda.is_available() else torch.device("cpu")
    total = args.warmup_steps + args.steps
    tokens_needed = total * args.global_batch * (args.seq + 1)
    results: list[Result] = []
    with ExitStack() as stack:
        tmp = Path(tempfile.mkdtemp(prefix="bench-train-"))
        stack.callback(shutil.rmtree, tmp, True)
        output, options, endpoint = stack.enter_context(data_location(args.data, tmp))
        tok_uri, train_uri, _ = prepare_data(tmp, output, options, args.vocab_size, tokens_needed)
        job = make_job(args, size, tok_uri, train_uri, endpoint)
        windows = None if args.skip_hf else read_windows(job, options, total)

        ours, trainer = run_ours(job, tmp / "ours", args.warmup_steps)
        info = trainer.info
        results.append(ours)
        del trainer
        gc.collect()
        if windows is not None:
            results.append(run_hf(args, job, windows, device, tmp / "hf"))
        import transformers

        print()
        print(
            f"device {device_name(device)} | torch {torch.__version__} | transformers {transformers.__version__}\n"
            f"model {args.model} ({size.architecture}, {info.num_params / 1e6:,.1f} M parameters, vocab "
            f"{info.vocab_size:,}) | seq {args.seq} | global batch {args.global_batch} samples "
            f"({args.global_batch * args.seq:,} tokens) = micro {args.micro_batch} × "
            f"{args.global_batch // args.micro_batch} | precision {resolved_precision(args.precision, device)} "
            f"({args.precision}) | {'compile' if args.compile else 'eager'}"
            f"{' | activation checkpointing' if args.activation_checkpointing else ''} | data {args.data} | "
            f"{args.warmup_steps} warm-up + {args.steps} measured steps"
        )
        print()
        print_table(results)
        if len(results) == 2:
            print(f"\nours/hf tokens/s: {results[0].tokens_per_second / results[1].tokens_per_second:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
