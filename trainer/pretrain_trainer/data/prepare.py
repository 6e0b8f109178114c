"""Corpus files → token shards in a local folder or object store, with a report of what was kept and why.

    pretrainjob prepare --tokenizer s3://b/tok/tokenizer.json --input 'corpus/*.jsonl' \\
        --output s3://b/datasets/legal/ --dedup --min-tokens 16 --validation-fraction 0.01

writes `OUTPUT/train/` and (with a validation fraction) `OUTPUT/validation/`, each a shard set (see shards.py),
and `OUTPUT/report.json`. Documents are split by a hash of their text, so the split is stable whatever the
input order, and duplicates always land on the same side. The same inputs and settings give identical shards.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field, fields

import numpy as np
from tqdm import tqdm

from pretrain_trainer.curation.filters import CurationConfig, CurationFilter, CurationLog
from pretrain_trainer.curation.quality import QualityThresholds
from pretrain_trainer.data.readers import Document, ReadOptions, expand_inputs, input_bytes, read_documents
from pretrain_trainer.data.shards import DEFAULT_PAGE_BYTES, INDEX_NAME, ShardIndex, ShardWriter, TokenizerMeta
from pretrain_trainer.storage import ObjectStore, StorageOptions, open_store
from pretrain_trainer.tokenizer.load import LoadedTokenizer, document_encoder, load_tokenizer

SPLITS = ("train", "validation")


@dataclass(frozen=True)
class PrepareConfig:
    inputs: tuple[str, ...]
    """Files, directories or globs of .txt / .jsonl / .parquet (text formats may be .gz)."""
    output: str
    """Folder or URI that receives train/, validation/ and report.json."""
    tokenizer: str
    """tokenizer.json (or its folder), local or object-store URI."""
    read: ReadOptions = field(default_factory=ReadOptions)
    dedup: bool = False
    """Drop documents whose exact text was already seen."""
    min_tokens: int = 1
    """Drop documents with fewer tokens than this (EOS not counted)."""
    validation_fraction: float = 0.0
    """Share of documents (by hash of their text) that go to the validation split."""
    shard_tokens: int = 1 << 26
    """Target tokens per shard (64 Mi tokens ≈ 128 MiB of uint16)."""
    page_bytes: int = DEFAULT_PAGE_BYTES
    """Checksum page size; the loader reads and verifies whole pages."""
    batch_documents: int = 1024
    """Documents per `encode_batch` call (the tokenizers library spreads each batch over all cores)."""
    eos_token: str | None = None
    """Document separator; default: the tokenizer's EOS (tokenizer_config.json or the usual names)."""
    curation: CurationConfig = field(default_factory=CurationConfig)
    """Language, quality, near-duplicate and personal-data filters (see pretrain_trainer.curation.filters)."""
    overwrite: bool = False
    """Replace an existing shard set at the output (stale shards are deleted after the new index is written)."""

    def __post_init__(self) -> None:
        if not self.inputs:
            raise ValueError("inputs: give at least one file, folder or glob")
        if not 0.0 <= self.validation_fraction < 1.0:
            raise ValueError(f"validation_fraction: must be in [0, 1), got {self.validation_fraction}")
        if self.min_tokens < 0:
            raise ValueError(f"min_tokens: must be >= 0, got {self.min_tokens}")
        if self.batch_documents < 1:
            raise ValueError(f"batch_documents: must be positive, got {self.batch_documents}")

    def settings(self) -> dict[str, object]:
        """What determines the output, recorded in every index for provenance."""
        body = asdict(self)
        body.pop("overwrite")
        body["inputs"] = list(self.inputs)
        return body

    @classmethod
    def from_settings(cls, settings: dict[str, object], inputs: Iterable[str] | None, output: str) -> PrepareConfig:
        """The config `settings()` recorded (in an index, or in a task's part), writing to `output`; with `inputs`,
        reading those instead of the recorded ones."""
        body: dict = dict(settings)  # type: ignore[type-arg]
        unknown = set(body) - {f.name for f in fields(cls)}
        if unknown:
            raise ValueError(f"{output}: the recorded settings name unknown fields {sorted(unknown)}; re-run prepare")
        body["read"] = ReadOptions(**body.get("read", {}))
        curation = dict(body.get("curation", {}))
        if curation.get("quality") is not None:
            q = curation["quality"]
            curation["quality"] = QualityThresholds(**{k: tuple(v) if isinstance(v, list) else v for k, v in q.items()})
        curation["languages"] = tuple(curation.get("languages", ()))
        body["curation"] = CurationConfig(**curation)
        body["inputs"] = tuple(inputs if inputs is not None else body["inputs"])
        body["output"] = output
        return cls(**body)


