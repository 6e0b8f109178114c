"""The storage API: options, errors, the `ObjectStore` interface and URI helpers.

Backends live in `local.py` and `s3.py` and are imported lazily by `open_store`, so that code touching only
local paths never pays for importing boto3.
"""

from __future__ import annotations

import abc
import math
import os
import re
from collections.abc import Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass, field, fields, replace
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from pretrain_trainer.config import StorageSpec

from pretrain_trainer.errors import UriError, redact_url

MiB = 1024 * 1024
# S3 rejects multipart parts below 5 MiB (except the last one) and uploads with more than 10,000 parts.
MIN_PART_SIZE = 5 * MiB
MAX_PART_SIZE = 5 * 1024 * MiB
ADDRESSING_STYLES = ("auto", "path", "virtual")
SUPPORTED_SCHEMES = "s3://bucket[/prefix], file:///absolute/path, or a plain local path"

_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")


# --------------------------------------------------------------------------------------------- errors


class StorageError(UriError):
    """A storage operation failed; `uri` is the object or store it was about.

    The message is `"<uri>: <what happened>. <likely fix>"` and is scrubbed of URL userinfo (see `UriError`).
    """


class StorageNotFound(StorageError):
    """The object, bucket or local directory does not exist."""


class StorageBucketNotFound(StorageNotFound):
    """The bucket itself does not exist: nothing under it can be found, so callers should not guess a cause."""


class StorageAccessDenied(StorageError):
    """The store refused the credentials or the operation (403, unknown key id, signature mismatch)."""


class StorageUnavailable(StorageError):
    """The endpoint is unreachable, or transient faults persisted through every retry attempt."""


# -------------------------------------------------------------------------------------------- options


def _env_first(environ: Mapping[str, str], *names: str) -> str | None:
    for name in names:
        value = environ.get(name, "").strip()
        if value:
            return value
    return None


