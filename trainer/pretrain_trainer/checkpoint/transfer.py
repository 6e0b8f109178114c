"""Moving checkpoint files between a local staging directory and the object store: parallel uploads that hash
as they go, and parallel ranged downloads checked against the manifest's size and SHA-256."""

from __future__ import annotations

import hashlib
import os
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from pretrain_trainer.checkpoint.layout import DAMAGED_FIX, MANIFEST, CheckpointCorrupt, Entry
from pretrain_trainer.storage import ObjectStore, StorageNotFound

TRANSFER_CHUNK = 16 * 1024 * 1024
TRANSFER_THREADS = 8


def upload_file(store: ObjectStore, key: str, path: str) -> Entry:
    """Stream one local file to `key`, returning its manifest entry (size and SHA-256 of what was sent)."""
    digest = hashlib.sha256()
    size = 0
    with open(path, "rb") as handle, store.open_writer(key) as writer:
        while chunk := handle.read(TRANSFER_CHUNK):
            digest.update(chunk)
            writer.write(chunk)
            size += len(chunk)
    return Entry(key, size, digest.hexdigest())


def upload_dir(store: ObjectStore, local: str) -> list[Entry]:
    """Upload every file under `local` to the same relative key in `store`, in parallel; entries sorted by key."""
    files: list[tuple[str, str]] = []
    for dirpath, _, filenames in os.walk(local):
        for filename in filenames:
            path = os.path.join(dirpath, filename)
            files.append((os.path.relpath(path, local).replace(os.sep, "/"), path))
    with ThreadPoolExecutor(max_workers=min(TRANSFER_THREADS, max(1, len(files)))) as pool:
        return list(pool.map(lambda item: upload_file(store, *item), sorted(files)))


def _corrupt(uri: str, key: str, what: str) -> CheckpointCorrupt:
    return CheckpointCorrupt(uri, f"{key}, listed in {MANIFEST}, {what}; the checkpoint is damaged: {DAMAGED_FIX}")


def download_all(store: ObjectStore, uri: str, objects: list[dict[str, Any]], staging: str) -> None:
    """Fetch `objects` (manifest entries) from `store` into `staging` with parallel ranged reads, then verify each
    one's size and SHA-256; CheckpointCorrupt (naming `uri`, the checkpoint) for a missing or damaged object."""
    jobs: list[tuple[str, str, int, int]] = []
    for obj in objects:
        key, size = obj["key"], int(obj["size"])
        try:
            actual = store.size(key)
        except StorageNotFound:
            raise _corrupt(uri, key, "is missing") from None
        if actual != size:
            raise _corrupt(uri, key, f"has {actual} bytes instead of {size}")
        path = os.path.join(staging, *key.split("/"))
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as handle:
            handle.truncate(size)
        jobs.extend((key, path, start, min(start + TRANSFER_CHUNK, size)) for start in range(0, size, TRANSFER_CHUNK))

    def fetch(job: tuple[str, str, int, int]) -> None:
        key, path, start, end = job
        try:
            data = store.read(key, start, end)
        except StorageNotFound:
            raise _corrupt(uri, key, "is missing") from None
        if len(data) != end - start:
            raise _corrupt(uri, key, f"is shorter than {end} bytes")
        fd = os.open(path, os.O_WRONLY)
        try:
            os.pwrite(fd, data, start)
        finally:
            os.close(fd)

    with ThreadPoolExecutor(max_workers=TRANSFER_THREADS) as pool:
        for _ in pool.map(fetch, jobs):
            pass
    for obj in objects:
        expected = obj.get("sha256")
        if expected and sha256_file(os.path.join(staging, *obj["key"].split("/"))) != expected:
            raise _corrupt(uri, obj["key"], "does not match its SHA-256")


def copy_object(store: ObjectStore, src: str, dst: str) -> None:
    """Copy one object within `store` in TRANSFER_CHUNK ranges, so a multi-GiB shard never sits in memory."""
    size = store.size(src)
    with store.open_writer(dst) as writer:
        for start in range(0, size, TRANSFER_CHUNK):
            writer.write(store.read(src, start, min(start + TRANSFER_CHUNK, size)))


def sha256_file(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(TRANSFER_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


__all__ = [
    "TRANSFER_CHUNK",
    "TRANSFER_THREADS",
    "copy_object",
    "download_all",
    "sha256_file",
    "upload_dir",
    "upload_file",
]
