"""The planner's steps for the gang's size: the size each new gang starts with, a restart when an edit of the spec
puts the gang outside workers.minReplicas..replicas, an elastic job's resize when elastic.py's decision asks for
one, the smaller restart after workers were taken away, and the spare pods that look for capacity to grow.

Status: `replicas` is the size of the gang that runs (or last ran), `desiredReplicas` the size the operator is
bringing it to (they differ during a resize), `lastResizeTime` when the size last changed (the cool-down counts
from it), `worldSize` the trainer processes of the running gang.
"""

from __future__ import annotations

from pretrain_trainer.contract import RESTARTING

from . import children, naming
from .elastic import SCALED_DOWN, Bounds, Observed, decide, restart_size
from .planner import Event, Plan, Planner, timestamp
from .workers import parse_time


def gang_size(p: Planner) -> int:
    """Workers in the current gang (jobs from before elastic sizes have only worldSize in their status)."""
    procs = p.spec.workers.procs_per_worker
    return int(p.st.get("replicas") or 0) or int(p.st.get("worldSize") or 0) // procs or p.spec.workers.replicas


def desired_size(p: Planner) -> int:
    """Workers the next gang starts with (within the range of the spec in effect, edited since or not)."""
    return Bounds.of(p.spec.workers).clamp(int(p.st.get("desiredReplicas") or 0) or gang_size(p))


def fresh_start(p: Planner) -> None:
    """A first start or a resume tries the most workers: what capacity there is shows once the pods are placed."""
    p.st["desiredReplicas"] = p.spec.workers.replicas


def started(p: Planner, size: int) -> None:
    """A gang of `size` workers was created."""
    if p.st.get("replicas") not in (None, size):
        p.st["lastResizeTime"] = timestamp(p.now)
    p.st["replicas"] = p.st["desiredReplicas"] = size
    p.st["worldSize"] = size * p.spec.workers.procs_per_worker


def out_of_bounds(p: Planner) -> Plan | None:
    """An edit of workers.replicas or minReplicas that leaves the running gang outside the range restarts it on
    the nearest size in range (not counted as a failure)."""
    if not p.current:
        return None
    size, bounds = gang_size(p), Bounds.of(p.spec.workers)
    target = bounds.clamp(size)
    if target == size:
        return None
    procs = p.spec.workers.procs_per_worker
    which = "workers.minReplicas" if p.spec.workers.min_replicas and target > size else "workers.replicas"
    _restart_on(
        p,
        target,
        "Resized",
        f"{which} changed: restarting with world size {target * procs} (was {size * procs}) on {target} workers; "
        "the trainer resumes from the newest checkpoint at the exact next sample",
    )
    return p.stop_gang(p.current)


def rescale(p: Planner) -> Plan | None:
    """An elastic gang without failures: shrink when pods stay unschedulable, grow when spare pods got placed, and
    say which spare pods to hold meanwhile."""
    size = gang_size(p)
    last = parse_time(p.st.get("lastResizeTime")) or parse_time(p.st.get("startTime"))
    decision = decide(Bounds.of(p.spec.workers), Observed(size, p.current, p.now, p.spares, last))
    if decision.size == size:
        # Under Kueue the queue's quota admits pods: spares outside the pod group would bypass it, so none.
        spares = 0 if naming.KUEUE_QUEUE_LABEL in p.ref.labels else decision.spares
        p.spare_indices = range(size, size + spares)
        return None
    _restart_on(p, decision.size, decision.reason, decision.message, warning=decision.reason == SCALED_DOWN)
    return p.stop_gang(p.current)


def after_preemption(p: Planner) -> None:
    """A gang restart after a preemption leaves out the workers whose place was taken away (elastic jobs only); the
    resize is an event of its own."""
    decision = restart_size(Bounds.of(p.spec.workers), gang_size(p), p.current)
    if decision.reason:
        p.st["desiredReplicas"] = decision.size
        p.out.events.append(Event("Warning", decision.reason, decision.message))


def _restart_on(p: Planner, size: int, reason: str, message: str, warning: bool = False) -> None:
    p.st["desiredReplicas"], p.st["attempt"] = size, p.attempt + 1
    p.transition(RESTARTING, reason, message, warning=warning)


def settle_spares(p: Planner, out: Plan) -> None:
    """Hold exactly the spare pods the plan asked for (none unless an elastic gang waits for capacity): create the
    missing ones, delete the others (a finished, suspended, failed or resized job keeps none)."""
    wanted = set(p.spare_indices)
    for spare in p.spares:
        held = spare.state in ("pending", "running") and spare.attempt == p.attempt and spare.index in wanted
        if not held and spare.state != "terminating":  # an exited spare holds nothing: it goes, and comes back
            out.delete_pods.append(spare.name)
    present = {s.index for s in p.spares}  # a spare's name is taken until its pod is gone
    for index in sorted(wanted - present):
        out.create.append(children.build_spare_pod(p.ref, p.spec, index, p.attempt, p.settings.image))
