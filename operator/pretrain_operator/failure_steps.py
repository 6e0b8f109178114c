"""The planner's steps after a worker of the current attempt failed: not retried (bad config), a restart counted
against failurePolicy.maxRestarts, a preemption counted apart against failurePolicy.maxPreemptions, or giving up."""

from __future__ import annotations

from datetime import timedelta

from pretrain_trainer.contract import ERROR, FAILED, RESTARTING, pod_name

from . import elastic_steps
from .planner import Plan, Planner, timestamp
from .workers import Worker


def _failures(p: Planner) -> list[Worker]:
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
        for i in range(elastic_steps.gang_size(p))
        if i not in present
    ]


def worker_failed(p: Planner) -> Plan | None:
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
    return restart(p, first) or _out_of_restarts(p, first)


def _restart_after_preemption(p: Planner, cause: Worker) -> Plan | None:
    """A preemption restarts the gang after the base backoff (it says nothing about the job, so the delay does not
    grow), counted in status.preemptions against failurePolicy.maxPreemptions (-1: unlimited)."""
    limit = p.spec.failure_policy.max_preemptions
    preemptions = int(p.st.get("preemptions") or 0)
    if 0 <= limit <= preemptions:
        return None
    preemptions += 1
    elastic_steps.after_preemption(p)
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


def restart(p: Planner, cause: Worker) -> Plan | None:
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


def _out_of_restarts(p: Planner, cause: Worker) -> Plan:
    limit = p.spec.failure_policy.max_restarts
    return give_up(p, "BackoffLimitExceeded", f"{cause.message}; no restarts left (failurePolicy.maxRestarts: {limit})")


def _out_of_preemptions(p: Planner, cause: Worker) -> Plan:
    limit = p.spec.failure_policy.max_preemptions
    message = f"{cause.message}; no restarts left after preemptions (failurePolicy.maxPreemptions: {limit})"
    return give_up(p, "PreemptionLimitExceeded", message)


def give_up(p: Planner, reason: str, message: str, workers: list[Worker] | None = None) -> Plan:
    workers = p.current if workers is None else workers
    p.finish(FAILED, reason, message, workers, p.spec.clean_pod_policy)
    # Gang semantics: a failed job's other workers stop even with cleanPodPolicy None.
    stop = {w.name for w in workers if w.state in ("pending", "running")}
    p.out.delete_pods = sorted(set(p.out.delete_pods) | stop)
    return p.out
