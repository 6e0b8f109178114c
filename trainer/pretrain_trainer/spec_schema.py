"""The machinery of a typed, documented spec: dataclass fields that carry their docs and constraints
(`spec_field`), their YAML names, parsing YAML into the dataclasses with every problem named by its field path,
and the way back (`to_dict`). `pretrain_trainer.config` declares the PretrainJob spec with it; the CRD and the
README reference read the same field metadata. Imports neither torch nor transformers.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import typing
from dataclasses import dataclass, field
from typing import Any


def spec_field(
    default: Any = dataclasses.MISSING,
    *,
    doc: str,
    enum: tuple[str, ...] | None = None,
    minimum: float | None = None,
    maximum: float | None = None,
    exclusive_minimum: bool = False,
    exclusive_maximum: bool = False,
    name: str | None = None,
    factory: Any = dataclasses.MISSING,
) -> Any:
    """A dataclass field with its documentation and constraints attached (read by parsing and the CRD)."""
    meta = {
        "doc": doc,
        "enum": enum,
        "minimum": minimum,
        "maximum": maximum,
        "exclusive_minimum": exclusive_minimum,
        "exclusive_maximum": exclusive_maximum,
        "name": name,
    }
    if factory is not dataclasses.MISSING:
        return field(default_factory=factory, metadata=meta)
    return field(default=default, metadata=meta)


def yaml_name(f: dataclasses.Field[Any]) -> str:
    """The field's key in YAML: its explicit name, else camelCase of the Python name."""
    if f.metadata.get("name"):
        return f.metadata["name"]
    head, *rest = f.name.split("_")
    return head + "".join(p[:1].upper() + p[1:] for p in rest)


@dataclass(frozen=True)
class Problem:
    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


class ConfigError(ValueError):
    """One or more problems with a job spec, each naming its field path."""

    def __init__(self, problems: list[Problem], source: str = "") -> None:
        self.problems = problems
        self.source = source
        prefix = f"{source}: " if source else ""
        super().__init__("\n".join(prefix + str(p) for p in problems))


def _type_name(tp: Any) -> str:
    return {str: "a string", int: "an integer", float: "a number", bool: "true or false"}.get(tp, "an object")


def _parse_value(tp: Any, value: Any, path: str, problems: list[Problem]) -> Any:
    origin = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp):
        return parse_dataclass(tp, value, path, problems)
    if origin is dict:
        if not isinstance(value, dict):
            problems.append(Problem(path, f"must be a mapping, got {type(value).__name__}"))
            return {}
        return dict(value)
    if origin is list:
        if not isinstance(value, list):
            problems.append(Problem(path, f"must be a list, got {type(value).__name__}"))
            return []
        return list(value)
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if tp in (str, int, float, bool) and (not isinstance(value, tp) or (tp is int and isinstance(value, bool))):
        problems.append(Problem(path, f"must be {_type_name(tp)}, got {value!r}"))
        return None
    return value


def constraint_problems(f: dataclasses.Field[Any], value: Any) -> list[str]:
    """What is wrong with `value` for field `f` by the enum and bounds declared in its `spec_field` (the one check
    of them: parsing runs it, and so do classes built from a spec, such as the trainer's masking settings)."""
    meta, out = f.metadata, []
    if value is None:
        return out
    if isinstance(value, float) and not math.isfinite(value):
        # NaN passes every range check (each comparison is False) and poisons training silently; inf is no bound.
        return [f"must be a finite number, got {value}"]
    if meta.get("enum") and value not in meta["enum"]:
        out.append(f"{value!r} is not one of {', '.join(meta['enum'])}")
    lo, hi = meta.get("minimum"), meta.get("maximum")
    if lo is not None and (value < lo or (meta.get("exclusive_minimum") and value == lo)):
        out.append(f"must be {'>' if meta.get('exclusive_minimum') else '>='} {lo}, got {value}")
    if hi is not None and (value > hi or (meta.get("exclusive_maximum") and value == hi)):
        out.append(f"must be {'<' if meta.get('exclusive_maximum') else '<='} {hi}, got {value}")
    return out


def field_problems(spec: Any) -> list[tuple[str, str]]:
    """(Python field name, message) for every field of a spec dataclass outside its declared enum or bounds."""
    return [(f.name, msg) for f in dataclasses.fields(spec) for msg in constraint_problems(f, getattr(spec, f.name))]


def _check_constraints(f: dataclasses.Field[Any], value: Any, path: str, problems: list[Problem]) -> None:
    problems.extend(Problem(path, message) for message in constraint_problems(f, value))


def parse_dataclass(cls: type, data: Any, path: str, problems: list[Problem]) -> Any:
    if data is None:
        data = {}
    if not isinstance(data, dict):
        problems.append(Problem(path, f"must be a mapping, got {type(data).__name__}"))
        return None
    hints = typing.get_type_hints(cls)
    fields = {yaml_name(f): f for f in dataclasses.fields(cls)}
    for key in data:
        if key not in fields:
            close = difflib.get_close_matches(str(key), list(fields), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else f"; known fields: {', '.join(fields)}"
            problems.append(Problem(f"{path}.{key}", f"unknown field{hint}"))
    kwargs = {}
    for key, f in fields.items():
        sub = f"{path}.{key}"
        if key not in data:
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                if dataclasses.is_dataclass(hints[f.name]):
                    kwargs[f.name] = parse_dataclass(hints[f.name], {}, sub, problems)
                else:
                    problems.append(Problem(sub, "required"))
                    kwargs[f.name] = None
            continue
        value = _parse_value(hints[f.name], data[key], sub, problems)
        _check_constraints(f, value, sub, problems)
        kwargs[f.name] = value
    try:
        return cls(**{k: v for k, v in kwargs.items() if v is not None})
    except TypeError:  # a required field had a problem; it is already reported
        return None


def to_dict(obj: Any) -> Any:
    """A spec (or part of one) back to its YAML shape, camelCase keys."""
    if dataclasses.is_dataclass(obj):
        return {yaml_name(f): to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, dict):
        return {k: to_dict(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [to_dict(v) for v in obj]
    return obj
