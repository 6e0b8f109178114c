"""Token shards: the on-storage format that `prepare` writes and the streaming loader reads.

A shard set is a folder (local or object store) holding:

    index.json          written last: its presence publishes the set (see ShardIndex)
    shard-00000.bin     token ids, flat little-endian uint16 (vocab <= 65536) or uint32, documents joined by EOS
    shard-00000.crc     crc32 of every `page_bytes` page of the .bin (uint32 LE), so ranged reads are verified
    shard-00000.docs    cumulative end offset of every document in the shard (uint64 LE), for document-aware use

The index records the tokenizer fingerprint, dtype, page size, and per shard its token and document counts,
byte size and sha256 of each of the three files. A reader checks sizes against the index when it opens the
set (a truncated or missing object fails before training starts), checks each sidecar's sha256 when it
loads it, and checks the crc32 of every page it reads, so a corrupt byte stops the job instead of training on
garbage.
"""

from __future__ import annotations

import hashlib
import json
import threading
import zlib
from bisect import bisect_right
from dataclasses import asdict, dataclass, field

import numpy as np

from pretrain_trainer.storage import ObjectStore, StorageBucketNotFound, StorageNotFound, StorageOptions, open_store

FORMAT = "pretrain-shards/1"
INDEX_NAME = "index.json"
# 4 KiB pages: a 2048-token uint16 sample touches 1-2 pages, so verified reads fetch at most ~2x the payload,
# and the checksum table costs 1 byte per 1 KiB of tokens.
DEFAULT_PAGE_BYTES = 4096
DTYPES = {"uint16": np.dtype("<u2"), "uint32": np.dtype("<u4")}
FIX = "Re-run `pretrainjob prepare` or restore the object."


class ShardError(Exception):
    """A shard set that must not be trained on. The message names the object and what to do."""


class ShardTruncatedError(ShardError):
    pass


class ShardChecksumError(ShardError):
    pass


class TokenizerMismatchError(ShardError):
    pass


def dtype_for_vocab(vocab_size: int) -> str:
    """The narrowest dtype that holds every token id."""
    return "uint16" if vocab_size <= 1 << 16 else "uint32"


def page_crcs(data: bytes, page_bytes: int) -> np.ndarray:
    view = memoryview(data)
    return np.array([zlib.crc32(view[i : i + page_bytes]) for i in range(0, len(data), page_bytes)], dtype="<u4")


@dataclass(frozen=True)
class ShardInfo:
    name: str
    """Object name of the token file, relative to the set's folder (the sidecars share its stem)."""
    num_tokens: int
    num_documents: int
    num_bytes: int
    sha256: str
    crc_sha256: str
    docs_sha256: str

    @property
    def stem(self) -> str:
        return self.name.rsplit(".", 1)[0]

    @property
    def crc_name(self) -> str:
        return self.stem + ".crc"

    @property
    def docs_name(self) -> str:
        return self.stem + ".docs"


@dataclass(frozen=True)
class TokenizerMeta:
    fingerprint: str
    """sha256 of the canonical tokenizer JSON (see pretrain_trainer.tokenizer.load.fingerprint)."""
    vocab_size: int
    eos_token: str
    eos_id: int
    uri: str = ""
    """Where the tokenizer was read from when the set was prepared (informational)."""


@dataclass(frozen=True)
class ShardIndex:
    dtype: str
    page_bytes: int
    tokenizer: TokenizerMeta
    shards: tuple[ShardInfo, ...]
    settings: dict[str, object] = field(default_factory=dict)
    """How the set was made (prepare's options), for provenance."""
    format: str = FORMAT

    @property
    def num_tokens(self) -> int:
        return sum(s.num_tokens for s in self.shards)

    @property
    def num_documents(self) -> int:
        return sum(s.num_documents for s in self.shards)

    def to_json(self) -> bytes:
        body = asdict(self)
        body["num_tokens"] = self.num_tokens
        body["num_documents"] = self.num_documents
        return json.dumps(body, indent=1, sort_keys=True).encode() + b"\n"

    @classmethod
    def from_json(cls, data: bytes, uri: str) -> ShardIndex:
        try:
            body = json.loads(data)
            if body.get("format") != FORMAT:
                raise ShardError(
                    f"{uri}: format {body.get('format')!r} is not {FORMAT!r}; re-run `pretrainjob prepare` "
                    "with this version"
                )
            if body["dtype"] not in DTYPES:
                raise ShardError(f"{uri}: dtype {body['dtype']!r} is not one of {', '.join(DTYPES)}")
            return cls(
                dtype=body["dtype"],
                page_bytes=int(body["page_bytes"]),
                tokenizer=TokenizerMeta(**body["tokenizer"]),
                shards=tuple(ShardInfo(**s) for s in body["shards"]),
                settings=body.get("settings", {}),
            )
        except (KeyError, TypeError, ValueError) as err:
            raise ShardError(f"{uri}: not a valid shard index ({err!r}); re-run `pretrainjob prepare`") from err


