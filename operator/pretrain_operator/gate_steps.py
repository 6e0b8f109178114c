"""The planner's first steps, before any attempt: a finished job's clean-up and TTL, admission of the spec (an
invalid spec fails the job), the operator's policy, the job's ConfigMap and Service, and spec.suspend."""

from __future__ import annotations

from datetime import timedelta

from pretrain_trainer.contract import FAILED, FINISHED_PHASES, SUSPENDED

from . import children
from .admission import admit, lenient_field
from .conditions import get_condition, set_condition
from .planner import Event, Plan, Planner, timestamp
from .policy import violations
from .workers import parse_time

# Failure reasons of a spec refused before anything ran: an edited spec (a new generation) is looked at afresh.
REJECTIONS = ("InvalidSpec", "PolicyViolation")


def _spec_fixed_after_rejection(p: Planner) -> bool:
    failed = get_condition(p.st.get("conditions") or [], FAILED) or {}
    return failed.get("reason") in REJECTIONS and p.st.get("observedGeneration") != p.generation


def finished(p: Planner) -> Plan | None:
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


def invalid_spec(p: Planner) -> Plan | None:
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


def policy_violation(p: Planner) -> Plan | None:
    """The operator-wide policy (policy.py), before any child exists and on every reconcile after."""
    problems = violations(p.spec, p.settings.policy)
    if not problems:
        return None
    message = "refused by the operator's policy: " + "; ".join(map(str, problems))
    return p.finish(FAILED, "PolicyViolation", message, p.workers, "All")


def _admission_condition(p: Planner, refused: str) -> None:
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


def sync_children(p: Planner) -> None:
    """The ConfigMap holds the spec in effect; the headless Service exists."""
    desired = children.build_config_map(p.ref, p.spec)
    if p.config_map is None:
        p.out.create.append(desired)
    elif p.config_map.get("data") != desired["data"]:
        p.out.replace.append(desired)
    if p.service is None:
        p.out.create.append(children.build_service(p.ref))


def suspended(p: Planner) -> Plan | None:
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
