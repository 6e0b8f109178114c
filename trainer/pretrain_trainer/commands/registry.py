"""`CommandTree`: how a command declares itself (path, help, flags, handler), and defaults read from their source."""

from __future__ import annotations

import argparse
import dataclasses
import inspect
from collections.abc import Callable, Mapping
from typing import Any

Handler = Callable[[argparse.Namespace], int]

#: The exit code of a check that ran and found a problem (an audit below threshold, an invalid manifest).
EXIT_FAILED_CHECK = 1


class CommandTree:
    """The sub-commands of one parser, addressed by path: ``"prepare"`` or ``"data inspect"``.

    A group (``tokenizer``, ``data``) is created the first time a command under it is added, with its help from
    ``groups``; so a new command in an existing group needs no other registration.
    """

    def __init__(self, parser: argparse.ArgumentParser, groups: Mapping[str, str]) -> None:
        self._groups_help = groups
        self._subparsers = {(): parser.add_subparsers(dest="command", required=True, metavar="COMMAND")}

    def add(self, path: str, handler: Handler, help: str, description: str | None = None) -> argparse.ArgumentParser:
        """Declare the command at ``path``; returns its parser for the flags. ``handler(args)`` runs it."""
        *group, name = path.split()
        parser = self._group(tuple(group)).add_parser(name, help=help, description=description)
        parser.set_defaults(func=handler)
        return parser

    def _group(self, path: tuple[str, ...]) -> Any:  # argparse's _SubParsersAction is private
        if path not in self._subparsers:
            name = " ".join(path)
            if name not in self._groups_help:
                raise KeyError(f"command group {name!r} has no help text: add it to the groups of CommandTree")
            parser = self._group(path[:-1]).add_parser(path[-1], help=self._groups_help[name])
            self._subparsers[path] = parser.add_subparsers(
                dest="_".join(path) + "_command", required=True, metavar="ACTION"
            )
        return self._subparsers[path]


def default(source: Callable[..., Any], name: str) -> Any:
    """The default of field ``name`` of a dataclass, or of parameter ``name`` of a function: flags take their
    defaults from the code that uses them instead of repeating the value."""
    if dataclasses.is_dataclass(source):
        field = next(f for f in dataclasses.fields(source) if f.name == name)
        if field.default is not dataclasses.MISSING:
            return field.default
        raise ValueError(f"{source.__name__}.{name} has no plain default")
    value = inspect.signature(source).parameters[name].default
    if value is inspect.Parameter.empty:
        raise ValueError(f"{source.__name__}({name}=...) has no default")
    return value
