"""The checks of `spec.workers` fields that go into a Pod as they are: a spec that passes them gives pods the API
server accepts, so the operator never loops on a create that cannot succeed. The CRD's schema leaves these
free-form (resources, tolerations, affinity are Kubernetes types), so this is the one place their shape is checked.

Names follow Kubernetes' own rules (apimachinery's validation): DNS subdomains for ServiceAccounts, PriorityClasses
and Secrets, qualified names and label values for labels, quantities for resources and /dev/shm.
"""

from __future__ import annotations

import re
from typing import Any

from pretrain_trainer.spec_schema import Problem

_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_QUALIFIED_NAME = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
_QUANTITY = re.compile(r"^[+]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+|[mkMGTPE]|[KMGTPE]i)?$")
_IMAGE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/:@+-]*$")
_RESOURCE_SECTIONS = ("limits", "requests")
_TOLERATION_KEYS = {"key", "operator", "value", "effect", "tolerationSeconds"}

# The shape of core/v1 Affinity, as the API server checks it: an object maps field names to shapes (a trailing "!"
# marks a required field), a one-element list is a list of that shape, ("map",) a map of strings to strings.
# Kept here because the CRD leaves `workers.affinity` free-form and the operator must not create pods the API
# server refuses (pruning it from the CRD would instead drop fields silently).
_REQUIREMENT = {"key!": str, "operator!": str, "values": [str]}
_LABEL_SELECTOR = {"matchLabels": ("map",), "matchExpressions": [_REQUIREMENT]}
_NODE_SELECTOR_TERM = {"matchExpressions": [_REQUIREMENT], "matchFields": [_REQUIREMENT]}
_POD_AFFINITY_TERM = {
    "labelSelector": _LABEL_SELECTOR,
    "namespaceSelector": _LABEL_SELECTOR,
    "namespaces": [str],
    "topologyKey!": str,
    "matchLabelKeys": [str],
    "mismatchLabelKeys": [str],
}
_POD_AFFINITY = {
    "requiredDuringSchedulingIgnoredDuringExecution": [_POD_AFFINITY_TERM],
    "preferredDuringSchedulingIgnoredDuringExecution": [{"weight!": int, "podAffinityTerm!": _POD_AFFINITY_TERM}],
}
_AFFINITY = {
    "nodeAffinity": {
        "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms!": [_NODE_SELECTOR_TERM]},
        "preferredDuringSchedulingIgnoredDuringExecution": [{"weight!": int, "preference!": _NODE_SELECTOR_TERM}],
    },
    "podAffinity": _POD_AFFINITY,
    "podAntiAffinity": _POD_AFFINITY,
}


def is_dns_subdomain(name: str) -> bool:
    return len(name) <= 253 and bool(_DNS_SUBDOMAIN.match(name))


def _qualified_key_problem(key: object) -> str | None:
    """A label or annotation key: an optional DNS-subdomain prefix and '/', then a name of at most 63 characters."""
    if not isinstance(key, str) or not key:
        return f"key {key!r} is not a string"
    prefix, _, name = key.rpartition("/")
    if (prefix and not is_dns_subdomain(prefix)) or len(name) > 63 or not _QUALIFIED_NAME.match(name):
        return f"key {key!r} is not a valid qualified name ([prefix/]name, name up to 63 of A-Z a-z 0-9 - _ .)"
    return None


def _quantity_problem(value: object) -> str | None:
    if isinstance(value, bool) or not isinstance(value, (str, int, float)) or not _QUANTITY.match(str(value)):
        return f"{value!r} is not a Kubernetes quantity (e.g. 8, 500m, 16Gi)"
    return None


def _resources_problems(resources: dict[str, Any], path: str) -> list[Problem]:
    out = []
    for section, amounts in resources.items():
        where = f"{path}.{section}"
        if section not in _RESOURCE_SECTIONS:
            out.append(Problem(where, f"unknown section; use {' or '.join(_RESOURCE_SECTIONS)}"))
        elif not isinstance(amounts, dict):
            out.append(Problem(where, f"must be a mapping of resource name to quantity, got {type(amounts).__name__}"))
        else:
            for name, amount in amounts.items():
                problem = _qualified_key_problem(name) or _quantity_problem(amount)
                if problem:
                    out.append(Problem(f"{where}.{name}", problem))
    return out


