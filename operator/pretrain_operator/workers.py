"""What a worker pod's status says: running, done, or failed, and why (a pure reading of Pod.status).

Exit codes follow the trainer's contract (`pretrain_trainer.contract`): 0 done; EXIT_BAD_CONFIG (bad config or
data) never worth a retry; EXIT_PREEMPTED stopped by SIGTERM after a checkpoint (preemption, drain: counted apart
from failures, like evictions and DisruptionTarget); EXIT_STORAGE_UNAVAILABLE and EXIT_STALLED are failures with a
known cause, which the worker's termination record states (`contract.ERROR`); anything else is worth a restart.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from pretrain_trainer.contract import (
    ERROR,
    EXIT_BAD_CONFIG,
    EXIT_PREEMPTED,
    EXIT_STALLED,
    EXIT_STORAGE_UNAVAILABLE,
    RESTART_ROUND_ANNOTATION,
)

from . import naming

# Waiting reasons that do not clear up on their own within the grace period.
STUCK_REASONS = frozenset(
    {
        "ErrImagePull",
        "ImagePullBackOff",
        "InvalidImageName",
        "ErrImageNeverPull",
        "CreateContainerConfigError",
        "CreateContainerError",
    }
)


@dataclass(frozen=True)
class Worker:
    """One worker pod, as the operator sees it."""

    name: str
    index: int
    attempt: int
    state: str  # pending | running | succeeded | failed | terminating
    reason: str = ""
    message: str = ""
    exit_code: int | None = None
    pod_ip: str = ""
    metrics_port: int = 0  # where rank 0 serves /metrics (the pod's declared port; 0: none)
    result: dict[str, Any] = field(default_factory=dict)  # the trainer's termination message (JSON)
    preempted: bool = False  # taken away (eviction, DisruptionTarget, SIGTERM after a checkpoint), not broken
    # Its node or the scheduler took the pod away (an eviction, a DisruptionTarget condition): its place may be gone,
    # unlike a worker that merely exited 143 because the gang was stopped.
    displaced: bool = False
    unschedulable_since: datetime | None = None  # a pending pod the scheduler could not place: since when
    # In-place restarts (spec.failurePolicy.restartInPlace): the round the pod was asked for (None: a pod without
    # them), whether its trainers run for it (its container is ready), and the node it runs on.
    restart_round: int | None = None
    ready: bool = False
    node: str = ""

    @property
    def retryable(self) -> bool:
        return not (self.state == "failed" and self.exit_code == EXIT_BAD_CONFIG)


def parse_time(value: str | None) -> datetime | None:
    if not value:
        return None
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def _terminated(pod: dict[str, Any]) -> dict[str, Any] | None:
    for cs in (pod.get("status") or {}).get("containerStatuses") or []:
        term = (cs.get("state") or {}).get("terminated")
        if term is not None:
            return term
    return None


def _waiting(pod: dict[str, Any]) -> dict[str, Any] | None:
    for cs in (pod.get("status") or {}).get("containerStatuses") or []:
        wait = (cs.get("state") or {}).get("waiting")
        if wait is not None:
            return wait
    return None


def _result(term: dict[str, Any] | None) -> dict[str, Any]:
    try:
        value = json.loads((term or {}).get("message") or "{}")
    except ValueError:  # FallbackToLogsOnError: the log tail, not our JSON
        return {}
    return value if isinstance(value, dict) else {}


def _metrics_port(pod: dict[str, Any]) -> int:
    for container in (pod.get("spec") or {}).get("containers") or []:
        for port in container.get("ports") or []:
            if port.get("name") == naming.METRICS_PORT_NAME:
                return int(port.get("containerPort") or 0)
    return 0


def _restart_round(meta: dict[str, Any]) -> int | None:
    value = (meta.get("annotations") or {}).get(RESTART_ROUND_ANNOTATION)
    try:
        return int(value) if value is not None else None
    except ValueError:  # edited by hand: the operator writes the round again
        return -1


_EXIT_REASONS = {
    EXIT_PREEMPTED: "Preempted",
    EXIT_BAD_CONFIG: "InvalidConfig",
    EXIT_STORAGE_UNAVAILABLE: "StorageUnavailable",
    EXIT_STALLED: "Stalled",
}


def _failure_reason(status: dict[str, Any], term: dict[str, Any] | None, code: int | None) -> tuple[str, bool, bool]:
    """Why a pod failed, whether it was preempted (stopped) rather than broken, and whether its node or the
    scheduler took it away (displaced)."""
    conditions = {c.get("type"): c for c in status.get("conditions") or []}
    if status.get("reason") == "Evicted":
        return "Evicted", True, True
    if conditions.get("DisruptionTarget", {}).get("status") == "True":
        return conditions["DisruptionTarget"].get("reason") or "Preempted", True, True
    if code in _EXIT_REASONS:
        return _EXIT_REASONS[code], code == EXIT_PREEMPTED, False
    return (term or {}).get("reason") or status.get("reason") or "Error", False, False


def read_worker(pod: dict[str, Any], now: datetime, stuck_grace_s: float) -> Worker:
    """Classify one pod. `stuck_grace_s`: how long an image-pull or container-config error may last before it
    counts as a failure (a registry hiccup clears up; a wrong image name does not)."""
    meta, status = pod["metadata"], pod.get("status") or {}
    labels = meta.get("labels") or {}
    base = {
        "name": meta["name"],
        "index": int(labels.get(naming.INDEX_LABEL, -1)),
        "attempt": int(labels.get(naming.ATTEMPT_LABEL, -1)),
        "pod_ip": status.get("podIP", ""),
        "metrics_port": _metrics_port(pod),
        # Kubernetes marks a pod it is about to take away before the container stops.
        "displaced": any(
            c.get("type") == "DisruptionTarget" and c.get("status") == "True" for c in status.get("conditions") or []
        ),
        "restart_round": _restart_round(meta),
        "node": (pod.get("spec") or {}).get("nodeName") or "",
    }
    phase = status.get("phase", "Pending")
    term = _terminated(pod)
    if phase == "Succeeded":
        return Worker(**base, state="succeeded", exit_code=0, result=_result(term))
    if phase == "Failed":
        code = term.get("exitCode") if term else None
        reason, preempted, displaced = _failure_reason(status, term, code)
        result = _result(term)
        detail = result.get(ERROR) or ("" if result else status.get("message") or (term or {}).get("message") or "")
        message = f"{meta['name']} failed ({reason}" + (f", exit code {code}" if code is not None else "") + ")"
        if detail:
            message += f": {str(detail).strip().splitlines()[-1][:300]}"
        base["displaced"] = displaced
        return Worker(
            **base, state="failed", reason=reason, message=message, exit_code=code, result=result, preempted=preempted
        )
    if meta.get("deletionTimestamp"):
        return Worker(**base, state="terminating")
    if phase == "Running":
        statuses = status.get("containerStatuses") or []
        # The node controller marks the Ready condition False when the node stops reporting (the containers'
        # own statuses then go stale): not ready either way.
        marked = any(c.get("type") == "Ready" and c.get("status") == "False" for c in status.get("conditions") or [])
        ready = bool(statuses) and all(cs.get("ready") for cs in statuses) and not marked
        return Worker(**base, state="running", ready=ready)
    waiting = _waiting(pod)
    if waiting and waiting.get("reason") in STUCK_REASONS:
        since = parse_time(meta.get("creationTimestamp")) or now
        if (now - since).total_seconds() >= stuck_grace_s:
            return Worker(
                **base,
                state="failed",
                reason=waiting["reason"],
                message=f"{meta['name']}: {waiting['reason']}: {waiting.get('message', '')}".strip(),
            )
    scheduled = next((c for c in status.get("conditions") or [] if c.get("type") == "PodScheduled"), {})
    if scheduled.get("status") == "False":
        why = f"{meta['name']} not scheduled ({scheduled.get('reason', '')}): {scheduled.get('message', '')}"
        since = None
        if scheduled.get("reason") == "Unschedulable":
            since = parse_time(scheduled.get("lastTransitionTime")) or parse_time(meta.get("creationTimestamp")) or now
        return Worker(
            **base, state="pending", reason=scheduled.get("reason", ""), message=why, unschedulable_since=since
        )
    return Worker(**base, state="pending", reason=(waiting or {}).get("reason", ""))
