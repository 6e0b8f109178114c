"""`LocalStore`: the ObjectStore interface over a local directory (file:// URIs and plain paths)."""

from __future__ import annotations

import contextlib
import errno
import os
import uuid
from collections.abc import Callable, Iterator
from typing import BinaryIO

from pretrain_trainer.storage.base import (
    ObjectInfo,
    ObjectStore,
    ObjectWriter,
    StorageAccessDenied,
    StorageError,
    StorageNotFound,
    check_key,
    check_range,
)

# Temp files live beside their target so that os.replace is a same-filesystem atomic rename. The marker
# is what `list` skips and what `check_key` would never produce from a caller's key by accident.
TMP_MARKER = ".~pretrain-tmp-"


class LocalStore(ObjectStore):
    """Objects are files under `root`; keys map to relative paths."""

    def __init__(self, root: str) -> None:
        if not os.path.isabs(root):
            raise ValueError(f"LocalStore root must be an absolute path, got {root!r}")
        self.root = os.path.normpath(root)
        self.uri = "file://" + (self.root if self.root != "/" else "/")

    # -- helpers

    def _path(self, key: str) -> str:
        check_key(self.uri, key)
        if TMP_MARKER in key:
            raise ValueError(f"{self.uri}: object key {key!r} must not contain {TMP_MARKER!r}")
        return os.path.join(self.root, *key.split("/"))

    def _error(self, key: str, action: str, exc: OSError) -> StorageError:
        uri = self.uri_for(key) if key else self.uri
        if isinstance(exc, (FileNotFoundError, NotADirectoryError, IsADirectoryError)):
            parent = os.path.dirname(self._path(key)) if key else self.root
            where = "" if os.path.isdir(parent) else f" (directory {parent} does not exist)"
            return StorageNotFound(uri, f"no such file{where}. Check the path, or write the object first.")
        if isinstance(exc, PermissionError):
            return StorageAccessDenied(
                uri, f"permission denied while trying to {action}. Check the file and directory permissions."
            )
        if exc.errno == errno.ENOSPC:
            return StorageError(uri, f"no space left on device while trying to {action}. Free up disk space.")
        return StorageError(uri, f"could not {action}: {exc.strerror or exc}. Check the local filesystem.")

    # -- reads

    def read(self, key: str, start: int | None = None, end: int | None = None) -> bytes:
        path = self._path(key)
        start, end = check_range(self.uri_for(key), start, end)
        try:
            fd = os.open(path, os.O_RDONLY)
        except OSError as exc:
            raise self._error(key, "read", exc) from exc
        try:
            # fstat/pread on the descriptor we hold: a concurrent os.replace swaps the name, not this file.
            size = os.fstat(fd).st_size
            stop = size if end is None else min(end, size)
            chunks: list[bytes] = []
            offset = start
            while offset < stop:
                chunk = os.pread(fd, stop - offset, offset)
                if not chunk:  # truncated underneath us; return what exists, like a slice would
                    break
                chunks.append(chunk)
                offset += len(chunk)
            return b"".join(chunks)
        except OSError as exc:
            raise self._error(key, "read", exc) from exc
        finally:
            os.close(fd)

    def size(self, key: str) -> int:
        path = self._path(key)
        try:
            st = os.stat(path)
        except OSError as exc:
            raise self._error(key, "stat", exc) from exc
        if not os.path.isfile(path):
            raise StorageNotFound(self.uri_for(key), "is a directory, not an object. Check the key.")
        return st.st_size

    def exists(self, key: str) -> bool:
        return os.path.isfile(self._path(key))

    def list(self, prefix: str = "") -> list[ObjectInfo]:
        # Walk only the deepest directory the prefix pins down, instead of the whole tree.
        head = prefix.rsplit("/", 1)[0] if "/" in prefix else ""
        top = os.path.join(self.root, *head.split("/")) if head else self.root
        found: list[ObjectInfo] = []

        def on_error(exc: OSError) -> None:
            # A vanished directory is just an empty listing; anything else must not be silently skipped.
            if not isinstance(exc, (FileNotFoundError, NotADirectoryError)):
                raise self._error("", "list", exc) from exc

        for dirpath, dirnames, filenames in os.walk(top, onerror=on_error):
            dirnames.sort()
            rel_dir = os.path.relpath(dirpath, self.root)
            for name in filenames:
                if TMP_MARKER in name:
                    continue
                key = name if rel_dir == "." else f"{rel_dir.replace(os.sep, '/')}/{name}"
                if not key.startswith(prefix):
                    continue
                try:
                    st = os.stat(os.path.join(dirpath, name))
                except FileNotFoundError:  # deleted while we walked
                    continue
                found.append(ObjectInfo(key=key, size=st.st_size))
        found.sort(key=lambda info: info.key)
        return found

    # -- writes

    def _temp_path(self, path: str) -> str:
        directory, name = os.path.split(path)
        return os.path.join(directory, f".{name}{TMP_MARKER}{uuid.uuid4().hex}")

    def _make_parent(self, key: str, path: str) -> list[str]:
        """Create the directories above `path`; returns those that were missing, deepest first."""
        missing: list[str] = []
        directory = os.path.dirname(path)
        while not os.path.isdir(directory) and directory != os.path.dirname(directory):
            missing.append(directory)
            directory = os.path.dirname(directory)
        try:
            os.makedirs(os.path.dirname(path), exist_ok=True)
        except OSError as exc:
            raise self._error(key, "create its directory", exc) from exc
        return missing

    def _publish(self, tmp: str, path: str) -> None:
        os.replace(tmp, path)
        # fsync the directory so the rename itself survives a crash: a checkpoint that was announced
        # complete must not disappear after a node reboot.
        with contextlib.suppress(OSError):
            dir_fd = os.open(os.path.dirname(path), os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)

    def write(self, key: str, data: bytes) -> None:
        with self.open_writer(key) as writer:
            writer.write(data)

    @contextlib.contextmanager
    def open_writer(self, key: str) -> Iterator[ObjectWriter]:
        path = self._path(key)
        created = self._make_parent(key, path)
        tmp = self._temp_path(path)
        try:
            handle = open(tmp, "xb")  # noqa: SIM115 - closed on every path below
        except OSError as exc:
            raise self._error(key, "create a temporary file", exc) from exc

        def discard() -> None:
            handle.close()
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            # A failed write leaves no trace, not even the directories it made; rmdir refuses (and we
            # stop) as soon as one holds something a concurrent writer put there.
            for directory in created:
                try:
                    os.rmdir(directory)
                except OSError:
                    break

        try:
            yield _FileWriter(handle, lambda exc: self._error(key, "write", exc))
        except BaseException:
            discard()
            raise
        try:
            handle.flush()
            os.fsync(handle.fileno())
            handle.close()
            self._publish(tmp, path)
        except OSError as exc:
            discard()
            raise self._error(key, "write", exc) from exc

    def delete(self, key: str) -> None:
        path = self._path(key)
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
        except OSError as exc:
            raise self._error(key, "delete", exc) from exc

    def sweep(self, prefix: str = "") -> int:
        top = self._path(prefix.rstrip("/")) if prefix.strip("/") else self.root
        removed = 0
        for dirpath, _, filenames in os.walk(top, topdown=False):
            for name in filenames:
                if TMP_MARKER in name:
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(os.path.join(dirpath, name))
                        removed += 1
            if dirpath != self.root and not os.listdir(dirpath):
                with contextlib.suppress(OSError):  # someone wrote into it meanwhile: keep it
                    os.rmdir(dirpath)
                    removed += 1
        return removed

    def child(self, prefix: str) -> LocalStore:
        check_key(self.uri, prefix.strip("/"))
        return LocalStore(os.path.join(self.root, *prefix.strip("/").split("/")))


class _FileWriter:
    """Write-only view of the temp file, so callers cannot seek, read or close it behind our back."""

    def __init__(self, handle: BinaryIO, on_error: Callable[[OSError], StorageError]) -> None:
        self._handle = handle
        self._on_error = on_error

    def write(self, data: bytes | bytearray | memoryview, /) -> int:
        try:
            return self._handle.write(data)
        except ValueError as exc:  # the handle is closed: the with-block already ended
            raise ValueError("write() after the object was published or discarded") from exc
        except OSError as exc:
            raise self._on_error(exc) from exc