@dataclass
class PrepareReport:
    files: int = 0
    documents_read: int = 0
    bytes_read: int = 0
    kept: Counter[str] = field(default_factory=Counter)
    dropped: Counter[str] = field(default_factory=Counter)
    changed: Counter[str] = field(default_factory=Counter)
    """Documents kept in a changed form, by reason (`redacted:email`, ...)."""
    examples: dict[str, list[dict[str, str]]] = field(default_factory=dict)
    """A few documents per drop or change reason: source, text (personal data masked), detail."""
    tokens: Counter[str] = field(default_factory=Counter)
    shards: Counter[str] = field(default_factory=Counter)
    bytes_written: int = 0
    seconds: float = 0.0
    outputs: dict[str, str] = field(default_factory=dict)
    tasks: list[dict[str, object]] = field(default_factory=list)
    """Per task of `prepare --tasks` (merged): documents and bytes read, tokens, seconds."""

    @property
    def tokens_per_second(self) -> float:
        return sum(self.tokens.values()) / self.seconds if self.seconds else 0.0

    def as_dict(self) -> dict[str, object]:
        # Not dataclasses.asdict: it rebuilds a Counter from (key, value) pairs and so counts the pairs.
        body = {k: dict(v) if isinstance(v, Counter) else v for k, v in vars(self).items()}
        body["tokens_per_second"] = round(self.tokens_per_second, 1)
        body["seconds"] = round(self.seconds, 3)
        return body

    def format(self) -> str:
        dropped = ", ".join(f"{n} {reason}" for reason, n in sorted(self.dropped.items())) or "none"
        lines = [
            f"read       {self.documents_read} documents, {self.bytes_read / 1e6:.2f} MB from {self.files} files",
            f"dropped    {sum(self.dropped.values())} ({dropped})",
        ]
        if self.changed:
            changed = ", ".join(f"{n} {reason}" for reason, n in sorted(self.changed.items()))
            lines.append(f"changed    {changed}")
        for reason, examples in sorted(self.examples.items()):
            first = examples[0]
            detail = f" [{first['detail']}]" if first.get("detail") else ""
            lines.append(f"  e.g. {reason}: {first['source']}{detail}: {' '.join(first['text'].split())[:90]}")
        for split in SPLITS:
            if split in self.outputs:
                lines.append(
                    f"{split:<11}{self.kept[split]} documents, {self.tokens[split]} tokens, "
                    f"{self.shards[split]} shards -> {self.outputs[split]}"
                )
        for task in self.tasks:
            seconds = float(task["seconds"])  # type: ignore[arg-type]
            lines.append(
                f"task {task['task_index']:<6}{task['documents_read']} documents, {task['tokens']} tokens in "
                f"{seconds:.2f} s ({int(task['tokens']) / max(seconds, 1e-9):,.0f} tokens/s)"  # type: ignore[call-overload]
            )
        lines.append(
            f"wrote      {self.bytes_written / 1e6:.2f} MB in {self.seconds:.2f} s "
            f"({self.tokens_per_second:,.0f} tokens/s)"
        )
        return "\n".join(lines)


def split_of(digest: bytes, fraction: float) -> str:
    # The first 8 bytes of the text's hash as a number in [0, 1): stable across runs, machines and orders.
    return "validation" if int.from_bytes(digest[:8], "big") / 2**64 < fraction else "train"


def batches(docs: Iterable[Document], size: int) -> Iterator[list[Document]]:
    batch: list[Document] = []
    for doc in docs:
        batch.append(doc)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def check_output(store: ObjectStore, overwrite: bool) -> None:
    for split in SPLITS:
        if store.exists(f"{split}/{INDEX_NAME}") and not overwrite:
            raise FileExistsError(
                f"{store.uri_for(split)}: a shard set is already there. Pass --overwrite to replace it, or "
                "choose another --output."
            )