@dataclass(frozen=True)
class StorageOptions:
    """How to reach and talk to object storage. `StorageOptions.from_env()` is the usual constructor."""

    endpoint_url: str | None = None
    """S3 endpoint, e.g. `http://minio:9000`; None means AWS. From AWS_ENDPOINT_URL_S3, then
    AWS_ENDPOINT_URL."""
    region: str | None = None
    """Signing region. From AWS_REGION, then AWS_DEFAULT_REGION; None lets boto3 decide."""
    access_key_id: str | None = field(default=None, repr=False)
    """Explicit credentials. None (all three) means boto3's own chain: env vars, profiles, IRSA."""
    secret_access_key: str | None = field(default=None, repr=False)
    """Never logged and never put into a message."""
    session_token: str | None = field(default=None, repr=False)
    """For temporary credentials; never logged and never put into a message."""
    addressing_style: str = "auto"
    """"path", "virtual" or "auto": path-style when `endpoint_url` is set (MinIO and other S3-compatible
    stores need it), else boto3's choice. From PRETRAIN_S3_ADDRESSING_STYLE."""
    retry_timeout_s: float = 300.0
    """How long one request keeps being retried through transient faults (a brown-out, throttling, a restarting
    endpoint) before it becomes StorageUnavailable. From the job's spec.storage.retryTimeoutSeconds."""
    max_attempts: int | None = None
    """Optional cap on attempts per request, the first included; None: only `retry_timeout_s` bounds retries."""
    backoff_base_s: float = 0.2
    """First retry waits up to this long; each further retry doubles the ceiling (full jitter)."""
    backoff_max_s: float = 5.0
    """Ceiling on a single backoff sleep."""
    connect_timeout_s: float = 10.0
    """TCP connect timeout per attempt."""
    read_timeout_s: float = 60.0
    """Socket read timeout per attempt, also while streaming a response body."""
    part_size_bytes: int = 8 * MiB
    """Multipart part size for streaming uploads; S3 needs at least 5 MiB for every part but the last.
    Objects smaller than one part go up with a single PUT."""

    def __post_init__(self) -> None:
        if self.addressing_style not in ADDRESSING_STYLES:
            raise ValueError(
                f"StorageOptions.addressing_style must be one of {', '.join(ADDRESSING_STYLES)}, "
                f"got {self.addressing_style!r}"
            )
        if self.max_attempts is not None and (not isinstance(self.max_attempts, int) or self.max_attempts < 1):
            raise ValueError(f"StorageOptions.max_attempts must be None or an integer >= 1, got {self.max_attempts!r}")
        for name in ("retry_timeout_s", "backoff_base_s", "backoff_max_s"):
            value = getattr(self, name)
            if not _is_number(value) or value < 0:
                raise ValueError(f"StorageOptions.{name} must be a finite number >= 0, got {value!r}")
        for name in ("connect_timeout_s", "read_timeout_s"):
            value = getattr(self, name)
            if not _is_number(value) or value <= 0:
                raise ValueError(f"StorageOptions.{name} must be a finite number > 0, got {value!r}")
        if not isinstance(self.part_size_bytes, int) or not MIN_PART_SIZE <= self.part_size_bytes <= MAX_PART_SIZE:
            raise ValueError(
                f"StorageOptions.part_size_bytes must be an integer between {MIN_PART_SIZE} (5 MiB, the S3 "
                f"minimum) and {MAX_PART_SIZE} (5 GiB), got {self.part_size_bytes!r}"
            )
        if self.endpoint_url is not None and not re.match(r"^https?://[^/]", self.endpoint_url):
            raise ValueError(
                f"StorageOptions.endpoint_url must be an http:// or https:// URL, got {redact_url(self.endpoint_url)!r}"
            )
        if (self.access_key_id is None) != (self.secret_access_key is None):
            raise ValueError(
                "StorageOptions.access_key_id and secret_access_key must be set together (or both left "
                "None to use boto3's credential chain)"
            )

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> StorageOptions:
        """Options from the environment (`os.environ` by default); keyword overrides win.

        Credentials are not read here: left None, boto3 resolves them itself from the process
        environment, shared profiles or the pod's web identity (IRSA), in its usual order.
        """
        env = os.environ if environ is None else environ
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(overrides) - known)
        if unknown:
            raise ValueError(f"StorageOptions has no field(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
        values: dict[str, Any] = {
            "endpoint_url": _env_first(env, "AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL"),
            "region": _env_first(env, "AWS_REGION", "AWS_DEFAULT_REGION"),
        }
        style = _env_first(env, "PRETRAIN_S3_ADDRESSING_STYLE")
        if style is not None:
            values["addressing_style"] = style.lower()
        values.update(overrides)
        return cls(**values)

    @classmethod
    def from_spec(cls, spec: StorageSpec, environ: Mapping[str, str] | None = None) -> StorageOptions:
        """Options for a job's ``storage`` spec (the CLI's global flags fill one too): its endpoint, region and
        addressing style where set, the environment's (`from_env`) where empty or ``auto``; its retry budget."""
        overrides: dict[str, Any] = {"retry_timeout_s": float(spec.retry_timeout_seconds)}
        if spec.endpoint:
            overrides["endpoint_url"] = spec.endpoint
        if spec.region:
            overrides["region"] = spec.region
        if spec.addressing_style != "auto":
            overrides["addressing_style"] = spec.addressing_style
        return cls.from_env(environ, **overrides)

    def with_overrides(self, **overrides: Any) -> StorageOptions:
        """A copy with some fields replaced (validated again)."""
        return replace(self, **overrides)


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


# -------------------------------------------------------------------------------------------- objects


@dataclass(frozen=True)
class ObjectInfo:
    """One listed object: `key` is relative to the store's root."""

    key: str
    size: int


class ObjectWriter(Protocol):
    """What `ObjectStore.open_writer` yields."""

    def write(self, data: bytes | bytearray | memoryview, /) -> int: ...


def check_key(store_uri: str, key: str) -> str:
    """Reject keys that would mean different things on different backends (or escape a local root)."""
    if not isinstance(key, str) or not key:
        raise ValueError(f"{store_uri}: object key must be a non-empty string, got {key!r}")
    if key.startswith("/") or key.endswith("/"):
        raise ValueError(f"{store_uri}: object key {key!r} must not start or end with '/'")
    if "\x00" in key or "\\" in key:
        raise ValueError(f"{store_uri}: object key {key!r} must not contain NUL or backslash")
    if any(part in ("", ".", "..") for part in key.split("/")):
        raise ValueError(f"{store_uri}: object key {key!r} must not contain empty, '.' or '..' segments")
    return key


def check_range(uri: str, start: int | None, end: int | None) -> tuple[int, int | None]:
    start = 0 if start is None else start
    if not isinstance(start, int) or start < 0:
        raise ValueError(f"{uri}: read start must be an integer >= 0, got {start!r}")
    if end is not None and (not isinstance(end, int) or end < start):
        raise ValueError(f"{uri}: read end must be an integer >= start ({start}), got {end!r}")
    return start, end


class ObjectStore(abc.ABC):
    """A flat namespace of byte objects under a root URI.

    Keys are relative to the root and use "/" separators. Reads are slice-like: `read(k, start, end)`
    returns `data[start:end]`, so a range past the end is clipped rather than an error. Implementations
    are safe to call from many threads at once; a writer from `open_writer` is for one thread.
    """

    uri: str
    """The root URI, without a trailing slash (except "file:///" for the filesystem root)."""

    @abc.abstractmethod
    def read(self, key: str, start: int | None = None, end: int | None = None) -> bytes:
        """Bytes `[start, end)` of the object (the whole object by default)."""

    @abc.abstractmethod
    def size(self, key: str) -> int:
        """Size in bytes; StorageNotFound if the object is missing."""

    @abc.abstractmethod
    def exists(self, key: str) -> bool:
        """Whether the object exists."""

    @abc.abstractmethod
    def list(self, prefix: str = "") -> list[ObjectInfo]:
        """Every object whose key starts with `prefix`, recursively, sorted by key.

        A prefix that matches nothing (or a local directory that does not exist yet) gives `[]`, the
        same as an S3 prefix with no objects under it.
        """

    @abc.abstractmethod
    def write(self, key: str, data: bytes) -> None:
        """Store `data` atomically: readers see the previous object or the complete new one."""

    @abc.abstractmethod
    def open_writer(self, key: str) -> AbstractContextManager[ObjectWriter]:
        """Stream an object in pieces.

        The object is published when the block exits cleanly; if it raises, nothing becomes visible and
        no partial state is left behind.
        """

    @abc.abstractmethod
    def delete(self, key: str) -> None:
        """Remove the object; a missing object is not an error."""

    @abc.abstractmethod
    def sweep(self, prefix: str = "") -> int:
        """Remove what interrupted writes left under `prefix`: temporary files and the empty directories of a
        local store, unfinished multipart uploads of S3. Returns how many things went. Call it only when no
        writer of this prefix can be active (e.g. the checkpoint root, once this run holds its lease)."""

    @abc.abstractmethod
    def child(self, prefix: str) -> ObjectStore:
        """A store rooted at `<root>/<prefix>` sharing this one's connection and options."""

    def uri_for(self, key: str) -> str:
        """The full URI of `key`, usable with `read_uri` and `split_uri`."""
        # rstrip: a store rooted at the filesystem root is "file:///", the one URI that ends in "/".
        root = self.uri[:-1] if self.uri.endswith("/") else self.uri
        return f"{root}/{check_key(self.uri, key)}"

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.uri!r})"


