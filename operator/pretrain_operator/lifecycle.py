"""The PretrainJob state machine as one pure function: what is observed in, what to do and the new status out.

    plan(job, pods, config_map, service, progress, now, settings) -> Plan

Phases: Pending (pods created, not all running) → Running → Succeeded, with Restarting (a gang restart after
a worker failure or a preemption, or a resize), Suspended (spec.suspend) and Failed (invalid spec, a worker's
bad-config exit, more failures than failurePolicy.maxRestarts or more preemptions than failurePolicy.maxPreemptions).
Every transition emits an Event and sets a condition. Preemptions (a worker's exit 143 after its checkpoint, an
eviction, a DisruptionTarget condition) are counted apart from failures, in status.preemptions, as JobSet and
Kubeflow do: a job preempted every night does not run out of restarts.

Gang semantics: pods of one start share an `attempt` label. Any worker failing (non-zero exit, eviction,
preemption, a vanished pod, an image that cannot be pulled within the grace period) ends the attempt: all its
pods are deleted and, once they are gone and the backoff has passed, a new attempt starts and the trainer
resumes from its newest complete checkpoint. Pods keep stable names (their hostnames), so a new attempt waits
for the old pods to be gone.

`plan` is a chain of small steps, in this order; the first that settles the plan ends it: finished (clean-up,
TTL) → invalid spec (admission) → children → suspended → deadline exceeded → old pods leaving → resized → gang
start (after the backoff) → a worker failed (not retried, restart, or no restarts left) → succeeded → in progress.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from pretrain_trainer.config import PretrainJobSpec
from pretrain_trainer.contract import (
    ERROR,
    FAILED,
    FINISHED_PHASES,
    PENDING,
    PHASES,
    PROGRESS_KEYS,
    RESTARTING,
    RUNNING,
    SUCCEEDED,
    SUSPENDED,
    pod_name,
)
from pretrain_trainer.errors import redact_url

from . import children
from .admission import admit, lenient_field
from .conditions import get_condition, set_condition
from .policy import Policy, violations
from .progress import ESTIMATED_COMPLETION_TIME, PROGRESS, PROGRESS_TIME, estimate
from .workers import Worker, parse_time, read_worker

log = logging.getLogger("pretrain_operator.lifecycle")
# Failure reasons of a spec refused before anything ran: an edited spec (a new generation) is looked at afresh.
REJECTIONS = ("InvalidSpec", "PolicyViolation")
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
    """One reconcile's observations, the plan being built, and what earlier steps found (the spec, the attempt)."""

    # The job's children and rank 0's progress as observed (plan() sets them).
    config_map: dict[str, Any] | None = None
    service: dict[str, Any] | None = None
    progress: dict[str, Any] | None = None

    def __init__(self, job: dict[str, Any], pods: list[dict[str, Any]], now: datetime, settings: Settings) -> None:
        self.job, self.now, self.settings = job, now, settings
        self.ref = children.JobRef.from_body(job)
        self.generation = job["metadata"].get("generation")
        self.old_phase = (job.get("status") or {}).get("phase")
        self.out = Plan(status={k: v for k, v in (job.get("status") or {}).items() if k != "kopf"})
        self.workers = sorted((read_worker(pod, now, settings.stuck_grace_s) for pod in pods), key=lambda w: w.name)
        self._spec: PretrainJobSpec | None = None  # set by _invalid_spec
        self.attempt = 0  # set by _begin_attempt
        self.current: list[Worker] = []  # this attempt's workers, set by _old_pods_leaving
        self.deadline_in: float | None = None  # seconds to spec.activeDeadlineSeconds, set by _deadline_exceeded

    @property
    def st(self) -> dict[str, Any]:
        return self.out.status

    @property
    def spec(self) -> PretrainJobSpec:
        assert self._spec is not None, "the steps after _invalid_spec run with a valid spec"
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
        self.out.requeue_after = 1.0  # then _finished() schedules the TTL
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


