"""Corpus inputs in an object store: `s3://bucket/prefix/`, `s3://bucket/corpus/**/*.jsonl.gz`, one object.

Patterns expand against one listing of the literal prefix before the first wildcard: `*` and `?` stay inside one
path segment, `**` crosses them, as local globs do. Objects are read as files through ranged reads of
CHUNK_BYTES, so a multi-gigabyte input is streamed (and Parquet can seek) without being held in memory.
"""

from __future__ import annotations

import io
import re

from pretrain_trainer.storage import ObjectStore, StorageOptions, open_store

SCHEMES = ("s3://",)
CHUNK_BYTES = 8 << 20


def is_object_uri(path: str) -> bool:
    return path.startswith(SCHEMES)


def _split(uri: str) -> tuple[str, str]:
    """`s3://bucket/a/b` -> (`s3://bucket`, `a/b`)."""
    scheme, _, rest = uri.partition("://")
    bucket, _, key = rest.partition("/")
    if not bucket:
        raise ValueError(f"{uri}: no bucket name; expected s3://bucket/prefix")
    return f"{scheme}://{bucket}", key


def _glob_regex(pattern: str) -> re.Pattern[str]:
    out = []
    i = 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
        elif pattern.startswith("**", i):
            out.append(".*")
            i += 2
        elif pattern[i] == "*":
            out.append("[^/]*")
            i += 1
        elif pattern[i] == "?":
            out.append("[^/]")
            i += 1
        else:
            out.append(re.escape(pattern[i]))
            i += 1
    return re.compile("".join(out))


def expand_object_pattern(pattern: str, storage: StorageOptions | None, supported) -> list[str]:  # type: ignore[no-untyped-def]
    """Object URIs matching `pattern`: the object itself, every `supported(key)` object under a prefix, or the
    objects a wildcard pattern matches."""
    root, rest = _split(pattern)
    wild = [i for i in (rest.find(c) for c in "*?[") if i >= 0]
    literal = rest[: min(wild)] if wild else rest
    store = open_store(root, storage)
    keys = [o.key for o in store.list(literal)]
    if wild:
        rx = _glob_regex(rest)
        return [f"{root}/{k}" for k in keys if rx.fullmatch(k)]
    if rest in keys:
        return [pattern]
    folder = rest.rstrip("/") + "/" if rest else ""
    return [f"{root}/{k}" for k in keys if k.startswith(folder) and supported(k)]


def object_size(uri: str, storage: StorageOptions | None) -> int:
    root, key = _split(uri)
    return open_store(root, storage).size(key)


class _RangedReader(io.RawIOBase):
    """A seekable, read-only file over one object, fetched CHUNK_BYTES at a time."""

    def __init__(self, store: ObjectStore, key: str) -> None:
        self._store, self._key = store, key
        self._size = store.size(key)
        self._pos = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._size}[whence]
        self._pos = max(0, base + offset)
        return self._pos

    def readinto(self, buffer) -> int:  # type: ignore[no-untyped-def]
        end = min(self._size, self._pos + min(len(buffer), CHUNK_BYTES))
        if end <= self._pos:
            return 0
        data = self._store.read(self._key, self._pos, end)
        buffer[: len(data)] = data
        self._pos += len(data)
        return len(data)


def open_object(uri: str, storage: StorageOptions | None) -> io.BufferedReader:
    root, key = _split(uri)
    return io.BufferedReader(_RangedReader(open_store(root, storage), key), buffer_size=CHUNK_BYTES)
