"""Validate manifests against the PretrainJob CRD's openAPIV3Schema, as the API server would.

The emulated API server (kmock) does not validate custom resources, so tests use this: JSON-schema validation
of `crds/`'s schema (OpenAPI v3's `exclusiveMinimum: true` is draft 4's), with unknown fields refused as
`kubectl apply`'s default strict field validation refuses them, and the CRD's name rule checked.
"""

from __future__ import annotations

import copy
import functools
import re
from typing import Any

import jsonschema
import yaml

from pretrain_operator.crd import CRD_PATHS


def _strict(schema: dict[str, Any]) -> dict[str, Any]:
    """Objects with declared properties refuse others (unless they preserve unknown fields)."""
    out = copy.deepcopy(schema)
    if out.get("type") == "object" and "properties" in out and not out.get("x-kubernetes-preserve-unknown-fields"):
        out.setdefault("additionalProperties", False)
    for key in ("properties",):
        if key in out:
            out[key] = {k: _strict(v) for k, v in out[key].items()}
    if isinstance(out.get("items"), dict):
        out["items"] = _strict(out["items"])
    return out


@functools.cache
def crd() -> dict[str, Any]:
    return yaml.safe_load(CRD_PATHS[0].read_text())


@functools.cache
def _validator() -> jsonschema.Draft4Validator:
    schema = crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    return jsonschema.Draft4Validator(_strict(schema))


def schema_errors(manifest: dict[str, Any]) -> list[str]:
    """Every way `manifest` breaks the CRD's schema, each as 'path: message'; [] when it is valid."""
    errors = [
        f"{'.'.join(str(p) for p in err.absolute_path) or '(root)'}: {err.message}"
        for err in sorted(_validator().iter_errors(manifest), key=lambda e: list(map(str, e.absolute_path)))
    ]
    for rule in crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"].get("x-kubernetes-validations", []):
        limit = re.fullmatch(r"size\(self\.metadata\.name\) <= (\d+)", rule["rule"])
        assert limit, f"no emulation for CEL rule {rule['rule']!r}; add one here"
        if len(manifest.get("metadata", {}).get("name", "")) > int(limit.group(1)):
            errors.append(rule["message"])
    return errors