# ----------------------------------------------------------------------------------------------- URIs


def _scheme(uri: str) -> str | None:
    match = _SCHEME.match(uri)
    return match.group(1).lower() if match else None


def open_store(uri: str, options: StorageOptions | None = None) -> ObjectStore:
    """The store rooted at `uri`: `s3://bucket[/prefix]`, `file:///abs/path` or a local path.

    `options` defaults to `StorageOptions.from_env()`; they only matter for S3.
    """
    if not isinstance(uri, str) or not uri.strip():
        raise ValueError(f"storage URI must be a non-empty string, got {uri!r}; use {SUPPORTED_SCHEMES}")
    scheme = _scheme(uri)
    if scheme == "s3":
        from pretrain_trainer.storage.s3 import S3Store

        bucket, _, prefix = uri[len("s3://") :].partition("/")
        if not bucket:
            raise ValueError(f"{redact_url(uri)!r} has no bucket name; expected s3://bucket[/prefix]")
        return S3Store(bucket, prefix.strip("/"), options if options is not None else StorageOptions.from_env())
    if scheme is None or scheme == "file":
        from pretrain_trainer.storage.local import LocalStore

        return LocalStore(_local_path(uri) if scheme else os.path.abspath(uri))
    raise ValueError(f"{redact_url(uri)!r}: unsupported URI scheme {scheme!r}; use {SUPPORTED_SCHEMES}")


def _local_path(uri: str) -> str:
    rest = uri[len("file://") :]
    host, slash, path = rest.partition("/")
    if host not in ("", "localhost") or not slash:
        raise ValueError(f"{uri!r}: file URIs must name an absolute local path, like file:///data/corpus")
    return os.path.normpath("/" + path)


def split_uri(uri: str) -> tuple[str, str]:
    """`"s3://b/p/tokenizer.json"` -> `("s3://b/p", "tokenizer.json")`; also for file URIs and paths.

    The first part opens with `open_store`, the second is the key inside it.
    """
    if not isinstance(uri, str) or not uri or uri.endswith("/"):
        raise ValueError(f"{uri!r} does not name an object (empty, or ends with '/')")
    scheme = _scheme(uri)
    if scheme not in (None, "s3", "file"):
        raise ValueError(f"{redact_url(uri)!r}: unsupported URI scheme {scheme!r}; use {SUPPORTED_SCHEMES}")
    head = len(scheme) + 3 if scheme else 0
    cut = uri.rfind("/")
    if cut < head:
        if scheme == "s3":
            raise ValueError(f"{redact_url(uri)!r} names a bucket, not an object; expected s3://bucket/key")
        if scheme is None:  # a bare relative name such as "tokenizer.json"
            return ".", uri
    # Keep the filesystem root a valid root: "/x" -> "/", "file:///x" -> "file:///".
    parent = uri[:cut] if cut > head else uri[: cut + 1]
    return parent, uri[cut + 1 :]


def read_uri(uri: str, options: StorageOptions | None = None) -> bytes:
    """The whole object at `uri`."""
    root, key = split_uri(uri)
    return open_store(root, options).read(key)


def write_uri(uri: str, data: bytes, options: StorageOptions | None = None) -> None:
    """Atomically write `data` to the object at `uri`."""
    root, key = split_uri(uri)
    open_store(root, options).write(key, data)