def _string_map_problems(values: dict[str, Any], path: str, *, label_values: bool) -> list[Problem]:
    out = []
    for key, value in values.items():
        problem = _qualified_key_problem(key)
        if problem is None and not isinstance(value, str):
            problem = f"value {value!r} must be a string"
        elif problem is None and label_values and (len(value) > 63 or not _LABEL_VALUE.match(value)):
            problem = f"value {value!r} is not a valid label value (up to 63 of A-Z a-z 0-9 - _ .)"
        if problem:
            out.append(Problem(f"{path}.{key}", problem))
    return out


def _toleration_problems(tolerations: list[Any], path: str) -> list[Problem]:
    out = []
    for n, toleration in enumerate(tolerations):
        where = f"{path}[{n}]"
        if not isinstance(toleration, dict):
            out.append(Problem(where, f"must be a mapping (key, operator, value, effect), got {toleration!r}"))
            continue
        unknown = sorted(str(k) for k in set(toleration) - _TOLERATION_KEYS)
        if unknown:
            out.append(Problem(where, f"unknown toleration field(s) {', '.join(unknown)}"))
        for key in ("key", "operator", "value", "effect"):
            if key in toleration and not isinstance(toleration[key], str):
                out.append(Problem(f"{where}.{key}", f"must be a string, got {toleration[key]!r}"))
        seconds = toleration.get("tolerationSeconds")
        if seconds is not None and (not isinstance(seconds, int) or isinstance(seconds, bool)):
            out.append(Problem(f"{where}.tolerationSeconds", f"must be an integer, got {seconds!r}"))
    return out


def _shape_problems(value: Any, shape: Any, path: str) -> list[Problem]:
    """Where `value` departs from `shape` (see _AFFINITY); the first problem per branch, each naming its field."""
    if isinstance(shape, dict):
        if not isinstance(value, dict):
            return [Problem(path, f"must be a mapping, got {value!r}")]
        fields = {name.rstrip("!"): sub for name, sub in shape.items()}
        known = ", ".join(fields)
        out = [Problem(f"{path}.{key}", f"unknown field; use one of {known}") for key in value if key not in fields]
        required = [name[:-1] for name in shape if name.endswith("!")]
        out += [Problem(f"{path}.{name}", "is required") for name in required if name not in value]
        for key, sub in value.items():
            if key in fields:
                out += _shape_problems(sub, fields[key], f"{path}.{key}")
        return out
    if isinstance(shape, list):
        if not isinstance(value, list):
            return [Problem(path, f"must be a list, got {value!r}")]
        return [p for n, item in enumerate(value) for p in _shape_problems(item, shape[0], f"{path}[{n}]")]
    if shape == ("map",):
        if not isinstance(value, dict):
            return [Problem(path, f"must be a mapping of strings, got {value!r}")]
        wrong = [(k, v) for k, v in value.items() if not isinstance(v, str)]
        return [Problem(f"{path}.{k}", f"must be a string, got {v!r}") for k, v in wrong]
    if not isinstance(value, shape) or isinstance(value, bool):
        return [Problem(path, f"must be {'an integer' if shape is int else 'a string'}, got {value!r}")]
    return []


def pod_problems(workers: Any, path: str) -> list[Problem]:
    """What in `spec.workers` (a WorkersSpec) would make its pods invalid; each problem names its field."""
    out = _resources_problems(workers.resources, f"{path}.resources")
    out += _string_map_problems(workers.node_selector, f"{path}.nodeSelector", label_values=True)
    out += _string_map_problems(workers.labels, f"{path}.labels", label_values=True)
    out += _string_map_problems(workers.annotations, f"{path}.annotations", label_values=False)
    out += _toleration_problems(workers.tolerations, f"{path}.tolerations")
    out += _shape_problems(workers.affinity, _AFFINITY, f"{path}.affinity")
    names = [
        ("priorityClassName", workers.priority_class_name),
        ("serviceAccountName", workers.service_account_name),
        *((f"imagePullSecrets[{n}]", secret) for n, secret in enumerate(workers.image_pull_secrets)),
    ]
    for field, name in names:
        if name != "" and (not isinstance(name, str) or not is_dns_subdomain(name)):
            out.append(Problem(f"{path}.{field}", f"{name!r} is not a valid name (lower-case DNS subdomain)"))
    if problem := _quantity_problem(workers.shm_size):
        out.append(Problem(f"{path}.shmSize", problem))
    return out


def image_problem(image: str, path: str) -> Problem | None:
    """A container image reference: no spaces or shell characters (the registry and digest rules are policy's)."""
    if image and not _IMAGE.match(image):
        return Problem(path, f"{image!r} is not an image reference (registry/repository[:tag][@digest])")
    return None


__all__ = ["image_problem", "is_dns_subdomain", "pod_problems"]