def plan(
    job: dict[str, Any],
    pods: list[dict[str, Any]],
    config_map: dict[str, Any] | None,
    service: dict[str, Any] | None,
    progress: dict[str, Any] | None,
    now: datetime,
    settings: Settings,
) -> Plan:
    """Everything the operator should do for `job` now. Pure: same inputs, same plan.

    Each step either settles the plan (returns it) or lets the next one look; steps that return nothing may still
    add to the plan (the children, the attempt number, progress)."""
    try:
        p = _Planner(job, pods, now, settings)
        p.config_map, p.service, p.progress = config_map, service, progress
        out = _steps(p)
        if p.deadline_in is not None:  # look again when the deadline passes
            out.requeue_after = min(out.requeue_after or p.deadline_in, p.deadline_in)
        return out
    except Exception as exc:  # the same inputs fail the same way: retrying would loop, so the job fails instead
        log.exception("a PretrainJob the operator cannot handle")
        return _cannot_handle(job, now, exc)


def _steps(p: _Planner) -> Plan:
    return (
        _finished(p)
        or _invalid_spec(p)
        or _policy_violation(p)
        or _sync_children(p)
        or _suspended(p)
        or _begin_attempt(p)
        or _deadline_exceeded(p)
        or _old_pods_leaving(p)
        or _resized(p)
        or _start_gang(p)
        or _merge_progress(p)
        or _worker_failed(p)
        or _succeeded(p)
        or _in_progress(p)
    )


def _cannot_handle(job: Any, now: datetime, exc: Exception) -> Plan:
    """Failed/InvalidSpec for a job whose spec (or status) got past the checks but breaks a step: the job gets a
    status that says so instead of the operator retrying it forever."""
    return invalid(job, now, f"the operator cannot handle this job ({type(exc).__name__}: {exc})")


def refused_by_api(job: dict[str, Any], now: datetime, refusal: str, created: Plan) -> Plan:
    """Failed/InvalidSpec when the API server refuses a child the operator built (HTTP 400/422): the same spec
    would be refused on every retry. The pods of the refused plan that did get created are deleted."""
    out = invalid(job, now, f"the API server refused the job's pods or config: {refusal}")
    out.delete_pods = [obj["metadata"]["name"] for obj in created.create if obj["kind"] == "Pod"]
    return out


def invalid(job: Any, now: datetime, why: str) -> Plan:
    """The plan that fails `job` with reason InvalidSpec and `why`, from whatever its body holds."""
    body = job if isinstance(job, dict) else {}
    old = body.get("status") if isinstance(body.get("status"), dict) else {}
    meta = body.get("metadata") if isinstance(body.get("metadata"), dict) else {}
    message = redact_url(f"invalid spec: {why}")[:1000]
    status = {k: v for k, v in old.items() if k != "kopf"}
    conditions = status.get("conditions") if isinstance(status.get("conditions"), list) else []
    generation = meta.get("generation")
    status.update(phase=FAILED, message=message, observedGeneration=generation)
    status.setdefault("completionTime", timestamp(now))
    status["conditions"] = set_condition(conditions, FAILED, True, "InvalidSpec", message, timestamp(now), generation)
    seen = (old.get("phase"), old.get("message")) == (FAILED, message)
    return Plan(status=status, events=[] if seen else [Event("Warning", "InvalidSpec", message)])


def _spec_fixed_after_rejection(p: _Planner) -> bool:
    failed = get_condition(p.st.get("conditions") or [], FAILED) or {}
    return failed.get("reason") in REJECTIONS and p.st.get("observedGeneration") != p.generation


def _finished(p: _Planner) -> Plan | None:
    """A Succeeded or Failed job: apply the clean-pod policy, then its TTL. (Its spec may be invalid, so the two
    fields are read on their own.)"""
    if p.old_phase not in FINISHED_PHASES or _spec_fixed_after_rejection(p):
        return None
    raw = p.job.get("spec")
    p.clean_up(p.workers, lenient_field(raw, "clean_pod_policy"))
    ttl = lenient_field(raw, "ttl_seconds_after_finished")
    done = parse_time(p.st.get("completionTime"))
    if ttl > 0 and done is not None:
        due = done + timedelta(seconds=ttl)
        if p.now >= due:
            p.out.delete_job = True
            message = f"deleted {ttl} s after it finished (ttlSecondsAfterFinished)"
            p.out.events.append(Event("Normal", "Expired", message))
        else:
            p.out.requeue_after = (due - p.now).total_seconds()
    return p.out


