"""A node-local cache of verified chunks, shared by the ranks of one pod (separate processes), bounded in bytes.

Layout of the cache directory (a memory-backed emptyDir or /dev/shm in a pod):

    <key>.chunk                 a complete, verified chunk: only ever created by an atomic rename
    <key>.<pid>.<nonce>.part    a download in progress, reserved at its full size before the first byte
    locks/<n>.lock              flock stripes: whoever holds a key's stripe is the one process fetching it
    cache.lock                  flock held while space is reserved or chunks are evicted

Why it is safe:
- One download per chunk per node: a process that misses takes the key's stripe lock, looks again, and only
  then fetches; the others block on the lock and find the chunk when they get it.
- A partially written chunk is never used: readers open only `.chunk` names, which appear by rename after the
  bytes were written and verified. A killed writer leaves a `.part` whose pid is gone; the next reservation
  deletes it.
- The bound holds: every `.part` is reserved (ftruncate to its full size) under `cache.lock` after evicting the
  least recently used chunks, so the sizes of the files in the directory never add up to more than the bound.
- Eviction never pulls data from under a reader: readers mmap a chunk, and on Linux a mapping outlives the
  unlink of its file. The memory of an evicted chunk is freed when its last reader drops it, so the bound covers
  the files; what ranks hold mapped beyond it is what they are training on (the loader sizes the bound to hold
  its read-ahead, see StreamingLoader).
"""

from __future__ import annotations

import fcntl
import mmap
import os
import tempfile
import uuid
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

LOCK_STRIPES = 256


def private_cache_dir() -> str:
    """A fresh cache directory in /dev/shm when it is writable, else in the temp folder; the caller removes it."""
    shm = "/dev/shm"
    base = shm if os.path.isdir(shm) and os.access(shm, os.W_OK) else None
    return tempfile.mkdtemp(prefix="pretrain-data-cache-", dir=base)


class CacheFullError(Exception):
    """The bound cannot fit a chunk even after evicting every complete chunk."""


@contextmanager
def _flock(path: Path) -> Iterator[None]:
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the lock


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class ChunkCache:
    """`get(key, size, fetch)` returns the chunk's bytes as a read-only mmap, fetching it at most once per node."""

    def __init__(self, directory: str | os.PathLike[str], max_bytes: int) -> None:
        if max_bytes < 1:
            raise ValueError(f"cache bound must be positive, got {max_bytes} bytes")
        self.directory = Path(directory)
        self.max_bytes = max_bytes
        (self.directory / "locks").mkdir(parents=True, exist_ok=True)
        self._cache_lock = self.directory / "cache.lock"
        self.fetches = 0
        """Chunks this process downloaded (the others it found in the cache)."""

    def _chunk(self, key: str) -> Path:
        return self.directory / f"{key}.chunk"

    def _stripe(self, key: str) -> Path:
        return self.directory / "locks" / f"{zlib.crc32(key.encode()) % LOCK_STRIPES}.lock"

    def _open(self, key: str) -> mmap.mmap | None:
        try:
            fd = os.open(self._chunk(key), os.O_RDONLY)
        except FileNotFoundError:
            return None
        try:
            os.utime(fd)  # the mtime is the last use: eviction takes the oldest first
            return mmap.mmap(fd, 0, access=mmap.ACCESS_READ)
        finally:
            os.close(fd)

    def get(self, key: str, size: int, fetch: Callable[[], bytes]) -> mmap.mmap:
        """The chunk `key` of `size` bytes; `fetch()` must return its verified bytes when it is not cached."""
        if size > self.max_bytes:
            raise CacheFullError(
                f"{self.directory}: a chunk of {size} bytes does not fit a cache bound of {self.max_bytes} bytes"
            )
        found = self._open(key)
        if found is not None:
            return found
        with _flock(self._stripe(key)):
            found = self._open(key)
            if found is not None:
                return found
            part = self._reserve(key, size)
            try:
                data = fetch()
                if len(data) != size:
                    raise ValueError(f"chunk {key}: fetched {len(data)} bytes, expected {size}")
                with open(part, "r+b") as handle:
                    handle.write(data)
                with _flock(self._cache_lock):  # so that used_bytes() never sees the file under both names
                    os.rename(part, self._chunk(key))
            except BaseException:
                part.unlink(missing_ok=True)
                raise
            self.fetches += 1
        found = self._open(key)
        if found is None:  # evicted between the rename and the open by a reservation that needed the room
            return self.get(key, size, fetch)
        return found

    def _reserve(self, key: str, size: int) -> Path:
        """Make room for `size` bytes and create the `.part` file at that size, all under the cache lock."""
        with _flock(self._cache_lock):
            chunks: list[tuple[float, int, Path]] = []
            used = 0
            for entry in os.scandir(self.directory):
                if not entry.is_file() or not entry.name.endswith((".chunk", ".part")):
                    continue
                try:
                    stat = entry.stat()
                except FileNotFoundError:
                    continue
                if entry.name.endswith(".part"):
                    if not _pid_alive(int(entry.name.rsplit(".", 3)[1])):
                        Path(entry.path).unlink(missing_ok=True)  # left behind by a killed download
                        continue
                else:
                    chunks.append((stat.st_mtime, stat.st_size, Path(entry.path)))
                used += stat.st_size
            chunks.sort()
            while used + size > self.max_bytes and chunks:
                _, nbytes, path = chunks.pop(0)
                path.unlink(missing_ok=True)
                used -= nbytes
            if used + size > self.max_bytes:
                raise CacheFullError(
                    f"{self.directory}: {used} bytes of downloads in progress leave no room for {size} more "
                    f"within the bound of {self.max_bytes} bytes; raise spec.data.cacheMib"
                )
            part = self.directory / f"{key}.{os.getpid()}.{uuid.uuid4().hex[:8]}.part"
            with open(part, "wb") as handle:
                handle.truncate(size)
            return part

    def used_bytes(self) -> int:
        """Bytes the cache's files take now (complete chunks and reserved downloads)."""
        with _flock(self._cache_lock):
            return sum(e.stat().st_size for e in os.scandir(self.directory) if e.name.endswith((".chunk", ".part")))
