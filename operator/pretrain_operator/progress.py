"""Live training progress, read from rank 0's Prometheus endpoint (the worker-0 pod, `spec.metrics.port`).

Why the metrics endpoint and not a progress file in the object store: it is live to the second, it needs no
storage credentials in the operator (those stay in the job's Secret), and `kubectl get pj` then shows the same
numbers as Grafana. Its gap, the last steps before the workers exit, is closed by the trainer's termination
message (see `workers.Worker.result`), which Kubernetes keeps in the pod's status.

`estimate` turns the step and the throughput into status.progress and status.estimatedCompletionTime; the
operator exports both as metrics, so `kubectl get pj` and Grafana's ETA panel show the same numbers.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta, timezone
from typing import Any

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from pretrain_trainer import contract as c

log = logging.getLogger(__name__)

# trainer metric → status field
FIELDS = {
    "pretrain_step": c.STEP,
    "pretrain_loss": c.LOSS,
    "pretrain_tokens_per_second": c.TOKENS_PER_SECOND,
    "pretrain_last_checkpoint_step": c.LAST_CHECKPOINT,
    "pretrain_last_checkpoint_timestamp_seconds": c.LAST_CHECKPOINT_TIME,
    "pretrain_probe_accuracy": c.PROBE_ACCURACY,
    "pretrain_probe_step": c.PROBE_STEP,
}
# tokensSeen is not read: pretrain_tokens_total restarts from 0 with the trainer; the status derives it from the
# step (every step trains the same global batch, whatever the world size).
INTEGERS = {c.STEP, c.LAST_CHECKPOINT, c.PROBE_STEP}
# Status fields that map a label's value to the number (the probe's accuracy by task).
BY_LABEL = {c.PROBE_ACCURACY: "task"}
# Status fields the operator derives from the progress (not in the trainer's record).
PROGRESS = "progress"  # percent of maxSteps
ESTIMATED_COMPLETION_TIME = "estimatedCompletionTime"
PROGRESS_TIME = "progressTime"  # when rank 0 last reported progress
MAX_ESTIMATE_S = 10 * 366 * 24 * 3600.0  # ten years


def parse_progress(text: str, job_name: str) -> dict[str, Any]:
    """Status fields from a /metrics page, for the series labelled with this job."""
    out: dict[str, Any] = {}
    for family in text_string_to_metric_families(text):
        key = FIELDS.get(family.name)
        if key is None:
            continue
        for sample in family.samples:
            if sample.labels.get("job_name") != job_name or sample.name.endswith("_created"):
                continue
            value = sample.value
            if value != value or value in (float("inf"), float("-inf")):  # NaN/inf do not fit the schema
                continue
            if key == c.LAST_CHECKPOINT_TIME:
                if value > 0:
                    out[key] = datetime.fromtimestamp(value, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
            elif key in INTEGERS:
                out[key] = int(value)
            elif key in BY_LABEL:
                out.setdefault(key, {})[sample.labels.get(BY_LABEL[key], "")] = round(value, 4)
            else:
                out[key] = round(value, 4)
    if out.get(c.LAST_CHECKPOINT) == 0 and c.LAST_CHECKPOINT_TIME not in out:
        out.pop(c.LAST_CHECKPOINT)  # no checkpoint yet
    return out


async def scrape_progress(
    session: aiohttp.ClientSession, host: str, port: int, job_name: str, timeout_s: float = 3.0
) -> dict[str, Any] | None:
    """Progress from rank 0, or None when it does not answer (starting, busy checkpointing, or finished)."""
    url = f"http://{host}:{port}/metrics"
    try:
        async with session.get(url, timeout=aiohttp.ClientTimeout(total=timeout_s)) as resp:
            if resp.status != 200:
                return None
            return parse_progress(await resp.text(), job_name)
    except (aiohttp.ClientError, TimeoutError, ValueError) as err:
        log.debug("no progress from %s: %s", url, err)
        return None


def estimate(
    step: int | None, max_steps: int, tokens_per_step: int, tokens_per_second: float | None, at: datetime
) -> dict[str, Any]:
    """status.progress (percent of maxSteps, one decimal) and status.estimatedCompletionTime: the steps left at
    the recent throughput (rank 0's tokens/s over the job's tokens per step), counted from `at`, when the step was
    read. No throughput (none reported yet, or 0): no estimate. Restarts and checkpoint pauses to come are not
    foreseen: the estimate is the time left if training runs on as it does now."""
    if step is None or max_steps <= 0:
        return {}
    done = min(max(step, 0), max_steps)
    out: dict[str, Any] = {PROGRESS: round(100.0 * done / max_steps, 1)}
    if tokens_per_second and tokens_per_second > 0 and tokens_per_step > 0:
        left_s = (max_steps - done) * tokens_per_step / tokens_per_second
        if left_s < MAX_ESTIMATE_S:  # beyond it the estimate says nothing (and would not fit a datetime)
            out[ESTIMATED_COMPLETION_TIME] = (at + timedelta(seconds=left_s)).strftime("%Y-%m-%dT%H:%M:%SZ")
    return out