def _invalid_spec(p: _Planner) -> Plan | None:
    """Admission: a job whose spec was never valid fails; otherwise the spec to run with is settled here."""
    st = p.st
    if _spec_fixed_after_rejection(p):  # start over
        st.pop("completionTime", None)
        st["conditions"] = set_condition(
            st.get("conditions") or [], FAILED, False, "SpecChanged", "the spec changed", timestamp(p.now)
        )
    accepted = children.accepted_spec_of(p.config_map) if p.config_map else None
    adm = admit(p.ref.name, p.ref.namespace, p.job.get("spec") or {}, accepted)
    st["observedGeneration"] = p.generation
    if adm.spec is None:
        message = "invalid spec: " + "; ".join(map(str, adm.problems))
        return p.finish(FAILED, "InvalidSpec", message, p.workers, "All")
    p._spec = adm.spec
    _admission_condition(p, adm.refused)
    st["maxSteps"] = adm.spec.training.max_steps
    return None


def _policy_violation(p: _Planner) -> Plan | None:
    """The operator-wide policy (policy.py), before any child exists and on every reconcile after."""
    problems = violations(p.spec, p.settings.policy)
    if not problems:
        return None
    message = "refused by the operator's policy: " + "; ".join(map(str, problems))
    return p.finish(FAILED, "PolicyViolation", message, p.workers, "All")


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


def _sync_children(p: _Planner) -> None:
    """The ConfigMap holds the spec in effect; the headless Service exists."""
    desired = children.build_config_map(p.ref, p.spec)
    if p.config_map is None:
        p.out.create.append(desired)
    elif p.config_map.get("data") != desired["data"]:
        p.out.replace.append(desired)
    if p.service is None:
        p.out.create.append(children.build_service(p.ref))


def _suspended(p: _Planner) -> Plan | None:
    if not p.spec.suspend:
        return None
    running = sum(w.state in ("pending", "running") for w in p.workers)
    message = (
        f"suspended; {running} workers stopping (SIGTERM: they checkpoint, then exit)"
        if running
        else "suspended; no workers run; set spec.suspend: false to resume from the newest checkpoint"
    )
    p.transition(SUSPENDED, SUSPENDED, message)
    return p.stop_gang(p.workers, requeue_after=p.settings.resync_s if p.workers else None)


def _begin_attempt(p: _Planner) -> None:
    """The first start, or a resume, begins a new attempt (a gang of pods labelled with its number)."""
    p.attempt = int(p.st.get("attempt") or 0)
    if p.old_phase == SUSPENDED or p.attempt == 0:
        p.attempt += 1
        p.st["attempt"] = p.attempt
        p.st.setdefault("startTime", timestamp(p.now))
        if p.old_phase == SUSPENDED:
            p.st["startTime"] = timestamp(p.now)  # as for batch Jobs: the active deadline counts from the resume
            p.transition(PENDING, "Resumed", "resumed; starting workers from the newest checkpoint")


def _deadline_exceeded(p: _Planner) -> Plan | None:
    """spec.activeDeadlineSeconds past status.startTime: the job fails and every worker stops, as a batch Job's
    would. A gang that has just succeeded wins over a deadline that passed meanwhile."""
    limit = p.spec.active_deadline_seconds
    started = parse_time(p.st.get("startTime"))
    if not limit or started is None:
        return None
    left = (started + timedelta(seconds=limit) - p.now).total_seconds()
    done = sum(w.state == "succeeded" for w in p.workers if w.attempt == p.attempt)
    if left > 0 or done == p.spec.workers.replicas:
        p.deadline_in = max(left, 0.0) or None
        return None
    message = f"active longer than spec.activeDeadlineSeconds ({limit} s since {p.st['startTime']}); workers stopped"
    return _give_up(p, "DeadlineExceeded", message, p.workers)


def _old_pods_leaving(p: _Planner) -> Plan | None:
    """Pods keep their names across attempts: a new gang waits until the previous one's pods are gone."""
    p.current = [w for w in p.workers if w.attempt == p.attempt]
    stale = [w for w in p.workers if w.attempt != p.attempt]
    return p.stop_gang(stale) if stale else None


