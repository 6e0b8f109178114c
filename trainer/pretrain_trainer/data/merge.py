"""`pretrainjob prepare merge`: the completed parts of `prepare --tasks N` into the shard sets (see scatter.py).

The merge takes every corpus-wide decision in global document order with the code a single `prepare` uses
(first exact copy wins; near duplicates against the LSH index of kept documents; `--min-tokens`; the split by text
hash) and streams the kept tokens through the same ShardWriter, so its shards and index are byte-identical to one
process's. It holds one input file's tokens and records at a time, plus the dedup state a single process holds.
"""

from __future__ import annotations

import hashlib
import io
import json
import time
from collections import defaultdict
from typing import Any

import numpy as np

from pretrain_trainer.curation.filters import EXAMPLES_PER_REASON, CurationFilter, CurationLog
from pretrain_trainer.data.prepare import SPLITS, PrepareConfig, PrepareReport, check_output, remove_stale, split_of
from pretrain_trainer.data.scatter import DONE, DUPLICATE, EMPTY, PART_FORMAT, PARTS, part_prefix, strings
from pretrain_trainer.data.shards import DTYPES, ShardWriter, TokenizerMeta
from pretrain_trainer.storage import ObjectStore, StorageNotFound, StorageOptions, open_store

#: What every part of one run must agree on.
_SHARED = ("settings", "inputs", "sizes", "tokenizer", "dtype")


class PartsError(ValueError):
    """The parts under OUTPUT/parts/ are not one complete run; the message names what is missing or extra."""


def completed_parts(out: ObjectStore) -> list[dict[str, Any]]:
    """The `done.json` of every task of the one run under `out`, by task index, checked to form a whole."""
    done_keys = [o.key for o in out.list(f"{PARTS}/") if o.key.endswith(f"/{DONE}")]
    if not done_keys:
        raise PartsError(
            f"{out.uri_for(PARTS)}: no completed task parts. Run `pretrainjob prepare --tasks N --task-index I` "
            "(or an Indexed Job of it) for every I first."
        )
    runs = sorted({key.split("/")[1] for key in done_keys})
    if len(runs) > 1:
        raise PartsError(
            f"{out.uri_for(PARTS)}: duplicate parts from runs with different task counts ({', '.join(runs)}). "
            f"Delete the stale run's folder (e.g. {out.uri_for(f'{PARTS}/{runs[0]}')}) and merge again."
        )
    parts: dict[int, dict[str, Any]] = {}
    for key in done_keys:
        body = json.loads(out.read(key))
        if body.get("format") != PART_FORMAT or key != f"{part_prefix(body['tasks'], body['task_index'])}/{DONE}":
            raise PartsError(f"{out.uri_for(key)}: not a part of this run's layout; delete it and re-run that task")
        parts[body["task_index"]] = body
    tasks = next(iter(parts.values()))["tasks"]
    missing = [i for i in range(tasks) if i not in parts]
    if missing:
        raise PartsError(
            f"{out.uri_for(PARTS)}: missing parts: task(s) {', '.join(map(str, missing))} of {tasks} have not "
            f"completed (no {part_prefix(tasks, missing[0])}/{DONE}). Re-run them with --tasks {tasks} --task-index I."
        )
    ordered = [parts[i] for i in range(tasks)]
    for name in _SHARED:
        differing = [p["task_index"] for p in ordered if p[name] != ordered[0][name]]
        if differing:
            raise PartsError(
                f"{out.uri_for(PARTS)}: task(s) {differing} ran with other {name} than task 0; re-run every task "
                "with the same command line (the inputs must not change between tasks)."
            )
    _check_coverage(out, ordered)
    return ordered


def _check_coverage(out: ObjectStore, parts: list[dict[str, Any]]) -> None:
    owners: dict[int, list[int]] = defaultdict(list)
    for p in parts:
        for i in p["files"]:
            owners[int(i)].append(p["task_index"])
    files = parts[0]["inputs"]
    twice = {files[i]: t for i, t in owners.items() if len(t) > 1}
    if twice:
        raise PartsError(f"{out.uri_for(PARTS)}: duplicate parts: files claimed by more than one task: {twice}")
    unowned = [files[i] for i in range(len(files)) if i not in owners]
    if unowned:
        raise PartsError(f"{out.uri_for(PARTS)}: missing parts: no task processed {', '.join(unowned[:5])}")


def _read_verified(store: ObjectStore, entry: dict[str, Any]) -> bytes:
    try:
        data = store.read(entry["key"])
    except StorageNotFound as err:
        raise PartsError(f"{store.uri_for(entry['key'])}: missing, but its {DONE} lists it; re-run that task") from err
    if len(data) != entry["size"] or hashlib.sha256(data).hexdigest() != entry["sha256"]:
        raise PartsError(f"{store.uri_for(entry['key'])}: differs from its {DONE} (size or sha256); re-run that task")
    return data


