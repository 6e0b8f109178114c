"""Which spec a job runs with: its first valid spec, then only the changes a running job can take.

A job's accepted spec lives in its ConfigMap (the trainer's job.yaml). Later edits are compared with it: the
fields in MUTABLE_FIELDS apply (a new `workers.replicas` restarts the gang with the new world size, and the
loader resumes at the exact next sample); a change to any other field is refused with a message naming the
fields, and the job runs on unchanged. (A new model, tokenizer, data or batch size would silently break the
resumed checkpoint; that is a new job.)
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import yaml

from pretrain_trainer import safe_yaml
from pretrain_trainer.config import ConfigError, PretrainJobSpec, Problem, parse_job, to_dict
from pretrain_trainer.contract import API_VERSION, KIND
from pretrain_trainer.spec_schema import constraint_problems, yaml_name

from . import children

MUTABLE_FIELDS = (
    "suspend",
    "workers.replicas",
    "workers.minReplicas",
    "workers.scaleDownAfterSeconds",
    "workers.scaleUpCooldownSeconds",
    "failurePolicy.maxRestarts",
    "failurePolicy.restartInPlace",
    "ttlSecondsAfterFinished",
    "cleanPodPolicy",
    "activeDeadlineSeconds",
)


@dataclass(frozen=True)
class Admission:
    spec: PretrainJobSpec | None  # what to run with; None: nothing valid was ever accepted
    problems: list[Problem] = field(default_factory=list)  # why the spec is invalid
    refused: str = ""  # why (part of) a change was refused, for a condition and an event


# Where the pods of a cluster job would read and write. A local path there is each pod's own disk, lost with the
# pod: the data is not there, and checkpoints vanish on the first restart. (tokenizer.uri and model.from may be
# local: read-only files baked into the image.)
SHARED_STORAGE_FIELDS = (("checkpoint", "uri"), ("data", "train"), ("data", "validation"))


def check(name: str, namespace: str, spec: Any) -> PretrainJobSpec:
    """The typed spec of a manifest the operator runs; ConfigError names every bad field (and a bad metadata.name),
    including local paths where pods need shared storage (they are fine for `pretrainjob run --local`)."""
    manifest = {"apiVersion": API_VERSION, "kind": KIND, "metadata": {"name": name, "namespace": namespace}}
    parsed = parse_job({**manifest, "spec": spec}).spec
    problems = local_storage_problems(parsed)
    if problems:
        raise ConfigError(problems)
    _check_trainer_reads(name, namespace, parsed)
    return parsed


def _check_trainer_reads(name: str, namespace: str, spec: PretrainJobSpec) -> None:
    """The trainer reads its job.yaml through the bounded YAML loader: a spec whose free-form parts (model.config,
    affinity) are too big or too deep for it is refused here, not by every worker after the pods started."""
    try:
        safe_yaml.load(children.trainer_config(children.JobRef(name, namespace, "", {}), spec))
    except (yaml.YAMLError, RecursionError) as err:
        raise ConfigError([Problem("spec", f"too large or too deeply nested for the trainer to read: {err}")]) from None


def local_storage_problems(spec: PretrainJobSpec) -> list[Problem]:
    out = []
    for section, name in SHARED_STORAGE_FIELDS:
        value = getattr(getattr(spec, section), name)
        if value and not value.startswith("s3://"):
            out.append(
                Problem(
                    f"spec.{section}.{name}",
                    f"{value!r} is a local path: in a cluster each pod would have its own (lost on every restart); "
                    "use an s3:// URI (local paths are for `pretrainjob run --local`)",
                )
            )
    return out


def _flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, dict) and value:
        out: dict[str, Any] = {}
        for k, v in value.items():
            out.update(_flatten(v, f"{prefix}.{k}" if prefix else str(k)))
        return out
    return {prefix: value}


def _mutable(path: str) -> bool:
    return any(path == m or path.startswith(m + ".") for m in MUTABLE_FIELDS)


def _with_mutable(accepted: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    out = {k: (dict(v) if isinstance(v, dict) else v) for k, v in accepted.items()}
    for path in MUTABLE_FIELDS:
        *parents, leaf = path.split(".")
        src, dst = new, out
        for p in parents:
            src, dst = src[p], dst.setdefault(p, {})
        dst[leaf] = src[leaf]
    return out


def admit(name: str, namespace: str, spec: Any, accepted: dict[str, Any] | None) -> Admission:
    """The spec to run with, given the job's current spec and the one accepted earlier (None at first)."""
    try:
        new = check(name, namespace, spec)
    except ConfigError as err:
        if accepted is None:
            return Admission(None, err.problems)
        return Admission(
            check(name, namespace, accepted),
            refused="spec change refused, the job runs on with its accepted spec: " + "; ".join(map(str, err.problems)),
        )
    if accepted is None:
        return Admission(new)
    new_dict = to_dict(new)
    old, cur = _flatten(accepted), _flatten(new_dict)
    frozen = sorted(p for p in set(old) | set(cur) if old.get(p) != cur.get(p) and not _mutable(p))
    if not frozen:
        return Admission(new)
    fields = ", ".join(f"spec.{p}" for p in frozen)
    refused = (
        f"{fields} cannot change on an existing job (only {', '.join('spec.' + m for m in MUTABLE_FIELDS)} can); "
        "revert the change, or delete and re-create the job to start a new run"
    )
    try:
        return Admission(check(name, namespace, _with_mutable(accepted, new_dict)), refused=refused)
    except ConfigError as err:
        refused += "; " + "; ".join(map(str, err.problems))
        return Admission(check(name, namespace, accepted), refused=refused)


_SPEC_FIELDS = {f.name: f for f in dataclasses.fields(PretrainJobSpec)}


def lenient_field(spec: Any, name: str) -> Any:
    """Top-level spec field `name` (its Python name) of a spec that may be invalid elsewhere: the value given where
    it has the field's type and bounds, else the field's default. A finished job's TTL and clean-pod policy apply
    even when its spec was never valid."""
    f = _SPEC_FIELDS[name]
    value = spec.get(yaml_name(f)) if isinstance(spec, dict) else None
    if type(value) is not type(f.default) or constraint_problems(f, value):
        return f.default
    return value
