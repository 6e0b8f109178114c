"""What a finished local run prints and draws: a summary of the run and a PNG of loss against step."""

from __future__ import annotations

import json
from pathlib import Path

from pretrain_trainer import contract as c

# The files a run leaves in its run folder (see reporting.Reporter, which writes them).
LOG_FILE = "train.jsonl"
SUMMARY_FILE = "summary.json"


def read_log(run_dir: Path) -> list[dict[str, object]]:
    path = run_dir / LOG_FILE
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def current(records: list[dict[str, object]]) -> list[dict[str, object]]:
    """The records that still stand: without those a resume or rollback superseded (one value per step)."""
    return [r for r in records if not r.get("superseded")]


def supersede_after(run_dir: Path, step: int) -> int:
    """Mark every record of train.jsonl about a step after `step` as `"superseded": true`: a run that resumes
    from the checkpoint of `step` trains those steps again, and plots must show each step once. Kept rather than
    deleted (they show what happened before the crash). Returns how many records were marked; atomic."""
    path = run_dir / LOG_FILE
    if not path.exists():
        return 0
    lines, marked = [], 0
    for line in path.read_text().splitlines():
        record = json.loads(line)
        if isinstance(record.get("step"), int) and record["step"] > step and not record.get("superseded"):
            record["superseded"] = True
            line = json.dumps(record)
            marked += 1
        lines.append(line)
    if marked:
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text("".join(line + "\n" for line in lines))
        tmp.replace(path)
    return marked


def plot_loss(run_dir: Path, out: Path | None = None) -> Path | None:
    """Training loss per step (and validation loss where measured) as a PNG; None when nothing was logged."""
    records = current(read_log(run_dir))
    train = [(r["step"], r["loss"]) for r in records if "event" not in r and "loss" in r]
    if not train:
        return None
    import matplotlib

    matplotlib.use("Agg")  # no display on servers and CI
    import matplotlib.pyplot as plt

    val = [(r["step"], r["loss"]) for r in records if r.get("event") == "validation"]
    fig, ax = plt.subplots(figsize=(7, 4), dpi=120)
    ax.plot(*zip(*train, strict=True), label="train", linewidth=1.2)
    if val:
        ax.plot(*zip(*val, strict=True), "o-", label="validation")
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    out = out or run_dir / "loss.png"
    fig.savefig(out)
    plt.close(fig)
    return out


def format_summary(summary: dict[str, object]) -> str:
    lines = [
        f"job {summary['job']}: {summary['steps']} steps on {summary['world_size']} processes, "
        f"{summary['num_params'] / 1e6:.2f}M parameters",
        f"final loss {summary['final_loss']:.4f}, {summary['tokens_per_second']:,.0f} tokens/s, "
        f"{summary['tokens_seen']:,} tokens seen in {summary['seconds']:.1f} s",
    ]
    if summary.get("validation_loss") is not None:
        lines.append(
            f"validation loss {summary['validation_loss']:.4f}, perplexity {summary['validation_perplexity']:.2f}"
        )
    for task, probe in (summary.get("probes") or {}).items():  # type: ignore[union-attr]
        lines.append(
            f"probe {task} at step {probe['step']}: accuracy {probe['accuracy']:.3f} "
            f"(95% CI {probe['low']:.3f}-{probe['high']:.3f})"
        )
    if summary.get("resumed_from") is not None:
        lines.append(f"resumed from the checkpoint of step {summary['resumed_from']}")
    if summary.get("last_checkpoint"):
        lines.append(f"checkpoint: {summary['last_checkpoint']}")
    if summary.get("hf_export"):
        lines.append(f"Hugging Face export: {summary['hf_export']}")
    return "\n".join(lines)


def termination_record(summary: dict[str, object]) -> str:
    """The one-line JSON a pod's rank 0 leaves in its termination message: the operator reads the final
    progress from the pod's status (step, loss, tokens, last checkpoint) without a network call."""
    record = {
        c.STEP: summary["steps"],
        c.LOSS: summary["final_loss"],
        c.TOKENS_SEEN: summary["tokens_seen"],
        c.TOKENS_PER_SECOND: round(float(summary["tokens_per_second"]), 1),  # type: ignore[arg-type]
        c.LAST_CHECKPOINT: summary.get("last_checkpoint_step"),
        c.PREEMPTED: summary.get("preempted", False),
    }
    probes: dict[str, dict[str, float]] = summary.get("probes") or {}  # type: ignore[assignment]
    if probes:
        record[c.PROBE_ACCURACY] = {task: round(p["accuracy"], 4) for task, p in probes.items()}
        record[c.PROBE_STEP] = int(max(p["step"] for p in probes.values()))
    return json.dumps({k: v for k, v in record.items() if v is not None and v == v})  # v == v drops NaN


def failure_record(error: str) -> str:
    """The one-line JSON a worker that stops on a known, retryable cause leaves in its termination message: the
    operator puts `error` into the job's status (Kubernetes keeps the first 4096 bytes)."""
    return json.dumps({c.ERROR: error[:2000]})
