"""The planner's types and shared state: operator Settings, the Plan a reconcile produces with its Events, and the
Planner that the steps of `lifecycle.plan()` read their observations from and write the plan into.

The steps themselves live in gate_steps.py (finished, admission, policy, children, suspend), attempt_steps.py (an
attempt's start, deadline, resize, progress, success) and failure_steps.py (a failed worker: restart or give up).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from pretrain_trainer.config import PretrainJobSpec
from pretrain_trainer.contract import FAILED, PENDING, PHASES, PROGRESS_KEYS, RESTARTING, RUNNING, SUSPENDED

from . import children
from .conditions import get_condition, set_condition
from .naming import is_spare
from .policy import Policy
from .progress import ESTIMATED_COMPLETION_TIME
from .workers import Worker, read_worker

# Every phase but Pending has a condition of its name.
PHASE_CONDITIONS = tuple(phase for phase in PHASES if phase != PENDING)


@dataclass(frozen=True)
class Settings:
    """Operator-wide settings (command-line flags)."""

    image: str = "ghcr.io/pretrain-operator/trainer:0.1.0"  # when spec.image is empty
    stuck_grace_s: float = 300.0  # image pull / container config errors tolerated this long
    backoff_base_s: float = 10.0  # first restart's delay; doubles per restart
    backoff_max_s: float = 600.0
    resync_s: float = 10.0  # how often an active job is looked at without an event (progress, timeouts)
    policy: Policy = field(default_factory=Policy)  # what job authors may choose for their pods
    round_timeout_s: float = 60.0  # an in-place restart round whose trainers do not all run by then: a new gang


@dataclass(frozen=True)
class Event:
    """A Kubernetes Event the plan emits on the job."""

    type: str  # Normal | Warning
    reason: str
    message: str


@dataclass
class Plan:
    """What to do for one job now, and its new status."""

    status: dict[str, Any]
    create: list[dict[str, Any]] = field(default_factory=list)
    replace: list[dict[str, Any]] = field(default_factory=list)
    delete_pods: list[str] = field(default_factory=list)
    delete_job: bool = False
    events: list[Event] = field(default_factory=list)
    requeue_after: float | None = None
    restart_reason: str = ""  # set when this plan starts a gang restart after a failure
    annotate: dict[str, int] = field(default_factory=dict)  # pod name -> the in-place restart round to ask for


def tokens_after(spec: PretrainJobSpec, step: int) -> int:
    """Training tokens consumed after `step` steps: every step trains one global batch."""
    seq = spec.data.sequence_length
    return step * spec.training.batch_samples(seq) * seq


def timestamp(now: datetime) -> str:
    return now.strftime("%Y-%m-%dT%H:%M:%SZ")


def _by_name(read: tuple[Worker, bool]) -> str:
    return read[0].name


class Planner:
    """One reconcile's observations, the plan being built, and what earlier steps found (the spec, the attempt)."""

    # The job's children and rank 0's progress as observed (plan() sets them).
    config_map: dict[str, Any] | None = None
    service: dict[str, Any] | None = None
    progress: dict[str, Any] | None = None
    nodes: dict[str, bool] | None = None  # readiness of the nodes in_place.nodes_to_check named

    def __init__(self, job: dict[str, Any], pods: list[dict[str, Any]], now: datetime, settings: Settings) -> None:
        self.job, self.now, self.settings = job, now, settings
        self.ref = children.JobRef.from_body(job)
        self.generation = job["metadata"].get("generation")
        self.old_phase = (job.get("status") or {}).get("phase")
        self.out = Plan(status={k: v for k, v in (job.get("status") or {}).items() if k != "kopf"})
        read = sorted(((read_worker(pod, now, settings.stuck_grace_s), is_spare(pod)) for pod in pods), key=_by_name)
        self.workers = [w for w, spare in read if not spare]
        self.spares = [w for w, spare in read if spare]  # an elastic job's places held for growing (elastic_steps)
        self.spare_indices: range = range(0)  # the spare pods this plan holds, set by elastic_steps.rescale
        self._spec: PretrainJobSpec | None = None  # set by gate_steps.invalid_spec
        self.attempt = 0  # set by attempt_steps.begin_attempt
        self.current: list[Worker] = []  # this attempt's workers, set by attempt_steps.old_pods_leaving
        self.deadline_in: float | None = None  # seconds to the active deadline, set by attempt_steps

    @property
    def st(self) -> dict[str, Any]:
        return self.out.status

    @property
    def spec(self) -> PretrainJobSpec:
        assert self._spec is not None, "the steps after gate_steps.invalid_spec run with a valid spec"
        return self._spec

    def transition(self, phase: str, reason: str, message: str, warning: bool = False) -> None:
        if self.old_phase != phase or self.st.get("message") != message:
            self.out.events.append(Event("Warning" if warning else "Normal", reason, message))
        self.st["phase"], self.st["message"] = phase, message
        conds = list(self.st.get("conditions") or [])
        now = timestamp(self.now)
        for kind in PHASE_CONDITIONS:
            if kind == phase:
                conds = set_condition(conds, kind, True, reason, message, now, self.generation)
            elif kind in (RUNNING, RESTARTING, SUSPENDED) and get_condition(conds, kind):
                conds = set_condition(conds, kind, False, reason, message, now, self.generation)
        self.st["conditions"] = conds

    def finish(self, phase: str, reason: str, message: str, workers: list[Worker], policy: str) -> Plan:
        self.transition(phase, reason, message, warning=phase == FAILED)
        self.st["completionTime"] = timestamp(self.now)
        self.st.pop("nextStartTime", None)
        self.st.pop(ESTIMATED_COMPLETION_TIME, None)
        self.clean_up(workers, policy)
        self.out.requeue_after = 1.0  # then gate_steps.finished() schedules the TTL
        return self.out

    def clean_up(self, workers: list[Worker], policy: str) -> None:
        doomed = {"All": ("pending", "running", "succeeded", "failed"), "Running": ("pending", "running")}
        self.out.delete_pods += [w.name for w in workers if w.state in doomed.get(policy, ())]

    def stop_gang(self, workers: list[Worker], requeue_after: float | None = 1.0) -> Plan:
        """Delete these workers' pods (those not already going) and wait for them."""
        self.out.delete_pods += [w.name for w in workers if w.state != "terminating"]
        self.st["workersReady"] = 0
        self.st.pop(ESTIMATED_COMPLETION_TIME, None)  # training stops: the estimate no longer holds
        self.out.requeue_after = requeue_after
        return self.out

    def merge_result(self, result: dict[str, Any]) -> None:
        self.st.update({k: result[k] for k in PROGRESS_KEYS if result.get(k) is not None})
