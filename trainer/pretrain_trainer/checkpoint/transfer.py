"""Moving checkpoint files between a local staging directory and the object store: parallel uploads that hash
as they go, and parallel ranged downloads checked against the manifest's size and SHA-256: of whole files, or of
the VERIFY_BLOCK-sized blocks covering the byte ranges a rank reads (`download_parts`)."""

from __future__ import annotations

import hashlib
import os
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from pretrain_trainer.checkpoint.layout import DAMAGED_FIX, MANIFEST, CheckpointCorrupt, Entry
from pretrain_trainer.storage import ObjectStore, StorageNotFound

TRANSFER_CHUNK = 16 * 1024 * 1024
TRANSFER_THREADS = 8
VERIFY_BLOCK = 1024 * 1024
"""Uploads record a SHA-256 per block of this many bytes (a divisor of TRANSFER_CHUNK) in the manifest entry."""


def upload_file(store: ObjectStore, key: str, path: str) -> Entry:
    """Stream one local file to `key`, returning its manifest entry (size and SHA-256 of what was sent)."""
    digest = hashlib.sha256()
    size, block = 0, VERIFY_BLOCK
    blocks: list[str] = []
    with open(path, "rb") as handle, store.open_writer(key) as writer:
        while chunk := handle.read(TRANSFER_CHUNK):
            digest.update(chunk)
            view = memoryview(chunk)
            blocks.extend(hashlib.sha256(view[i : i + block]).hexdigest() for i in range(0, len(chunk), block))
            writer.write(chunk)
            size += len(chunk)
    return Entry(key, size, digest.hexdigest(), block, tuple(blocks))


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


def _checked_size(store: ObjectStore, uri: str, obj: dict[str, Any]) -> int:
    """The size a manifest entry gives, once the store holds an object of that size under its key."""
    key, size = obj["key"], int(obj["size"])
    try:
        actual = store.size(key)
    except StorageNotFound:
        raise _corrupt(uri, key, "is missing") from None
    if actual != size:
        raise _corrupt(uri, key, f"has {actual} bytes instead of {size}")
    return size


_Job = tuple[str, str, int, int, tuple[int, list[str]] | None]
"""(key, local path, start, end, None or (block size, SHA-256 of each block from start)): one ranged read."""


def _local_file(staging: str, key: str, size: int) -> str:
    """A sparse local file of `size` bytes for `key` under `staging`; its path."""
    path = os.path.join(staging, *key.split("/"))
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as handle:
        handle.truncate(size)
    return path


def _run_jobs(store: ObjectStore, uri: str, jobs: list[_Job]) -> None:
    """Read each job's range in parallel, check its length (and SHA-256, if given), and write it in place."""

    def fetch(job: _Job) -> None:
        key, path, start, end, expected = job
        try:
            data = store.read(key, start, end)
        except StorageNotFound:
            raise _corrupt(uri, key, "is missing") from None
        if len(data) != end - start:
            raise _corrupt(uri, key, f"is shorter than {end} bytes")
        block, hashes = expected or (1, [])
        for i, digest in enumerate(hashes):
            if hashlib.sha256(memoryview(data)[i * block : (i + 1) * block]).hexdigest() != digest:
                first, last = start + i * block, min(start + (i + 1) * block, end)
                raise _corrupt(uri, key, f"does not match the SHA-256 of its bytes [{first}, {last})")
        fd = os.open(path, os.O_WRONLY)
        try:
            os.pwrite(fd, data, start)
        finally:
            os.close(fd)

    with ThreadPoolExecutor(max_workers=TRANSFER_THREADS) as pool:
        for _ in pool.map(fetch, jobs):
            pass


def download_all(store: ObjectStore, uri: str, objects: list[dict[str, Any]], staging: str) -> None:
    """Fetch `objects` (manifest entries) from `store` into `staging` with parallel ranged reads, then verify each
    one's size and SHA-256; CheckpointCorrupt (naming `uri`, the checkpoint) for a missing or damaged object."""
    jobs: list[_Job] = []
    for obj in objects:
        key, size = obj["key"], _checked_size(store, uri, obj)
        path = _local_file(staging, key, size)
        jobs.extend((key, path, at, min(at + TRANSFER_CHUNK, size), None) for at in range(0, size, TRANSFER_CHUNK))
    _run_jobs(store, uri, jobs)
    for obj in objects:
        expected = obj.get("sha256")
        if expected and sha256_file(os.path.join(staging, *obj["key"].split("/"))) != expected:
            raise _corrupt(uri, obj["key"], "does not match its SHA-256")


Parts = dict[str, tuple[int, set[int]]]
"""{key: (block size, indexes of the blocks fetched)} of the files `download_parts` fetched in part."""


def download_parts(
    store: ObjectStore,
    uri: str,
    objects: list[dict[str, Any]],
    ranges: dict[str, list[tuple[int, int]]] | None,
    staging: str,
) -> Parts:
    """Fetch into `staging` the parts of `objects` (manifest entries) that the (offset, length) `ranges` of each key
    cover: the blocks holding them, each checked against the manifest's block SHA-256, in sparse local files.
    An entry without block hashes, or every entry when `ranges` is None, is fetched whole (`download_all`).
    Returns the `Parts` fetched: nothing else of those files may be read. CheckpointCorrupt like `download_all`."""
    in_part = [obj for obj in objects if ranges is not None and obj.get("block_sha256")]
    download_all(store, uri, [obj for obj in objects if obj not in in_part], staging)
    fetched: Parts = {}
    jobs: list[_Job] = []
    for obj in in_part:
        key, size, block, hashes = (
            obj["key"],
            _checked_size(store, uri, obj),
            obj.get("block_size"),
            obj["block_sha256"],
        )
        if not isinstance(block, int) or block < 1 or len(hashes) != -(-size // block):
            raise _corrupt(uri, key, f"has block hashes that do not fit its size {size}")
        wanted: set[int] = set()
        for offset, length in (ranges or {}).get(key, []):
            if offset < 0 or length < 0 or offset + length > size:
                raise _corrupt(uri, key, f"is read at bytes [{offset}, {offset + length}), beyond its {size} bytes")
            wanted.update(range(offset // block, -(-(offset + length) // block)))
        path = _local_file(staging, key, size)
        runs: list[list[int]] = []  # consecutive blocks, read together up to TRANSFER_CHUNK
        for i in sorted(wanted):
            if runs and runs[-1][-1] == i - 1 and len(runs[-1]) * block < TRANSFER_CHUNK:
                runs[-1].append(i)
            else:
                runs.append([i])
        for run in runs:
            jobs.append(
                (key, path, run[0] * block, min((run[-1] + 1) * block, size), (block, [hashes[i] for i in run]))
            )
        fetched[key] = (block, wanted)
    _run_jobs(store, uri, jobs)
    return fetched


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
    "VERIFY_BLOCK",
    "Parts",
    "copy_object",
    "download_all",
    "download_parts",
    "sha256_file",
    "upload_dir",
    "upload_file",
]