def merge(
    output: str,
    options: StorageOptions | None = None,
    overwrite: bool = False,
    keep_parts: bool = False,
) -> PrepareReport:
    """Write OUTPUT/train/, OUTPUT/validation/ and report.json from the completed parts under OUTPUT/parts/."""
    started = time.perf_counter()
    out = open_store(output, options)
    parts = completed_parts(out)
    first = parts[0]
    cfg = PrepareConfig.from_settings(first["settings"], None, output)
    check_output(out, overwrite)
    meta = TokenizerMeta(**first["tokenizer"])
    splits = SPLITS if cfg.validation_fraction > 0 else SPLITS[:1]
    writers = {s: ShardWriter(out.child(s), meta, cfg.shard_tokens, cfg.page_bytes, cfg.settings()) for s in splits}
    report = PrepareReport(files=len(first["inputs"]))
    judge = _Judge(cfg, report, np.array([meta.eos_id], dtype=np.uint32))
    owner = {int(i): p for p in parts for i in p["files"]}
    for i in range(len(first["inputs"])):
        part = owner[i]
        store = out.child(part_prefix(part["tasks"], part["task_index"]))
        entry = part["files"][str(i)]
        # dict(): an NpzFile parses an array again on every access.
        records = dict(np.load(io.BytesIO(_read_verified(store, entry["records"])), allow_pickle=False))
        tokens = np.frombuffer(_read_verified(store, entry["tokens"]), dtype=DTYPES[first["dtype"]])
        for split, ids in judge.file(records, tokens):
            writers[split].add_document(ids)
    for task in parts:
        report.documents_read += task["documents_read"]
        report.bytes_read += task["bytes_read"]
        report.tasks.append({k: task[k] for k in ("task_index", "documents_read", "bytes_read", "tokens", "seconds")})
    judge.finish(parts)
    for split, writer in writers.items():
        index = writer.close()
        if overwrite:
            remove_stale(writer.store, index)
        report.shards[split] = len(index.shards)
        report.bytes_written += sum(s.num_bytes for s in index.shards)
        report.outputs[split] = writer.store.uri
    # Wall time of the parallel run: the slowest task, then this merge.
    report.seconds = max(t["seconds"] for t in parts) + time.perf_counter() - started
    out.write("report.json", json.dumps(report.as_dict(), indent=1, sort_keys=True, ensure_ascii=False).encode())
    if not keep_parts:
        for obj in out.list(f"{PARTS}/"):
            out.delete(obj.key)
        out.sweep(PARTS)  # empty folders of a local store, unfinished uploads of S3
    return report


class _Judge:
    """The corpus-wide decisions of `kept_documents`, in the same order, from the tasks' records."""

    def __init__(self, cfg: PrepareConfig, report: PrepareReport, eos: np.ndarray) -> None:
        self.cfg, self.report, self.eos = cfg, report, eos
        self.curate = CurationFilter(cfg.curation) if cfg.curation.active else None
        self.log = self.curate.log if self.curate else CurationLog()
        self.seen: set[bytes] = set()

    def file(self, records: Any, tokens: np.ndarray) -> Any:
        """(split, ids with EOS) of each kept document of one file."""
        cfg, log = self.cfg, self.log
        # Plain Python values: per-element numpy scalars would make this loop, the merge's cost, several times slower.
        lengths = records["lengths"].tolist()
        ends = np.cumsum(np.maximum(records["lengths"], 0)).tolist()
        blob = records["digests"].tobytes()
        redactions = strings(records["redacted"], len(lengths))
        for j, (status, length, source) in enumerate(
            zip(
                strings(records["status"], len(lengths)),
                lengths,
                strings(records["sources"], len(lengths)),
                strict=True,
            )
        ):
            digest = blob[16 * j : 16 * j + 16]
            if status == EMPTY:
                log.drop(EMPTY, source, "")
                continue
            if cfg.dedup and digest in self.seen:
                log.drop(DUPLICATE, source, "")
                continue
            if cfg.dedup:
                self.seen.add(digest)
            if status:  # a per-document filter dropped it; the task kept the examples
                log.dropped[status] += 1
                continue
            if self.curate is not None:
                sig = records["signatures"][j] if records["has_signature"][j] else None
                redacted = tuple(k for k in redactions[j].split(",") if k)
                if not self.curate.reduce(source, sig, redacted):
                    continue
            if length < cfg.min_tokens:
                log.drop("too_short", source, "", f"{length} tokens")
                continue
            split = split_of(digest, cfg.validation_fraction)
            ids = tokens[ends[j] - length : ends[j]]
            self.report.kept[split] += 1
            self.report.tokens[split] += length + 1
            yield split, np.concatenate([ids.astype(np.uint32), self.eos])

    def finish(self, parts: list[dict[str, Any]]) -> None:
        """Counts and examples into the report: per-document filters' examples come from the tasks, in task order."""
        examples: dict[str, list[dict[str, str]]] = defaultdict(list)
        for p in parts:
            for reason, found in p["examples"].items():
                if reason in self.log.dropped:
                    examples[reason].extend(found)
        for reason, found in self.log.examples.items():
            examples[reason].extend(found)
        self.report.dropped.update(self.log.dropped)
        self.report.changed.update(self.log.changed)
        self.report.examples.update({r: e[:EXAMPLES_PER_REASON] for r, e in examples.items() if e})
