"""The planner's steps for one attempt (a gang of pods labelled with its number): its start after the backoff, the
active deadline, the previous gang's pods leaving, a resize, rank 0's progress, success, and the in-progress status."""

from __future__ import annotations

from datetime import timedelta

from pretrain_trainer.contract import PENDING, RESTARTING, RUNNING, SUCCEEDED, SUSPENDED

from . import children, elastic_steps, in_place
from .elastic import Bounds
from .failure_steps import give_up
from .planner import Plan, Planner, timestamp, tokens_after
from .progress import PROGRESS, PROGRESS_TIME, estimate
from .workers import parse_time


def begin_attempt(p: Planner) -> None:
    """The first start, or a resume, begins a new attempt (a gang of pods labelled with its number)."""
    p.attempt = int(p.st.get("attempt") or 0)
    if p.old_phase == SUSPENDED or p.attempt == 0:
        p.attempt += 1
        p.st["attempt"] = p.attempt
        p.st.setdefault("startTime", timestamp(p.now))
        elastic_steps.fresh_start(p)
        if p.old_phase == SUSPENDED:
            p.st["startTime"] = timestamp(p.now)  # as for batch Jobs: the active deadline counts from the resume
            p.transition(PENDING, "Resumed", "resumed; starting workers from the newest checkpoint")


def deadline_exceeded(p: Planner) -> Plan | None:
    """spec.activeDeadlineSeconds past status.startTime: the job fails and every worker stops, as a batch Job's
    would. A gang that has just succeeded wins over a deadline that passed meanwhile."""
    limit = p.spec.active_deadline_seconds
    started = parse_time(p.st.get("startTime"))
    if not limit or started is None:
        return None
    left = (started + timedelta(seconds=limit) - p.now).total_seconds()
    done = sum(w.state == "succeeded" for w in p.workers if w.attempt == p.attempt)
    if left > 0 or done == elastic_steps.gang_size(p):
        p.deadline_in = max(left, 0.0) or None
        return None
    message = f"active longer than spec.activeDeadlineSeconds ({limit} s since {p.st['startTime']}); workers stopped"
    return give_up(p, "DeadlineExceeded", message, p.workers)


def old_pods_leaving(p: Planner) -> Plan | None:
    """Pods keep their names across attempts: a new gang waits until the previous one's pods are gone."""
    p.current = [w for w in p.workers if w.attempt == p.attempt]
    stale = [w for w in p.workers if w.attempt != p.attempt]
    return p.stop_gang(stale) if stale else None


def start_gang(p: Planner) -> Plan | None:
    """No pods of this attempt yet: create them once the backoff has passed."""
    if p.current:
        return None
    not_before = parse_time(p.st.get("nextStartTime"))
    if not_before and not_before > p.now:
        p.out.requeue_after = (not_before - p.now).total_seconds()
        return p.out
    spec, size = p.spec, elastic_steps.desired_size(p)
    p.out.create += children.build_pods(p.ref, spec, p.attempt, p.settings.image, size)
    elastic_steps.started(p, size)
    p.st.pop("nextStartTime", None)
    in_place.new_gang(p.st)
    p.st["workersReady"] = 0
    p.transition(
        RESTARTING if p.old_phase == RESTARTING else PENDING,
        "WorkersCreated",
        f"created {size} worker pods × {spec.workers.procs_per_worker} processes (attempt {p.attempt})",
    )
    p.out.requeue_after = p.settings.resync_s
    return p.out


def merge_progress(p: Planner) -> None:
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


def succeeded(p: Planner) -> Plan | None:
    spec = p.spec
    if sum(w.state == "succeeded" for w in p.current) != elastic_steps.gang_size(p):
        return None
    p.st["step"] = spec.training.max_steps  # exit code 0 means every step ran
    p.st[PROGRESS] = 100.0
    p.st["tokensSeen"] = tokens_after(spec, p.st["step"])
    p.st["workersReady"] = 0
    message = f"trained {spec.training.max_steps} steps with {p.st['worldSize']} processes"
    return p.finish(SUCCEEDED, "Completed", message, p.current, spec.clean_pod_policy)


def in_progress(p: Planner) -> Plan:
    """Running once every worker runs (or is done); until then, what the first waiting worker waits for. A pod
    with in-place restarts runs once its trainers do (it is ready)."""
    replicas = elastic_steps.gang_size(p)
    running = sum(w.state == "running" and (w.ready or w.restart_round is None) for w in p.current)
    done = sum(w.state == "succeeded" for w in p.current)
    p.st["workersReady"] = running
    if running + done == replicas:
        bounds = Bounds.of(p.spec.workers)
        elastic = f" (elastic: {bounds.fewest} to {bounds.most} workers)" if bounds.elastic else ""
        p.transition(
            RUNNING,
            "WorkersRunning",
            f"{replicas} workers × {p.spec.workers.procs_per_worker} processes training (attempt {p.attempt}){elastic}",
        )
    else:
        waiting = next((w for w in p.current if w.state == "pending" and w.message), None)
        p.st["message"] = waiting.message if waiting is not None else f"{running}/{replicas} workers running"
    p.out.requeue_after = p.settings.resync_s
    return p.out
