"""Reading a DCP checkpoint without running code from it.

Stock `torch.distributed.checkpoint` unpickles the `.metadata` file with plain `pickle.load` and reads every
non-tensor value (optimizer hyper-parameters, the LR scheduler's state) with `torch.load(weights_only=False)`:
whoever can write to the checkpoint prefix would run code in every training process on resume. Here

- `.metadata` goes through `MetadataUnpickler`, which resolves only the classes DCP's metadata is made of
  (its dataclasses, `torch.Size`, dtypes, layouts, paths); anything else is refused before it is called;
- each file a metadata entry points to must be a plain file name inside the staging directory (no `..`, no `/`);
- non-tensor values are read with `torch.load(weights_only=True)`, torch's own restricted unpickler (tensors,
  numbers, strings, lists, tuples, dicts), exactly like DCP already reads tensors.

A refusal raises `UnsafeCheckpoint` naming what was refused. DCP turns exceptions of its reader into strings
inside its own errors, so the reader and the planner also keep their refusal (`refused`) for the caller.

`files_to_read` plans a load ahead of DCP (same metadata unpickler, same planner), so that a rank downloads only
the data files its shards are in.
"""

from __future__ import annotations

import io
import logging
import pickle
from pathlib import Path, PosixPath, PurePosixPath
from typing import Any

import torch
from torch.distributed.checkpoint import FileSystemReader
from torch.distributed.checkpoint import metadata as dcp_metadata
from torch.distributed.checkpoint._traverse import set_element
from torch.distributed.checkpoint.default_planner import DefaultLoadPlanner
from torch.distributed.checkpoint.filesystem import _StorageInfo
from torch.distributed.checkpoint.planner import ReadItem

log = logging.getLogger("pretrain_trainer.checkpoint")

_METADATA_CLASSES = {
    ("torch.distributed.checkpoint.metadata", name): getattr(dcp_metadata, name)
    for name in (
        "Metadata",
        "TensorStorageMetadata",
        "BytesStorageMetadata",
        "ChunkStorageMetadata",
        "TensorProperties",
        "MetadataIndex",
        "StorageMeta",
        "_MEM_FORMAT_ENCODING",
    )
}
ALLOWED_GLOBALS: dict[tuple[str, str], Any] = {
    **_METADATA_CLASSES,
    ("torch.distributed.checkpoint.filesystem", "_StorageInfo"): _StorageInfo,
    ("torch", "Size"): torch.Size,
    # torch.layout pickles as a call of this lookup by name (a dict lookup, nothing else).
    ("torch.serialization", "_get_layout"): torch.serialization._get_layout,
    ("pathlib", "PosixPath"): PosixPath,
    ("pathlib", "PurePosixPath"): PurePosixPath,
    ("pathlib", "Path"): Path,
}


class UnsafeCheckpoint(pickle.UnpicklingError):
    """A checkpoint file asks for something that loading never does (a class outside the allowlist, a path
    outside the checkpoint); raised before that is called or read."""


class MetadataUnpickler(pickle.Unpickler):
    """`pickle.Unpickler` that resolves only `ALLOWED_GLOBALS` and torch dtypes."""

    def find_class(self, module: str, name: str) -> Any:
        allowed = ALLOWED_GLOBALS.get((module, name))
        if allowed is not None:
            return allowed
        if module == "torch" and isinstance(getattr(torch, name, None), torch.dtype):
            return getattr(torch, name)
        raise UnsafeCheckpoint(f"DCP metadata refers to {module}.{name}, which is not part of checkpoint metadata")


def load_metadata(data: bytes) -> dcp_metadata.Metadata:
    """Unpickle DCP metadata with `MetadataUnpickler`; UnsafeCheckpoint for anything else or a non-Metadata."""
    try:
        metadata = MetadataUnpickler(io.BytesIO(data)).load()
    except UnsafeCheckpoint:
        raise
    except Exception as exc:  # a damaged pickle can fail in many ways, all of them "unreadable"
        raise UnsafeCheckpoint(f"DCP metadata is unreadable ({type(exc).__name__}: {exc})") from exc
    if not isinstance(metadata, dcp_metadata.Metadata):
        raise UnsafeCheckpoint(f"DCP metadata holds a {type(metadata).__name__}, not a Metadata")
    return metadata


class _Refusing:
    """Keeps the first refusal, since DCP does not pass the exception itself on."""

    refused: UnsafeCheckpoint | None = None

    def _refuse(self, refusal: UnsafeCheckpoint) -> UnsafeCheckpoint:
        self.refused = self.refused or refusal
        return refusal


