"""The PretrainJob state machine as one pure function: what is observed in, what to do and the new status out.

    plan(job, pods, config_map, service, progress, now, settings) -> Plan

Phases: Pending (pods created, not all running) → Running → Succeeded, with Restarting (a gang restart after
a worker failure, or a resize), Suspended (spec.suspend) and Failed (invalid spec, a worker's bad-config exit,
or more failures than failurePolicy.maxRestarts). Every transition emits an Event and sets a condition.

Gang semantics: pods of one start share an `attempt` label. Any worker failing (non-zero exit, eviction,
preemption, a vanished pod, an image that cannot be pulled within the grace period) ends the attempt: all its
pods are deleted and, once they are gone and the backoff has passed, a new attempt starts and the trainer
resumes from its newest complete checkpoint. Pods keep stable names (their hostnames), so a new attempt waits
for the old pods to be gone.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from pretrain_trainer.config import PretrainJobSpec
from pretrain_trainer.contract import PENDING, PHASES, PROGRESS_KEYS

from . import children
from .admission import admit
from .conditions import get_condition, set_condition
from .workers import Worker, parse_time, read_worker

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


@dataclass(frozen=True)
class Event:
    type: str  # Normal | Warning
    reason: str
    message: str


@dataclass
class Plan:
    status: dict[str, Any]
    create: list[dict[str, Any]] = field(default_factory=list)
    replace: list[dict[str, Any]] = field(default_factory=list)
    delete_pods: list[str] = field(default_factory=list)
    delete_job: bool = False
    events: list[Event] = field(default_factory=list)
    requeue_after: float | None = None
    restart_reason: str = ""  # set when this plan starts a gang restart after a failure


def tokens_after(spec: PretrainJobSpec, step: int) -> int:
    """Training tokens consumed after `step` steps: every step trains one global batch."""
    seq = spec.data.sequence_length
    return step * spec.training.batch_samples(seq) * seq


def timestamp(now: datetime) -> str:
    return now.strftime("%Y-%m-%dT%H:%M:%SZ")


class _Planner:
    def __init__(self, job: dict[str, Any], now: datetime, settings: Settings) -> None:
        self.job, self.now, self.settings = job, now, settings
        self.ref = children.JobRef.from_body(job)
        self.generation = job["metadata"].get("generation")
        self.old_phase = (job.get("status") or {}).get("phase")
        self.out = Plan(status={k: v for k, v in (job.get("status") or {}).items() if k != "kopf"})

    @property
    def st(self) -> dict[str, Any]:
        return self.out.status

    def transition(self, phase: str, reason: str, message: str, warning: bool = False) -> None:
        if self.old_phase != phase or self.st.get("message") != message:
            self.out.events.append(Event("Warning" if warning else "Normal", reason, message))
        self.st["phase"], self.st["message"] = phase, message
        conds = list(self.st.get("conditions") or [])
        now = timestamp(self.now)
        for kind in PHASE_CONDITIONS:
            if kind == phase:
                conds = set_condition(conds, kind, True, reason, message, now, self.generation)
            elif kind in ("Running", "Restarting", "Suspended") and get_condition(conds, kind):
                conds = set_condition(conds, kind, False, reason, message, now, self.generation)
        self.st["conditions"] = conds

    def finish(self, phase: str, reason: str, message: str, workers: list[Worker], policy: str) -> None:
        self.transition(phase, reason, message, warning=phase == "Failed")
        self.st["completionTime"] = timestamp(self.now)
        self.st.pop("nextStartTime", None)
        self.clean_up(workers, policy)
        self.out.requeue_after = 1.0  # then _finished() schedules the TTL

    def clean_up(self, workers: list[Worker], policy: str) -> None:
        doomed = {"All": ("pending", "running", "succeeded", "failed"), "Running": ("pending", "running")}
        self.out.delete_pods += [w.name for w in workers if w.state in doomed.get(policy, ())]

    def merge_result(self, result: dict[str, Any]) -> None:
        self.st.update({k: result[k] for k in PROGRESS_KEYS if result.get(k) is not None})


def _phase_counts(workers: list[Worker]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for w in workers:
        counts[w.state] = counts.get(w.state, 0) + 1
    return counts


def plan(
    job: dict[str, Any],
    pods: list[dict[str, Any]],
    config_map: dict[str, Any] | None,
    service: dict[str, Any] | None,
    progress: dict[str, Any] | None,
    now: datetime,
    settings: Settings,
) -> Plan:
    """Everything the operator should do for `job` now. Pure: same inputs, same plan."""
    p = _Planner(job, now, settings)
    st, raw = p.st, job.get("spec") or {}
    workers = sorted((read_worker(pod, now, settings.stuck_grace_s) for pod in pods), key=lambda w: w.name)
    failed_cond = get_condition(st.get("conditions") or [], "Failed") or {}
    retry_invalid = failed_cond.get("reason") == "InvalidSpec" and st.get("observedGeneration") != p.generation

    if p.old_phase in ("Succeeded", "Failed") and not retry_invalid:
        return _finished(p, raw, workers)

    if retry_invalid:  # the spec was fixed after it was rejected: start over
        st.pop("completionTime", None)
        st["conditions"] = set_condition(
            st.get("conditions") or [], "Failed", False, "SpecChanged", "the spec changed", timestamp(now)
        )
    accepted = children.accepted_spec_of(config_map) if config_map else None
    adm = admit(p.ref.name, p.ref.namespace, raw, accepted)
    st["observedGeneration"] = p.generation
    if adm.spec is None:
        message = "invalid spec: " + "; ".join(map(str, adm.problems))
        p.finish("Failed", "InvalidSpec", message, workers, "All")
        return p.out
    spec = adm.spec
    _admission_condition(p, adm.refused)
    st["maxSteps"] = spec.training.max_steps

    desired_cm = children.build_config_map(p.ref, spec)
    if config_map is None:
        p.out.create.append(desired_cm)
    elif config_map.get("data") != desired_cm["data"]:
        p.out.replace.append(desired_cm)
    if service is None:
        p.out.create.append(children.build_service(p.ref))

    live = [w for w in workers if w.state != "terminating"]
    if spec.suspend:
        p.out.delete_pods += [w.name for w in live]
        running = sum(w.state in ("pending", "running") for w in workers)
        message = (
            f"suspended; {running} workers stopping (SIGTERM: they checkpoint, then exit)"
            if running
            else "suspended; no workers run; set spec.suspend: false to resume from the newest checkpoint"
        )
        p.transition("Suspended", "Suspended", message)
        st["workersReady"] = 0
        p.out.requeue_after = settings.resync_s if workers else None
        return p.out

    attempt = int(st.get("attempt") or 0)
    if p.old_phase == "Suspended" or attempt == 0:
        attempt += 1
        st["attempt"] = attempt
        st.setdefault("startTime", timestamp(now))
        if p.old_phase == "Suspended":
            p.transition("Pending", "Resumed", "resumed; starting workers from the newest checkpoint")

    current = [w for w in workers if w.attempt == attempt]
    stale = [w for w in workers if w.attempt != attempt]
    if stale:
        p.out.delete_pods += [w.name for w in stale if w.state != "terminating"]
        p.out.requeue_after = 1.0
        st["workersReady"] = 0
        return p.out

    world = spec.workers.world_size
    if current and st.get("worldSize") not in (None, world):
        p.out.delete_pods += [w.name for w in current if w.state != "terminating"]
        st["attempt"] = attempt + 1
        p.transition(
            "Restarting",
            "Resized",
            f"workers.replicas changed: restarting with world size {world} (was {st['worldSize']}); "
            "the trainer resumes from the newest checkpoint at the exact next sample",
        )
        st["workersReady"] = 0
        p.out.requeue_after = 1.0
        return p.out

    if not current:
        not_before = parse_time(st.get("nextStartTime"))
        if not_before and not_before > now:
            p.out.requeue_after = (not_before - now).total_seconds()
            return p.out
        p.out.create += children.build_pods(p.ref, spec, attempt, settings.image)
        st["worldSize"] = world
        st.pop("nextStartTime", None)
        st["workersReady"] = 0
        p.transition(
            "Restarting" if p.old_phase == "Restarting" else "Pending",
            "WorkersCreated",
            f"created {spec.workers.replicas} worker pods × {spec.workers.procs_per_worker} processes "
            f"(attempt {attempt})",
        )
        p.out.requeue_after = settings.resync_s
        return p.out

    return _running(p, spec, current, progress, attempt)


def _admission_condition(p: _Planner, refused: str) -> None:
    conds = p.st.get("conditions") or []
    old = get_condition(conds, "SpecAccepted") or {}
    now = timestamp(p.now)
    if refused:
        if old.get("message") != refused:
            p.out.events.append(Event("Warning", "SpecChangeRefused", refused))
        p.st["conditions"] = set_condition(conds, "SpecAccepted", False, "ChangeRefused", refused, now, p.generation)
    elif old.get("status") != "True":
        message = "the spec is valid and in effect"
        p.st["conditions"] = set_condition(conds, "SpecAccepted", True, "Accepted", message, now, p.generation)


def _running(
    p: _Planner, spec: PretrainJobSpec, current: list[Worker], progress: dict[str, Any] | None, attempt: int
) -> Plan:
    st, settings = p.st, p.settings
    replicas = spec.workers.replicas
    by_index = {w.index: w for w in current}
    failures = [w for w in current if w.state == "failed"]
    missing = [i for i in range(replicas) if i not in by_index]
    if not failures and missing:
        failures = [
            Worker(
                name=children.naming.pod_name(p.ref.name, i),
                index=i,
                attempt=attempt,
                state="failed",
                reason="WorkerLost",
                message=f"{children.naming.pod_name(p.ref.name, i)} disappeared (deleted, or its node was lost)",
            )
            for i in missing
        ]
    rank0 = by_index.get(0)
    if progress:
        p.merge_result(progress)
    if rank0 is not None and rank0.result:
        p.merge_result(rank0.result)
    if st.get("step") is not None:
        st["tokensSeen"] = tokens_after(spec, st["step"])

    if failures:
        # The first failure by index is the cause; the others usually follow from it (a lost peer).
        first = min(failures, key=lambda w: w.index)
        live = [w.name for w in current if w.state not in ("terminating",)]
        fatal = next((w for w in failures if not w.retryable), None)
        if fatal is not None:
            message = f"{fatal.message}: bad config or data, not retried; fix the spec (see the pod's log)"
            p.finish("Failed", "InvalidConfig", message, current, "Running")
            return p.out
        restarts = int(st.get("restarts") or 0)
        if restarts < spec.failure_policy.max_restarts:
            restarts += 1
            delay = min(settings.backoff_base_s * 2 ** (restarts - 1), settings.backoff_max_s)
            st["restarts"], st["attempt"] = restarts, attempt + 1
            st["nextStartTime"] = timestamp(p.now + timedelta(seconds=delay))
            st["workersReady"] = 0
            p.out.delete_pods += live
            p.out.restart_reason = first.reason
            p.transition(
                "Restarting",
                first.reason,
                f"{first.message}; gang restart {restarts}/{spec.failure_policy.max_restarts} in {delay:g} s, "
                "resuming from the newest checkpoint",
                warning=True,
            )
            p.out.requeue_after = 1.0
            return p.out
        message = f"{first.message}; no restarts left (failurePolicy.maxRestarts: {spec.failure_policy.max_restarts})"
        p.finish("Failed", "BackoffLimitExceeded", message, current, spec.clean_pod_policy)
        # Gang semantics: a failed job's other workers stop even with cleanPodPolicy None.
        stop = {w.name for w in current if w.state in ("pending", "running")}
        p.out.delete_pods = sorted(set(p.out.delete_pods) | stop)
        return p.out

    counts = _phase_counts(current)
    st["workersReady"] = counts.get("running", 0)
    if counts.get("succeeded", 0) == replicas:
        st["step"] = spec.training.max_steps  # exit code 0 means every step ran
        st["tokensSeen"] = tokens_after(spec, st["step"])
        p.finish(
            "Succeeded",
            "Completed",
            f"trained {spec.training.max_steps} steps with {spec.workers.world_size} processes",
            current,
            spec.clean_pod_policy,
        )
        return p.out
    if counts.get("running", 0) + counts.get("succeeded", 0) == replicas:
        p.transition(
            "Running",
            "WorkersRunning",
            f"{replicas} workers × {spec.workers.procs_per_worker} processes training (attempt {attempt})",
        )
    else:
        waiting = next((w for w in current if w.state == "pending" and w.message), None)
        running = counts.get("running", 0)
        st["message"] = waiting.message if waiting is not None else f"{running}/{replicas} workers running"
    p.out.requeue_after = settings.resync_s
    return p.out


def _finished(p: _Planner, raw: dict[str, Any], workers: list[Worker]) -> Plan:
    """A Succeeded or Failed job: apply the clean-pod policy, then its TTL."""
    p.clean_up(workers, raw.get("cleanPodPolicy", "Running") if isinstance(raw, dict) else "Running")
    ttl = raw.get("ttlSecondsAfterFinished", 0) if isinstance(raw, dict) else 0
    done = parse_time(p.st.get("completionTime"))
    if isinstance(ttl, int) and ttl > 0 and done is not None:
        due = done + timedelta(seconds=ttl)
        if p.now >= due:
            p.out.delete_job = True
            message = f"deleted {ttl} s after it finished (ttlSecondsAfterFinished)"
            p.out.events.append(Event("Normal", "Expired", message))
        else:
            p.out.requeue_after = (due - p.now).total_seconds()
    return p.out