def _resized(p: _Planner) -> Plan | None:
    world = p.spec.workers.world_size
    if not p.current or p.st.get("worldSize") in (None, world):
        return None
    p.st["attempt"] = p.attempt + 1
    p.transition(
        RESTARTING,
        "Resized",
        f"workers.replicas changed: restarting with world size {world} (was {p.st['worldSize']}); "
        "the trainer resumes from the newest checkpoint at the exact next sample",
    )
    return p.stop_gang(p.current)


def _start_gang(p: _Planner) -> Plan | None:
    """No pods of this attempt yet: create them once the backoff has passed."""
    if p.current:
        return None
    not_before = parse_time(p.st.get("nextStartTime"))
    if not_before and not_before > p.now:
        p.out.requeue_after = (not_before - p.now).total_seconds()
        return p.out
    spec = p.spec
    p.out.create += children.build_pods(p.ref, spec, p.attempt, p.settings.image)
    p.st["worldSize"] = spec.workers.world_size
    p.st.pop("nextStartTime", None)
    p.st["workersReady"] = 0
    p.transition(
        RESTARTING if p.old_phase == RESTARTING else PENDING,
        "WorkersCreated",
        f"created {spec.workers.replicas} worker pods × {spec.workers.procs_per_worker} processes "
        f"(attempt {p.attempt})",
    )
    p.out.requeue_after = p.settings.resync_s
    return p.out


def _merge_progress(p: _Planner) -> None:
    """Progress from rank 0's /metrics, then from its termination message (the final word)."""
    if p.progress:
        p.merge_result(p.progress)
    rank0 = next((w for w in p.current if w.index == 0), None)
    if rank0 is not None and rank0.result:
        p.merge_result(rank0.result)
    if p.st.get("step") is not None:
        p.st["tokensSeen"] = tokens_after(p.spec, p.st["step"])
    if p.progress or (rank0 is not None and rank0.result):
        p.st[PROGRESS_TIME] = timestamp(p.now)
        rate = p.st.get("tokensPerSecond")
        p.st.update(estimate(p.st.get("step"), p.spec.training.max_steps, tokens_after(p.spec, 1), rate, p.now))


def _failures(p: _Planner) -> list[Worker]:
    """Failed workers of this attempt, or, when none failed, the ones whose pods vanished (a lost node)."""
    failures = [w for w in p.current if w.state == "failed"]
    if failures:
        return failures
    present = {w.index for w in p.current}
    return [
        Worker(
            name=pod_name(p.ref.name, i),
            index=i,
            attempt=p.attempt,
            state="failed",
            reason="WorkerLost",
            message=f"{pod_name(p.ref.name, i)} disappeared (deleted, or its node was lost)",
        )
        for i in range(p.spec.workers.replicas)
        if i not in present
    ]


def _worker_failed(p: _Planner) -> Plan | None:
    """A failure ends the attempt: not retried when the worker said its config is bad, else a gang restart while
    restarts are left."""
    failures = _failures(p)
    if not failures:
        return None
    fatal = next((w for w in failures if not w.retryable), None)
    if fatal is not None:
        message = f"{fatal.message}: bad config or data, not retried; fix the spec (see the pod's log)"
        return p.finish(FAILED, "InvalidConfig", message, p.current, "Running")
    preempted = [w for w in failures if w.preempted]
    if preempted:  # the other failures follow from it (a peer lost mid-collective)
        cause = min(preempted, key=lambda w: w.index)
        return _restart_after_preemption(p, cause) or _out_of_preemptions(p, cause)
    # A worker that said why it stopped is the cause; else the first by index. The others usually follow from it.
    first = min(failures, key=lambda w: (not w.result.get(ERROR), w.index))
    return _restart(p, first) or _out_of_restarts(p, first)