class SafeFileSystemReader(_Refusing, FileSystemReader):
    """DCP's FileSystemReader with the restricted metadata unpickler and file names confined to its folder.
    `partial`: {file: (block size, blocks)} of files fetched in part; reading outside those blocks is refused."""

    def __init__(self, path: str, partial: dict[str, tuple[int, set[int]]] | None = None) -> None:
        super().__init__(path)
        self.partial = partial or {}

    def read_data(self, plan: Any, planner: Any) -> Any:
        for item in plan.items:
            info = self.storage_data[item.storage_index]
            block, fetched = self.partial.get(info.relative_path, (1, None))
            first, end = info.offset // block, -(-(info.offset + info.length) // block)
            if fetched is not None and not fetched.issuperset(range(first, end)):
                raise self._refuse(UnsafeCheckpoint(f"{item.dest_index.fqn} lies outside the verified parts"))
        return super().read_data(plan, planner)

    def read_metadata(self, *args: Any, **kwargs: Any) -> dcp_metadata.Metadata:
        path = self._get_metadata_path(kwargs.get("rank"))
        with self.fs.create_stream(path, "rb") as stream:
            try:
                metadata = load_metadata(stream.read())
            except UnsafeCheckpoint as refusal:
                raise self._refuse(refusal) from None
        if getattr(metadata, "storage_meta", None) is None:
            metadata.storage_meta = dcp_metadata.StorageMeta()
        metadata.storage_meta.load_id = self.load_id
        return metadata

    def set_up_storage_reader(
        self, metadata: dcp_metadata.Metadata, is_coordinator: bool, *args: Any, **kwargs: Any
    ) -> None:
        for info in (metadata.storage_data or {}).values():
            name = getattr(info, "relative_path", None)
            if not isinstance(info, _StorageInfo) or not _plain_file_name(name):
                raise self._refuse(UnsafeCheckpoint(f"DCP metadata points at {name!r}, outside the checkpoint"))
        super().set_up_storage_reader(metadata, is_coordinator, *args, **kwargs)


def _plain_file_name(name: object) -> bool:
    return isinstance(name, str) and name not in ("", ".", "..") and "/" not in name and "\\" not in name


class SafeLoadPlanner(_Refusing, DefaultLoadPlanner):
    """DCP's default load planner reading non-tensor values with `torch.load(weights_only=True)`."""

    def load_bytes(self, read_item: ReadItem, value: io.BytesIO) -> None:
        try:
            loaded = torch.load(value, weights_only=True)
        except pickle.UnpicklingError as exc:
            refusal = UnsafeCheckpoint(
                f"the value of {read_item.dest_index.fqn} is not plain data (tensors, numbers, strings, lists, "
                f"dicts): {str(exc).splitlines()[0]}"
            )
            raise self._refuse(refusal) from exc
        # The rest is what DefaultLoadPlanner.load_bytes does after its torch.load.
        if self.flatten_state_dict:
            set_element(self.original_state_dict, self.mappings[read_item.dest_index.fqn], loaded)
        else:
            self.state_dict[read_item.dest_index.fqn] = loaded


def files_to_read(metadata_path: str, state_dict: dict[str, Any]) -> dict[str, list[tuple[int, int]]] | None:
    """What loading `state_dict` from the checkpoint whose `.metadata` is at `metadata_path` reads: {data file (DCP
    `storage_data` name): [(offset, length), ...]}, this rank's local load plan made as `dcp.load` makes it
    (SafeLoadPlanner; the default load planner's global step changes no read). An FSDP rank reads its shards and
    the replicated values, a DDP rank every tensor. None when the load cannot be planned (unreadable or refused
    metadata, a state that does not match it): the caller then fetches every file and the load itself reports
    what is wrong, as it always did."""
    try:
        with open(metadata_path, "rb") as handle:
            metadata = load_metadata(handle.read())
        planner = SafeLoadPlanner()
        planner.set_up_planner(state_dict, metadata, is_coordinator=False)
        reads: dict[str, list[tuple[int, int]]] = {}
        for item in planner.create_local_plan().items:
            info = metadata.storage_data[item.storage_index]
            reads.setdefault(info.relative_path, []).append((int(info.offset), int(info.length)))
        return reads
    except Exception as exc:  # every failure here is the load's to report, in its own words
        log.debug("could not plan which checkpoint files to read (%s: %s); reading all", type(exc).__name__, exc)
        return None


def refusal_of(*parts: _Refusing) -> UnsafeCheckpoint | None:
    """The first refusal of a reader or planner used for one load."""
    return next((part.refused for part in parts if part.refused is not None), None)


__all__ = [
    "ALLOWED_GLOBALS",
    "MetadataUnpickler",
    "SafeFileSystemReader",
    "SafeLoadPlanner",
    "UnsafeCheckpoint",
    "files_to_read",
    "load_metadata",
    "refusal_of",
]