def remove_stale(store: ObjectStore, index: ShardIndex) -> None:
    live = {INDEX_NAME} | {n for s in index.shards for n in (s.name, s.crc_name, s.docs_name)}
    for obj in store.list(""):
        if obj.key not in live:
            store.delete(obj.key)


def kept_documents(
    cfg: PrepareConfig,
    files: list[str],
    tok: LoadedTokenizer,
    report: PrepareReport,
    bar: tqdm | None = None,
    storage: StorageOptions | None = None,
) -> Iterator[tuple[str, str, str, list[int]]]:
    """(split, source, text as kept, token ids) of every document `prepare` keeps, in shard order.

    The one place that decides what goes into the shards: `prepare` writes what it yields and `data verify`
    compares the shards with it. Counts (and examples) of what it drops or changes go to `report`.
    """
    curate = CurationFilter(cfg.curation) if cfg.curation.active else None
    log = curate.log if curate else CurationLog()
    encoder = document_encoder(tok.tokenizer)
    seen: set[bytes] = set()
    for batch in batches(read_documents(files, cfg.read, storage), cfg.batch_documents):
        keep: list[tuple[str, str, bytes]] = []
        for doc in batch:
            raw = doc.text.encode()
            report.documents_read += 1
            report.bytes_read += len(raw)
            if bar is not None:
                bar.update(len(raw))
            digest = hashlib.blake2b(raw, digest_size=16).digest()
            if not doc.text.strip():
                log.drop("empty", doc.source, doc.text)
            elif cfg.dedup and digest in seen:
                log.drop("duplicate", doc.source, doc.text)
            else:
                if cfg.dedup:
                    seen.add(digest)
                text = curate.apply(doc.source, doc.text) if curate else doc.text
                if text is not None:
                    keep.append((doc.source, text, digest))
        encodings = encoder.encode_batch([text for _, text, _ in keep], add_special_tokens=False)
        for (source, text, digest), enc in zip(keep, encodings, strict=True):
            if len(enc.ids) < cfg.min_tokens:
                log.drop("too_short", source, text, f"{len(enc.ids)} tokens")
                continue
            yield split_of(digest, cfg.validation_fraction), source, text, enc.ids
    report.dropped.update(log.dropped)
    report.changed.update(log.changed)
    report.examples.update(log.examples)


def prepare(cfg: PrepareConfig, options: StorageOptions | None = None, progress: bool = False) -> PrepareReport:
    """Tokenize the corpus and write the shard sets; returns the report (also written as report.json)."""
    started = time.perf_counter()
    files = expand_inputs(cfg.inputs, storage=options)
    tok: LoadedTokenizer = load_tokenizer(cfg.tokenizer, options, cfg.eos_token)
    out = open_store(cfg.output, options)
    check_output(out, cfg.overwrite)
    meta = TokenizerMeta(tok.fingerprint, tok.vocab_size, tok.eos_token, tok.eos_id, tok.uri)
    splits = SPLITS if cfg.validation_fraction > 0 else SPLITS[:1]
    writers = {s: ShardWriter(out.child(s), meta, cfg.shard_tokens, cfg.page_bytes, cfg.settings()) for s in splits}
    report = PrepareReport(files=len(files))
    eos = np.array([tok.eos_id], dtype=np.uint32)
    bar = tqdm(
        total=input_bytes(files, options),
        unit="B",
        unit_scale=True,
        desc="prepare",
        disable=not progress,
    )
    for split, _, _, ids in kept_documents(cfg, files, tok, report, bar, options):
        writers[split].add_document(np.concatenate([np.asarray(ids, dtype=np.uint32), eos]))
        report.kept[split] += 1
        report.tokens[split] += len(ids) + 1
    bar.close()
    for split, writer in writers.items():
        index = writer.close()
        if cfg.overwrite:
            remove_stale(writer.store, index)
        report.shards[split] = len(index.shards)
        report.bytes_written += sum(s.num_bytes for s in index.shards)
        report.outputs[split] = writer.store.uri
    report.seconds = time.perf_counter() - started
    out.write("report.json", json.dumps(report.as_dict(), indent=1, sort_keys=True, ensure_ascii=False).encode())
    return report