def _restart_after_preemption(p: _Planner, cause: Worker) -> Plan | None:
    """A preemption restarts the gang after the base backoff (it says nothing about the job, so the delay does not
    grow), counted in status.preemptions against failurePolicy.maxPreemptions (-1: unlimited)."""
    limit = p.spec.failure_policy.max_preemptions
    preemptions = int(p.st.get("preemptions") or 0)
    if 0 <= limit <= preemptions:
        return None
    preemptions += 1
    delay = min(p.settings.backoff_base_s, p.settings.backoff_max_s)
    p.st["preemptions"], p.st["attempt"] = preemptions, p.attempt + 1
    p.st["nextStartTime"] = timestamp(p.now + timedelta(seconds=delay))
    p.out.restart_reason = cause.reason
    of = "unlimited" if limit < 0 else str(limit)
    p.transition(
        RESTARTING,
        cause.reason,
        f"{cause.message}; preemption {preemptions} (failurePolicy.maxPreemptions: {of}), not counted against "
        f"failurePolicy.maxRestarts; gang restart in {delay:g} s, resuming from the newest checkpoint",
        warning=True,
    )
    return p.stop_gang(p.current)


def _restart(p: _Planner, cause: Worker) -> Plan | None:
    max_restarts = p.spec.failure_policy.max_restarts
    restarts = int(p.st.get("restarts") or 0)
    if restarts >= max_restarts:
        return None
    restarts += 1
    delay = min(p.settings.backoff_base_s * 2 ** (restarts - 1), p.settings.backoff_max_s)
    p.st["restarts"], p.st["attempt"] = restarts, p.attempt + 1
    p.st["nextStartTime"] = timestamp(p.now + timedelta(seconds=delay))
    p.out.restart_reason = cause.reason
    p.transition(
        RESTARTING,
        cause.reason,
        f"{cause.message}; gang restart {restarts}/{max_restarts} in {delay:g} s, resuming from the newest checkpoint",
        warning=True,
    )
    return p.stop_gang(p.current)


def _out_of_restarts(p: _Planner, cause: Worker) -> Plan:
    limit = p.spec.failure_policy.max_restarts
    return _give_up(
        p, "BackoffLimitExceeded", f"{cause.message}; no restarts left (failurePolicy.maxRestarts: {limit})"
    )


def _out_of_preemptions(p: _Planner, cause: Worker) -> Plan:
    limit = p.spec.failure_policy.max_preemptions
    message = f"{cause.message}; no restarts left after preemptions (failurePolicy.maxPreemptions: {limit})"
    return _give_up(p, "PreemptionLimitExceeded", message)


def _give_up(p: _Planner, reason: str, message: str, workers: list[Worker] | None = None) -> Plan:
    workers = p.current if workers is None else workers
    p.finish(FAILED, reason, message, workers, p.spec.clean_pod_policy)
    # Gang semantics: a failed job's other workers stop even with cleanPodPolicy None.
    stop = {w.name for w in workers if w.state in ("pending", "running")}
    p.out.delete_pods = sorted(set(p.out.delete_pods) | stop)
    return p.out


def _succeeded(p: _Planner) -> Plan | None:
    spec = p.spec
    if sum(w.state == "succeeded" for w in p.current) != spec.workers.replicas:
        return None
    p.st["step"] = spec.training.max_steps  # exit code 0 means every step ran
    p.st[PROGRESS] = 100.0
    p.st["tokensSeen"] = tokens_after(spec, p.st["step"])
    p.st["workersReady"] = 0
    message = f"trained {spec.training.max_steps} steps with {spec.workers.world_size} processes"
    return p.finish(SUCCEEDED, "Completed", message, p.current, spec.clean_pod_policy)


def _in_progress(p: _Planner) -> Plan:
    """Running once every worker runs (or is done); until then, what the first waiting worker waits for."""
    replicas = p.spec.workers.replicas
    running = sum(w.state == "running" for w in p.current)
    done = sum(w.state == "succeeded" for w in p.current)
    p.st["workersReady"] = running
    if running + done == replicas:
        p.transition(
            RUNNING,
            "WorkersRunning",
            f"{replicas} workers × {p.spec.workers.procs_per_worker} processes training (attempt {p.attempt})",
        )
    else:
        waiting = next((w for w in p.current if w.state == "pending" and w.message), None)
        p.st["message"] = waiting.message if waiting is not None else f"{running}/{replicas} workers running"
    p.out.requeue_after = p.settings.resync_s
    return p.out
