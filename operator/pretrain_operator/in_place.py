"""In-place restarts (spec.failurePolicy.restartInPlace): a trainer failure in healthy pods restarts the trainer
processes inside the pods they run in, in a new rendezvous round, instead of recreating the gang.

How the two sides talk, without the workers calling the API: each pod carries its restart round in an annotation
(`contract.RESTART_ROUND_ANNOTATION`) that a downward-API file shows to `pretrainjob worker`; the worker keeps
`contract.TRAINERS_RUNNING_FILE` while its trainers run for that round, and the pod's readiness probe reads it. So a
running pod that is not ready in a round whose pods were all ready has trainers that failed (the worker passes
bad-config and preemption exits on and ends the pod as before, so what waits is worth a retry).

The step `trainers_failed` (after the failed-pod step: a lost, evicted or failed pod always recreates the gang)
keeps the round's book in the status (restartRound: asked, readyRound: the newest round seen all ready,
roundTime: since when the current round waits to come up) and chooses the path with `restart_path`:

- in place: every pod of the gang runs and every node they run on is Ready: the round is raised on every pod and
  their trainers resume from the newest checkpoint, at once (no backoff: nothing is scheduled or pulled again);
- a new gang: in-place restarts turned off, a node not Ready (or unknown), or a round that did not come up within
  Settings.round_timeout_s.

Both count against failurePolicy.maxRestarts and say in their event which path was taken and why.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from pretrain_trainer.contract import RESTARTING

from .failure_steps import give_up, restart
from .planner import Plan, Planner, timestamp
from .workers import Worker, parse_time

RESTART_ROUND = "restartRound"
READY_ROUND = "readyRound"
ROUND_TIME = "roundTime"
ROUND_KEYS = (RESTART_ROUND, READY_ROUND, ROUND_TIME)


def restart_path(enabled: bool, workers: list[Worker], nodes: dict[str, bool]) -> tuple[bool, str]:
    """Whether stopped trainers of this gang (every pod running) restart in place, and why (or why not).
    `nodes`: the readiness of the nodes the pods run on, as observed (a node missing there is not known Ready)."""
    if not enabled:
        return False, "failurePolicy.restartInPlace is false"
    for w in workers:
        if not w.node or not nodes.get(w.node, False):
            where = f"node {w.node}" if w.node else "its node"
            return False, f"{where} of {w.name} is not Ready"
    return True, "every pod runs on a Ready node"


def nodes_to_check(workers: list[Worker]) -> set[str]:
    """The nodes whose readiness `plan` needs: those of a gang with stopped trainers (an in-place pod running, not
    ready). Empty in the usual case, so the operator reads no Node then."""
    stopped = any(w.state == "running" and w.restart_round is not None and not w.ready for w in workers)
    return {w.node for w in workers if w.node} if stopped else set()


def new_gang(st: dict[str, Any]) -> None:
    """A new gang starts in round 0."""
    for key in ROUND_KEYS:
        st.pop(key, None)


def trainers_failed(p: Planner) -> Plan | None:
    """Trainers stopped in running pods: restart them in place, or recreate the gang (see the module doc)."""
    gang = p.current
    if not gang or any(w.restart_round is None or w.state != "running" for w in gang):
        return None  # pods without in-place restarts, or a gang that is starting, finishing or failed
    asked = int(p.st.get(RESTART_ROUND) or 0)
    for w in gang:
        if w.restart_round != asked:  # a patch that did not land (or a hand edit): ask again
            p.out.annotate[w.name] = asked
    if all(w.ready for w in gang):
        p.st[READY_ROUND] = asked
        p.st.pop(ROUND_TIME, None)
        return None
    stopped = [w for w in gang if not w.ready]
    if p.st.get(READY_ROUND) != asked:
        return _round_coming_up(p, asked, stopped)
    in_place, why = restart_path(p.spec.failure_policy.restart_in_place, gang, p.nodes or {})
    names = ", ".join(w.name for w in stopped)
    if not in_place:
        reason = "NodeNotReady" if "not Ready" in why else "TrainersFailed"
        return _recreate(p, reason, f"trainer processes stopped in {names}; {why}")
    return _restart_in_place(p, asked, names, why)


def _round_coming_up(p: Planner, asked: int, stopped: list[Worker]) -> Plan | None:
    """Pods of a round not yet seen all ready: wait, up to Settings.round_timeout_s, then recreate the gang."""
    since = parse_time(p.st.get(ROUND_TIME))
    if since is None:
        p.st[ROUND_TIME] = timestamp(since := p.now)
    left = (since + timedelta(seconds=p.settings.round_timeout_s) - p.now).total_seconds()
    if left > 0:  # an in-place round keeps its Restarting message meanwhile; a new gang's says who runs
        p.out.requeue_after = min(p.out.requeue_after or left, left)
        return p.out if asked > 0 else None
    names = ", ".join(w.name for w in stopped)
    message = f"the trainers of {names} did not run within {p.settings.round_timeout_s:g} s of round {asked}"
    return _recreate(p, "RestartRoundTimedOut", message)


def _restart_in_place(p: Planner, asked: int, names: str, why: str) -> Plan:
    limit = p.spec.failure_policy.max_restarts
    restarts = int(p.st.get("restarts") or 0)
    if restarts >= limit:
        message = f"trainer processes stopped in {names}; no restarts left (failurePolicy.maxRestarts: {limit})"
        return give_up(p, "BackoffLimitExceeded", message)
    restarts += 1
    round_ = asked + 1
    p.st["restarts"], p.st[RESTART_ROUND], p.st[ROUND_TIME] = restarts, round_, timestamp(p.now)
    p.st["workersReady"] = 0
    for w in p.current:
        p.out.annotate[w.name] = round_
    p.out.restart_reason = "TrainersFailed"
    p.transition(
        RESTARTING,
        "RestartedInPlace",
        f"trainer processes stopped in {names}; {why}: in-place restart {restarts}/{limit}, round {round_}: the "
        "trainers restart in the same pods and resume from the newest checkpoint",
        warning=True,
    )
    p.out.requeue_after = 1.0
    return p.out


def _recreate(p: Planner, reason: str, message: str) -> Plan:
    cause = Worker(name="", index=-1, attempt=p.attempt, state="failed", reason=reason, message=message)
    return restart(p, cause) or give_up(
        p,
        "BackoffLimitExceeded",
        f"{message}; no restarts left (failurePolicy.maxRestarts: {p.spec.failure_policy.max_restarts})",
    )
