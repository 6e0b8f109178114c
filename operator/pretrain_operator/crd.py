"""The PretrainJob CustomResourceDefinition, generated from the trainer's typed spec (`pretrain_trainer.config`).

The spec's dataclasses carry each field's documentation, type, enum, bounds and default; this module turns them
into a structural openAPIV3Schema, so the CRD and the trainer cannot drift. `crds/` and the Helm chart hold the
rendered YAML, and a test fails when they differ from what this module builds.

    python -m pretrain_operator.crd --write     # regenerate crds/ and the chart's copy after changing config.py
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import typing
from pathlib import Path
from typing import Any

import yaml

from pretrain_trainer.config import PretrainJobSpec, yaml_name
from pretrain_trainer.contract import API_GROUP, KIND, MAX_NAME_LENGTH, PHASES, PLURAL, VERSION, WORKER_POD_INFIX

SINGULAR = "pretrainjob"
SHORT_NAMES = ["pj"]
# `kubectl get pretrain` lists every job; "all" puts them in `kubectl get all` next to the pods they own.
CATEGORIES = ["pretrain", "all"]
CRD_NAME = f"{PLURAL}.{API_GROUP}"
REPO_ROOT = Path(__file__).resolve().parents[2]
CRD_PATHS = (
    REPO_ROOT / "crds" / f"{CRD_NAME}.yaml",
    REPO_ROOT / "helm" / "pretrain-operator" / "files" / "crd.yaml",
)

_SCALARS = {str: "string", int: "integer", float: "number", bool: "boolean"}


def _value_schema(tp: Any) -> dict[str, Any]:
    """Schema of a Python type used in the spec (dataclass, dict, list or scalar)."""
    if dataclasses.is_dataclass(tp):
        return dataclass_schema(tp)
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is dict:
        if args and args[1] in _SCALARS:
            return {"type": "object", "additionalProperties": {"type": _SCALARS[args[1]]}}
        # Free-form Kubernetes objects (resources, affinity) and transformers configs: kept as given.
        return {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
    if origin is list:
        item = args[0] if args else Any
        if item in _SCALARS:
            return {"type": "array", "items": {"type": _SCALARS[item]}}
        return {"type": "array", "items": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}}
    if tp in _SCALARS:
        return {"type": _SCALARS[tp]}
    raise TypeError(f"no schema for spec type {tp!r}; add it to pretrain_operator.crd")


def _field_schema(f: dataclasses.Field[Any], tp: Any) -> dict[str, Any]:
    schema = _value_schema(tp)
    meta = f.metadata
    schema["description"] = meta["doc"]
    if meta.get("enum"):
        schema["enum"] = list(meta["enum"])
    if meta.get("minimum") is not None:
        schema["minimum"] = meta["minimum"]
        if meta.get("exclusive_minimum"):
            schema["exclusiveMinimum"] = True
    if meta.get("maximum") is not None:
        schema["maximum"] = meta["maximum"]
        if meta.get("exclusive_maximum"):
            schema["exclusiveMaximum"] = True
    if f.default is not dataclasses.MISSING:
        schema["default"] = f.default
    elif f.default_factory is not dataclasses.MISSING and not dataclasses.is_dataclass(tp):
        schema["default"] = f.default_factory()
    elif dataclasses.is_dataclass(tp) and not _required(tp):
        # Defaults inside an object apply only when the object exists; {} makes the API server fill them in.
        schema["default"] = {}
    return schema


def _required(cls: type) -> list[str]:
    hints = typing.get_type_hints(cls)
    return [
        yaml_name(f)
        for f in dataclasses.fields(cls)
        if f.default is dataclasses.MISSING
        and f.default_factory is dataclasses.MISSING
        and not (dataclasses.is_dataclass(hints[f.name]) and not _required(hints[f.name]))
    ]


def dataclass_schema(cls: type) -> dict[str, Any]:
    """Structural schema of one spec dataclass: properties with docs, types, bounds, defaults; required keys."""
    hints = typing.get_type_hints(cls)
    schema: dict[str, Any] = {
        "type": "object",
        "properties": {yaml_name(f): _field_schema(f, hints[f.name]) for f in dataclasses.fields(cls)},
    }
    required = _required(cls)
    if required:
        schema["required"] = required
    return schema


def _condition_schema() -> dict[str, Any]:
    return {
        "type": "object",
        "required": ["type", "status"],
        "properties": {
            "type": {"type": "string", "description": ", ".join(PHASES[1:]) + ", ..."},
            "status": {"type": "string", "enum": ["True", "False", "Unknown"]},
            "reason": {"type": "string", "description": "CamelCase reason, e.g. WorkerFailed, InvalidSpec."},
            "message": {"type": "string", "description": "What happened, for people."},
            "lastTransitionTime": {"type": "string", "format": "date-time"},
            "observedGeneration": {"type": "integer"},
        },
    }


STATUS_FIELDS: dict[str, dict[str, Any]] = {
    "phase": {
        "type": "string",
        "enum": list(PHASES),
        "description": "Where the job is in its life.",
    },
    "conditions": {
        "type": "array",
        "items": _condition_schema(),
        "x-kubernetes-list-type": "map",
        "x-kubernetes-list-map-keys": ["type"],
        "description": "Kubernetes-style conditions with reasons and messages.",
    },
    "observedGeneration": {"type": "integer", "description": "The metadata.generation this status describes."},
    "attempt": {"type": "integer", "description": "Generation of the worker gang (bumped on every (re)start)."},
    "restarts": {"type": "integer", "description": "Gang restarts after worker failures (failurePolicy counts these)."},
    "preemptions": {
        "type": "integer",
        "description": "Gang restarts after preemptions (exit 143 after a checkpoint, evictions, DisruptionTarget); "
        "counted against failurePolicy.maxPreemptions, not maxRestarts.",
    },
    "nextStartTime": {"type": "string", "format": "date-time", "description": "When a restart's backoff ends."},
    "restartRound": {
        "type": "integer",
        "description": "In-place restart round of the current gang (0 when it starts; each in-place restart of its "
        "trainer processes raises it).",
    },
    "readyRound": {"type": "integer", "description": "The newest round in which every worker's trainers ran."},
    "roundTime": {
        "type": "string",
        "format": "date-time",
        "description": "Since when the current round waits for every worker's trainers to run.",
    },
    "worldSize": {"type": "integer", "description": "Trainer processes of the current attempt."},
    "replicas": {
        "type": "integer",
        "description": "Worker pods of the current gang: workers.replicas, or fewer for an elastic job short of "
        "capacity.",
    },
    "desiredReplicas": {
        "type": "integer",
        "description": "Worker pods the operator is bringing the gang to: replicas, except during a resize.",
    },
    "lastResizeTime": {
        "type": "string",
        "format": "date-time",
        "description": "When the gang last changed size; growing waits workers.scaleUpCooldownSeconds after it.",
    },
    "workersReady": {"type": "integer", "description": "Worker pods running."},
    "step": {"type": "integer", "description": "Last optimizer step rank 0 reported."},
    "maxSteps": {"type": "integer", "description": "training.maxSteps."},
    "tokensSeen": {"type": "integer", "description": "Training tokens consumed so far."},
    "loss": {"type": "number", "description": "Last training loss."},
    "tokensPerSecond": {"type": "number", "description": "Training throughput over all workers."},
    "lastCheckpoint": {"type": "integer", "description": "Step of the newest complete checkpoint."},
    "lastCheckpointTime": {"type": "string", "format": "date-time"},
    "probeAccuracy": {
        "type": "object",
        "additionalProperties": {"type": "number"},
        "description": "Test accuracy of the last downstream probe by task (spec.evaluation.probes).",
    },
    "probeStep": {"type": "integer", "description": "The step the last downstream probe ran at."},
    "progress": {"type": "number", "description": "Percent of training.maxSteps done (step / maxSteps)."},
    "estimatedCompletionTime": {
        "type": "string",
        "format": "date-time",
        "description": "When the job would reach maxSteps at the recent throughput (tokensPerSecond), from the "
        "last progress report; absent while no workers train.",
    },
    "progressTime": {"type": "string", "format": "date-time", "description": "When rank 0 last reported progress."},
    "startTime": {"type": "string", "format": "date-time"},
    "completionTime": {"type": "string", "format": "date-time"},
    "message": {"type": "string", "description": "One line on the current phase."},
}

PRINTER_COLUMNS = [
    {"name": "Phase", "type": "string", "jsonPath": ".status.phase"},
    {"name": "Step", "type": "integer", "jsonPath": ".status.step"},
    {"name": "Progress", "type": "number", "jsonPath": ".status.progress", "description": "Percent of maxSteps."},
    {"name": "ETA", "type": "string", "jsonPath": ".status.estimatedCompletionTime"},
    {"name": "Loss", "type": "number", "jsonPath": ".status.loss"},
    {"name": "Tokens/s", "type": "number", "jsonPath": ".status.tokensPerSecond"},
    {"name": "Restarts", "type": "integer", "jsonPath": ".status.restarts"},
    {"name": "Preemptions", "type": "integer", "jsonPath": ".status.preemptions", "priority": 1},
    {"name": "Workers", "type": "integer", "jsonPath": ".status.replicas", "description": "Worker pods now."},
    {"name": "Desired", "type": "integer", "jsonPath": ".status.desiredReplicas", "priority": 1},
    {"name": "Checkpoint", "type": "integer", "jsonPath": ".status.lastCheckpoint", "priority": 1},
    {"name": "Reported", "type": "date", "jsonPath": ".status.progressTime", "priority": 1},
    {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
]


def build_crd() -> dict[str, Any]:
    """The CustomResourceDefinition (apiextensions.k8s.io/v1) for PretrainJob."""
    spec_schema = dataclass_schema(PretrainJobSpec)
    spec_schema["description"] = "What to train, on what, with which resources. See the README's reference."
    schema = {
        "type": "object",
        "required": ["spec"],
        "properties": {
            "apiVersion": {"type": "string"},
            "kind": {"type": "string"},
            "metadata": {"type": "object"},
            "spec": spec_schema,
            "status": {"type": "object", "properties": STATUS_FIELDS},
        },
        # Pod names are <job>-worker-<index> (contract.pod_name) and must stay 63-character DNS labels.
        "x-kubernetes-validations": [
            {
                "rule": f"size(self.metadata.name) <= {MAX_NAME_LENGTH}",
                "message": f"metadata.name: at most {MAX_NAME_LENGTH} characters, so that "
                f"<name>{WORKER_POD_INFIX}<index> stays a valid 63-character DNS label",
            }
        ],
    }
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": CRD_NAME, "labels": {"app.kubernetes.io/part-of": "pretrain-operator"}},
        "spec": {
            "group": API_GROUP,
            "scope": "Namespaced",
            "names": {
                "kind": KIND,
                "listKind": f"{KIND}List",
                "plural": PLURAL,
                "singular": SINGULAR,
                "shortNames": SHORT_NAMES,
                "categories": CATEGORIES,
            },
            "versions": [
                {
                    "name": VERSION,
                    "served": True,
                    "storage": True,
                    "schema": {"openAPIV3Schema": schema},
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": PRINTER_COLUMNS,
                }
            ],
        },
    }


def render_crd() -> str:
    header = "# Generated by `python -m pretrain_operator.crd --write` from pretrain_trainer/config.py; do not edit.\n"
    return header + yaml.safe_dump(build_crd(), sort_keys=False, width=120)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--write", action="store_true", help="write crds/ and the Helm chart's copy")
    args = parser.parse_args(argv)
    text = render_crd()
    if not args.write:
        sys.stdout.write(text)
        return 0
    for path in CRD_PATHS:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        print(f"wrote {path.relative_to(REPO_ROOT)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
