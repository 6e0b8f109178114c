"""The PretrainJob state machine as one pure function: what is observed in, what to do and the new status out.

    plan(job, pods, config_map, service, progress, now, settings, nodes) -> Plan

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
A trainer that fails in healthy pods on Ready nodes is restarted in place instead (in_place.py): the pods stay,
their trainer processes start again in a new rendezvous round.

Elastic jobs (workers.minReplicas below replicas) resize the gang the same way, as a restart on another number
of pods: elastic.py decides the size, elastic_steps.py applies it and holds the spare pods that find capacity.

`plan` is a chain of small steps, in this order; the first that settles the plan ends it: finished (clean-up,
TTL) → invalid spec (admission) → children → suspended → deadline exceeded → old pods leaving → out of the
size range (an edit) → gang start (after the backoff) → a worker failed (not retried, restart, or no restarts
left) → trainers failed in running pods (in place, or a new gang) → elastic resize → succeeded → in progress; then
the spare pods are settled, whatever step ended the plan. The steps live in gate_steps.py (up to suspended),
attempt_steps.py (one attempt), failure_steps.py (a worker failed), in_place.py (trainers failed in running pods)
and elastic_steps.py (the gang's size); the types and the Planner they share in planner.py.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from pretrain_trainer.contract import FAILED
from pretrain_trainer.errors import redact_url

from . import attempt_steps, elastic_steps, failure_steps, gate_steps, in_place
from .conditions import set_condition
from .planner import Event, Plan, Planner, Settings, timestamp, tokens_after

__all__ = ["Event", "Plan", "Settings", "invalid", "plan", "refused_by_api", "timestamp", "tokens_after"]

log = logging.getLogger("pretrain_operator.lifecycle")


def plan(
    job: dict[str, Any],
    pods: list[dict[str, Any]],
    config_map: dict[str, Any] | None,
    service: dict[str, Any] | None,
    progress: dict[str, Any] | None,
    now: datetime,
    settings: Settings,
    nodes: dict[str, bool] | None = None,
) -> Plan:
    """Everything the operator should do for `job` now. Pure: same inputs, same plan.

    Each step either settles the plan (returns it) or lets the next one look; steps that return nothing may still
    add to the plan (the children, the attempt number, progress)."""
    try:
        p = Planner(job, pods, now, settings)
        p.config_map, p.service, p.progress, p.nodes = config_map, service, progress, nodes
        out = _steps(p)
        elastic_steps.settle_spares(p, out)
        if p.deadline_in is not None:  # look again when the deadline passes
            out.requeue_after = min(out.requeue_after or p.deadline_in, p.deadline_in)
        return out
    except Exception as exc:  # the same inputs fail the same way: retrying would loop, so the job fails instead
        log.exception("a PretrainJob the operator cannot handle")
        return _cannot_handle(job, now, exc)


def _steps(p: Planner) -> Plan:
    return (
        gate_steps.finished(p)
        or gate_steps.invalid_spec(p)
        or gate_steps.policy_violation(p)
        or gate_steps.sync_children(p)
        or gate_steps.suspended(p)
        or attempt_steps.begin_attempt(p)
        or attempt_steps.deadline_exceeded(p)
        or attempt_steps.old_pods_leaving(p)
        or elastic_steps.out_of_bounds(p)
        or attempt_steps.start_gang(p)
        or attempt_steps.merge_progress(p)
        or failure_steps.worker_failed(p)
        or in_place.trainers_failed(p)
        or elastic_steps.rescale(p)
        or attempt_steps.succeeded(p)
        or attempt_steps.in_progress(p)
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