class ShardWriter:
    """Writes documents into shards of about `shard_tokens` tokens; `close()` writes the index last.

    Documents never straddle shards. Each shard's three objects are written atomically; until the index is
    written, readers see the previous set (or none), never a half-written one.
    """

    def __init__(
        self,
        store: ObjectStore,
        tokenizer: TokenizerMeta,
        shard_tokens: int = 1 << 26,
        page_bytes: int = DEFAULT_PAGE_BYTES,
        settings: dict[str, object] | None = None,
    ) -> None:
        if shard_tokens < 1:
            raise ValueError(f"shard_tokens: must be positive, got {shard_tokens}")
        if page_bytes < 64 or page_bytes % 4:
            raise ValueError(f"page_bytes: must be a multiple of 4 and at least 64, got {page_bytes}")
        self.store = store
        self.tokenizer = tokenizer
        self.dtype = dtype_for_vocab(tokenizer.vocab_size)
        self.shard_tokens = shard_tokens
        self.page_bytes = page_bytes
        self.settings = settings or {}
        self.shards: list[ShardInfo] = []
        self._pending: list[np.ndarray] = []
        self._pending_tokens = 0

    def add_document(self, ids: np.ndarray) -> None:
        """Append one document's token ids (EOS included by the caller)."""
        self._pending.append(ids)
        self._pending_tokens += len(ids)
        if self._pending_tokens >= self.shard_tokens:
            self._flush()

    def _flush(self) -> None:
        if not self._pending:
            return
        tokens = np.concatenate(self._pending).astype(DTYPES[self.dtype], copy=False)
        ends = np.cumsum([len(d) for d in self._pending], dtype="<u8")
        name = f"shard-{len(self.shards):05d}.bin"
        data = tokens.tobytes()
        crc = page_crcs(data, self.page_bytes).tobytes()
        docs = ends.tobytes()
        info = ShardInfo(
            name=name,
            num_tokens=len(tokens),
            num_documents=len(self._pending),
            num_bytes=len(data),
            sha256=hashlib.sha256(data).hexdigest(),
            crc_sha256=hashlib.sha256(crc).hexdigest(),
            docs_sha256=hashlib.sha256(docs).hexdigest(),
        )
        for key, payload in ((info.name, data), (info.crc_name, crc), (info.docs_name, docs)):
            self.store.write(key, payload)
        self.shards.append(info)
        self._pending, self._pending_tokens = [], 0

    def close(self) -> ShardIndex:
        self._flush()
        index = ShardIndex(
            dtype=self.dtype,
            page_bytes=self.page_bytes,
            tokenizer=self.tokenizer,
            shards=tuple(self.shards),
            settings=self.settings,
        )
        self.store.write(INDEX_NAME, index.to_json())
        return index


