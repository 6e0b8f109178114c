"""The one YAML reader for manifests and the trainer's job.yaml: PyYAML's safe loader with bounds, so that no
input can hang or exhaust whoever reads it (`pretrainjob validate`, the local runner, the trainer, the operator).

- size: at most `MAX_BYTES` of text (the API server's own limit for an object is about 1.5 MiB);
- aliases: at most `MAX_ALIASES`, and the document with every alias expanded at most `MAX_NODES` nodes (an
  alias bomb is a few hundred bytes that expand to billions of nodes once anything walks or dumps them);
- nesting: at most `MAX_DEPTH` levels (PyYAML recurses per level);
- duplicate keys in one mapping are refused (YAML says they are an error; PyYAML keeps the last one silently,
  so `replicas: 2` followed by `replicas: 200` would be 200 with no word). Keys merged in with `<<` may be
  overridden, as YAML intends.

Every problem is a `YamlLimitError` (a `yaml.YAMLError`) whose message says where and what.
"""

from __future__ import annotations

from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, SequenceNode

MAX_BYTES = 1024 * 1024
MAX_ALIASES = 100
MAX_NODES = 100_000
MAX_DEPTH = 64
_MERGE_TAG = "tag:yaml.org,2002:merge"


class YamlLimitError(yaml.YAMLError):
    """The text is not something a PretrainJob manifest can be: too big, too deep, an alias bomb, duplicate keys."""


class BoundedSafeLoader(yaml.SafeLoader):
    """`yaml.SafeLoader` with the bounds of this module."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._aliases = 0
        self._depth = 0

    def compose_node(self, parent: Node | None, index: Any) -> Node:
        if self.check_event(yaml.AliasEvent):
            self._aliases += 1
            if self._aliases > MAX_ALIASES:
                mark = self.peek_event().start_mark
                raise YamlLimitError(f"more than {MAX_ALIASES} aliases (*name){_where(mark)}")
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                raise YamlLimitError(f"nested more than {MAX_DEPTH} levels deep{_where(self.peek_event().start_mark)}")
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def compose_document(self) -> Node | None:
        node = super().compose_document()
        if node is not None:
            size = _expanded_size(node, {})
            if size > MAX_NODES:
                raise YamlLimitError(
                    f"the document expands to {size:,} nodes with its aliases resolved (at most {MAX_NODES:,}): "
                    f"an alias bomb{_where(node.start_mark)}"
                )
        return node

    def construct_mapping(self, node: MappingNode, deep: bool = False) -> dict[Any, Any]:
        if isinstance(node, MappingNode):
            seen: dict[Any, Any] = {}
            for key_node, _ in node.value:
                if key_node.tag == _MERGE_TAG or not isinstance(key_node, yaml.ScalarNode):
                    continue
                key = self.construct_object(key_node)
                if key in seen:
                    raise YamlLimitError(
                        f"duplicate key {key!r}{_where(key_node.start_mark)} (first{_where(seen[key])}); "
                        "YAML keeps only one of them"
                    )
                seen[key] = key_node.start_mark
        return super().construct_mapping(node, deep=deep)


def _where(mark: yaml.Mark | None) -> str:
    return f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""


def _expanded_size(node: Node, memo: dict[int, int]) -> int:
    """Nodes in the tree `node` stands for with every alias expanded (each shared node counted per use); `memo`
    makes this linear in the composed graph, however large the expansion."""
    known = memo.get(id(node))
    if known is not None:
        return known
    memo[id(node)] = MAX_NODES + 1  # a node reached again while being sized is a cycle: count it as too big
    size = 1
    if isinstance(node, SequenceNode):
        size += sum(_expanded_size(child, memo) for child in node.value)
    elif isinstance(node, MappingNode):
        size += sum(_expanded_size(k, memo) + _expanded_size(v, memo) for k, v in node.value)
    memo[id(node)] = size = min(size, MAX_NODES + 1)
    return size


def load_all(text: str) -> list[Any]:
    """Every document of `text`, bounded; YamlLimitError or another yaml.YAMLError when it cannot be read."""
    if len(text) > MAX_BYTES:
        raise YamlLimitError(f"{len(text):,} characters; a manifest is at most {MAX_BYTES:,}")
    try:
        return list(yaml.load_all(text, Loader=BoundedSafeLoader))
    except RecursionError:
        raise YamlLimitError("nested too deeply to read") from None


def load(text: str) -> Any:
    """The single document of `text` (None if it is empty), bounded."""
    docs = load_all(text)
    if len(docs) > 1:
        raise YamlLimitError(f"{len(docs)} documents where one is expected")
    return docs[0] if docs else None


def read_text(data: bytes, what: str) -> str:
    """`data` as UTF-8 text for YAML; YamlLimitError naming `what` for a binary or oversized file."""
    if len(data) > MAX_BYTES:
        raise YamlLimitError(f"{what}: {len(data):,} bytes; a manifest is at most {MAX_BYTES:,}")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise YamlLimitError(f"{what}: not UTF-8 text (byte {err.start}); is it a binary file?") from None


__all__ = ["MAX_ALIASES", "MAX_BYTES", "MAX_DEPTH", "MAX_NODES", "YamlLimitError", "load", "load_all", "read_text"]
