"""Read documents from corpus files: .txt, .jsonl and .parquet (optionally .gz for the text formats).

Paths and globs are expanded and sorted, so the same inputs always yield the same documents in the same
order, which is what makes `prepare` deterministic. Inputs may be local or in an object store (`s3://bucket/
corpus/`, `s3://bucket/corpus/**/*.jsonl`; see object_inputs.py), read with the given StorageOptions (default:
the AWS environment).
"""

from __future__ import annotations

import glob
import gzip
import io
import json
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from pretrain_trainer.data.object_inputs import expand_object_pattern, is_object_uri, object_size, open_object
from pretrain_trainer.storage import StorageOptions

TXT_MODES = ("file", "blank-line", "line")
SUFFIXES = (".txt", ".jsonl", ".json", ".parquet")


@dataclass(frozen=True)
class Document:
    text: str
    source: str
    """Where it came from: `path` for a whole file, `path:N` for the N-th document in it (1-based)."""
    lang: str | None = None
    """The value of the language field, where the input has one; audits group by it."""


@dataclass(frozen=True)
class ReadOptions:
    text_field: str = "text"
    """JSONL key / Parquet column holding the document text."""
    lang_field: str = "lang"
    """JSONL key / Parquet column holding a language label, if present (used only for reporting)."""
    txt_mode: str = "file"
    """How .txt files split into documents: one per file, per blank-line-separated block, or per line."""

    def __post_init__(self) -> None:
        if self.txt_mode not in TXT_MODES:
            raise ValueError(f"txt_mode: {self.txt_mode!r} is not one of {', '.join(TXT_MODES)}")


def _kind(path: str) -> str:
    name = path[:-3] if path.endswith(".gz") else path
    for suffix in SUFFIXES:
        if name.endswith(suffix):
            return "jsonl" if suffix == ".json" else suffix[1:]
    raise ValueError(f"{path}: unsupported input type; use .txt, .jsonl or .parquet (text formats may be gzipped)")


def expand_inputs(patterns: Sequence[str], flag: str = "--input", storage: StorageOptions | None = None) -> list[str]:
    """Expand files, directories (recursively, supported types only) and globs into a sorted file list.

    Raises ValueError naming every pattern that matched nothing, so a typo never silently shrinks a corpus.
    """
    files: set[str] = set()
    missing = []
    for pattern in patterns:
        if is_object_uri(pattern):
            found = expand_object_pattern(pattern, storage, _is_supported)
        elif os.path.isdir(pattern):
            found = [str(p) for p in Path(pattern).rglob("*") if p.is_file() and _is_supported(p.name)]
        else:
            found = [p for p in glob.glob(pattern, recursive=True) if os.path.isfile(p)]
        if not found:
            missing.append(pattern)
        files.update(found)
    if missing:
        raise ValueError(f"{flag}: nothing matched {', '.join(missing)}; check the paths or quote the globs")
    for path in files:
        _kind(path)
    return sorted(files)


def _is_supported(name: str) -> bool:
    try:
        _kind(name)
    except ValueError:
        return False
    return True


def input_bytes(files: Sequence[str], storage: StorageOptions | None = None) -> int:
    """Total size of the input files (for progress bars)."""
    return sum(object_size(f, storage) if is_object_uri(f) else os.path.getsize(f) for f in files)


def _open_binary(path: str, storage: StorageOptions | None) -> IO[bytes]:
    return open_object(path, storage) if is_object_uri(path) else open(path, "rb")


def _open_text(path: str, storage: StorageOptions | None) -> IO[str]:
    raw = _open_binary(path, storage)
    if path.endswith(".gz"):
        raw = gzip.GzipFile(fileobj=raw, mode="rb")  # type: ignore[assignment]
    return io.TextIOWrapper(raw, encoding="utf-8", newline="")


def _read_txt(path: str, mode: str, storage: StorageOptions | None) -> Iterator[Document]:
    with _open_text(path, storage) as f:
        if mode == "file":
            yield Document(f.read(), path)
            return
        if mode == "line":
            for n, line in enumerate(f, 1):
                yield Document(line.rstrip("\n"), f"{path}:{n}")
            return
        block: list[str] = []
        n = 0
        for line in f:
            if line.strip():
                block.append(line)
            elif block:
                n += 1
                yield Document("".join(block).rstrip("\n"), f"{path}:{n}")
                block = []
        if block:
            yield Document("".join(block).rstrip("\n"), f"{path}:{n + 1}")


def _read_jsonl(path: str, opts: ReadOptions, storage: StorageOptions | None) -> Iterator[Document]:
    with _open_text(path, storage) as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as err:
                raise ValueError(f"{path}:{n}: not valid JSON ({err.msg}); every line must be one object") from err
            text = record.get(opts.text_field) if isinstance(record, dict) else None
            if not isinstance(text, str):
                raise ValueError(
                    f"{path}:{n}: no string field {opts.text_field!r}; set --text-field to the key that holds "
                    f"the text (keys here: {', '.join(record) if isinstance(record, dict) else 'none'})"
                )
            lang = record.get(opts.lang_field)
            yield Document(text, f"{path}:{n}", lang if isinstance(lang, str) else None)


def _read_parquet(path: str, opts: ReadOptions, storage: StorageOptions | None) -> Iterator[Document]:
    import pyarrow.parquet as pq  # heavy; only parquet inputs pay for it

    pf = pq.ParquetFile(_open_binary(path, storage) if is_object_uri(path) else path)
    names = pf.schema_arrow.names
    if opts.text_field not in names:
        raise ValueError(f"{path}: no column {opts.text_field!r}; set --text-field to one of {', '.join(names)}")
    columns = [opts.text_field] + ([opts.lang_field] if opts.lang_field in names else [])
    n = 0
    for batch in pf.iter_batches(columns=columns, batch_size=4096):
        texts = batch.column(0).to_pylist()
        langs = batch.column(1).to_pylist() if len(columns) == 2 else [None] * len(texts)
        for text, lang in zip(texts, langs, strict=True):
            n += 1
            yield Document(text or "", f"{path}:{n}", lang)


def read_documents(
    files: Sequence[str], opts: ReadOptions | None = None, storage: StorageOptions | None = None
) -> Iterator[Document]:
    """Every document of every file, in file order then position order."""
    opts = opts or ReadOptions()
    for path in files:
        kind = _kind(path)
        try:
            if kind == "txt":
                yield from _read_txt(path, opts.txt_mode, storage)
            elif kind == "jsonl":
                yield from _read_jsonl(path, opts, storage)
            else:
                yield from _read_parquet(path, opts, storage)
        except UnicodeDecodeError as err:
            raise ValueError(
                f"{path}: not valid UTF-8 ({err.reason}: {err.object[err.start : err.end]!r}); "
                "convert the file to UTF-8"
            ) from err