class ShardSet:
    """Verified random access to the concatenated token stream of a published shard set.

    Safe to call from many threads at once (the loader's prefetch pool does).
    """

    def __init__(self, store: ObjectStore, index: ShardIndex, expected_fingerprint: str | None = None) -> None:
        self.store = store
        self.index = index
        self.dtype = DTYPES[index.dtype]
        self._check_tokenizer(expected_fingerprint)
        self._check_objects()
        self._starts = np.cumsum([0] + [s.num_tokens for s in index.shards]).tolist()
        self._crcs: dict[int, np.ndarray] = {}
        self._crc_loading: dict[int, threading.Lock] = {}
        self._lock = threading.Lock()
        self.bytes_read = 0

    @classmethod
    def open(cls, uri: str, options: StorageOptions | None = None, expected_fingerprint: str | None = None) -> ShardSet:
        store = open_store(uri, options)
        try:
            raw = store.read(INDEX_NAME)
        except StorageBucketNotFound:
            raise
        except StorageNotFound as err:
            raise ShardError(
                f"{store.uri_for(INDEX_NAME)}: no shard index. Point the data URI at a folder written by "
                "`pretrainjob prepare` (it holds index.json), or run prepare first."
            ) from err
        return cls(store, ShardIndex.from_json(raw, store.uri_for(INDEX_NAME)), expected_fingerprint)

    @property
    def num_tokens(self) -> int:
        return self._starts[-1]

    def _check_tokenizer(self, expected: str | None) -> None:
        actual = self.index.tokenizer.fingerprint
        if expected is not None and expected != actual:
            raise TokenizerMismatchError(
                f"{self.store.uri}: shards were made with tokenizer {actual[:12]} "
                f"({self.index.tokenizer.uri or 'unknown uri'}), but the job uses tokenizer {expected[:12]}. "
                "Token ids would mean different things: re-run `pretrainjob prepare` with the job's tokenizer "
                "or point the job at the tokenizer the shards were made with."
            )

    def _check_objects(self) -> None:
        sizes = {o.key: o.size for o in self.store.list("")}
        itemsize = self.dtype.itemsize
        for s in self.index.shards:
            expected = {
                s.name: s.num_tokens * itemsize,
                s.crc_name: 4 * -(-s.num_bytes // self.index.page_bytes),
                s.docs_name: 8 * s.num_documents,
            }
            for key, size in expected.items():
                if key not in sizes:
                    raise ShardTruncatedError(
                        f"{self.store.uri_for(key)}: missing, but index.json lists it; the set is incomplete. {FIX}"
                    )
                if sizes[key] != size:
                    raise ShardTruncatedError(
                        f"{self.store.uri_for(key)}: {sizes[key]} bytes, index.json says {size}. The object is "
                        f"truncated or was overwritten. {FIX}"
                    )

    def _read_verified(self, key: str, sha256: str, what: str) -> bytes:
        raw = self.store.read(key)
        if hashlib.sha256(raw).hexdigest() != sha256:
            raise ShardChecksumError(
                f"{self.store.uri_for(key)}: sha256 differs from index.json; the {what} is corrupt. {FIX}"
            )
        with self._lock:
            self.bytes_read += len(raw)
        return raw

    def _page_crcs(self, i: int) -> np.ndarray:
        with self._lock:
            if i in self._crcs:
                return self._crcs[i]
            loading = self._crc_loading.setdefault(i, threading.Lock())
        with loading:  # the loader's threads all want the table at once: one of them reads it
            with self._lock:
                if i in self._crcs:
                    return self._crcs[i]
            shard = self.index.shards[i]
            table = np.frombuffer(self._read_verified(shard.crc_name, shard.crc_sha256, "checksum table"), "<u4")
            with self._lock:
                self._crcs[i] = table
        return table

    def page_span(self, i: int, first: int, last: int) -> tuple[int, int]:
        """The byte range [start, end) of shard i that covers its tokens [first, last) in whole checksum pages."""
        page, itemsize = self.index.page_bytes, self.dtype.itemsize
        start = first * itemsize // page * page
        end = min(-(-(last * itemsize) // page) * page, self.index.shards[i].num_bytes)
        return start, end

    def read_pages(self, i: int, start: int, end: int) -> bytes:
        """Bytes [start, end) of shard i, page-aligned (see `page_span`), every page checked against its crc32."""
        shard = self.index.shards[i]
        page = self.index.page_bytes
        data = self.store.read(shard.name, start, end)
        if len(data) != end - start:
            raise ShardTruncatedError(
                f"{self.store.uri_for(shard.name)}: asked for bytes {start}-{end}, got {len(data)} bytes; the "
                f"object is shorter than index.json says. {FIX}"
            )
        crcs = self._page_crcs(i)  # after the data: the first reads of a shard wait for one request, not two
        view = memoryview(data)
        for offset in range(0, len(data), page):
            p = (start + offset) // page
            if zlib.crc32(view[offset : offset + page]) != int(crcs[p]):
                raise ShardChecksumError(
                    f"{self.store.uri_for(shard.name)}: page {p} (bytes {p * page}-"
                    f"{p * page + len(view[offset : offset + page])}) fails its crc32 check; the shard is corrupt. "
                    f"{FIX}"
                )
        with self._lock:
            self.bytes_read += len(data)
        return data

    def _read_shard(self, i: int, first: int, last: int) -> np.ndarray:
        """Tokens [first, last) of shard i, every page they touch verified."""
        start, end = self.page_span(i, first, last)
        data = self.read_pages(i, start, end)
        skip = first - start // self.dtype.itemsize
        return np.frombuffer(data, dtype=self.dtype)[skip : skip + last - first]

    def locate(self, start: int, end: int) -> list[tuple[int, int, int]]:
        """Tokens [start, end) of the stream as (shard, first, last) token ranges within each shard they touch."""
        if not 0 <= start <= end <= self.num_tokens:
            raise IndexError(f"token range {start}-{end} outside 0-{self.num_tokens}")
        parts = []
        i = bisect_right(self._starts, start) - 1
        while start < end:
            take = min(end, self._starts[i + 1])
            parts.append((i, start - self._starts[i], take - self._starts[i]))
            start, i = take, i + 1
        return parts

    def read_tokens(self, start: int, end: int) -> np.ndarray:
        """Tokens [start, end) of the whole set's stream, across shard boundaries where needed."""
        parts = [self._read_shard(i, first, last) for i, first, last in self.locate(start, end)]
        if not parts:
            return np.empty(0, dtype=self.dtype)
        return parts[0] if len(parts) == 1 else np.concatenate(parts)

    def document_ends(self, i: int) -> np.ndarray:
        """Cumulative end offsets of the documents in shard i (verified against the index)."""
        shard = self.index.shards[i]
        return np.frombuffer(self._read_verified(shard.docs_name, shard.docs_sha256, "document table"), "<u8")

    def verify(self) -> None:
        """Read every object in full and check its sha256 (a deep check; the loader checks pages as it goes)."""
        for i, s in enumerate(self.index.shards):
            self._read_verified(s.name, s.sha256, "shard")
            self._page_crcs(i)
            self.document_ends(i)
