"""`pretrainjob data verify SHARDS --against INPUTS`: decode the shards back to text and compare with the corpus.

Converting the shards back to text is the only way to see that nothing changed on the way: a tokenizer that
normalises or drops characters, a filter that kept the wrong document, a writer bug. The expected text is
computed by the very code `prepare` writes from (`kept_documents`), with the settings recorded in the shards'
index.json, then normalised by the tokenizer's own normaliser; each shard document must decode to it exactly.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterator
from dataclasses import dataclass, field

from pretrain_trainer.data.prepare import SPLITS, PrepareConfig, PrepareReport, kept_documents
from pretrain_trainer.data.readers import expand_inputs
from pretrain_trainer.data.shards import INDEX_NAME, ShardSet
from pretrain_trainer.storage import StorageOptions, open_store
from pretrain_trainer.tokenizer.load import LoadedTokenizer, load_tokenizer

DIFFS_SHOWN = 3
CONTEXT = 30


def decoded_documents(shards: ShardSet, tok: LoadedTokenizer) -> Iterator[str]:
    """Every document of the shard set, in order, decoded without its trailing EOS."""
    base = 0
    for i, info in enumerate(shards.index.shards):
        start = 0
        for end in shards.document_ends(i):
            ids = shards.read_tokens(base + start, base + int(end)).tolist()
            if ids and ids[-1] == tok.eos_id:
                ids = ids[:-1]
            yield tok.tokenizer.decode(ids, skip_special_tokens=False)
            start = int(end)
        base += info.num_tokens


@dataclass
class Difference:
    split: str
    position: int
    """0-based document number within its split."""
    source: str
    expected: str
    decoded: str

    def describe(self) -> list[str]:
        lines = [f"{self.source} ({self.split} document {self.position}):"]
        ops = [op for op in difflib.SequenceMatcher(None, self.expected, self.decoded, autojunk=False).get_opcodes()]
        changes = [op for op in ops if op[0] != "equal"]
        for tag, i1, i2, j1, j2 in changes[:DIFFS_SHOWN]:
            want, got = self.expected[i1:i2], self.decoded[j1:j2]
            lines.append(f"  character {i1}: {tag} {want!r} -> {got!r}  {_codepoints(want)} -> {_codepoints(got)}")
            lines.append(f"    expected: …{self.expected[max(0, i1 - CONTEXT) : i2 + CONTEXT]!r}…")
            lines.append(f"    decoded:  …{self.decoded[max(0, j1 - CONTEXT) : j2 + CONTEXT]!r}…")
        if len(changes) > DIFFS_SHOWN:
            lines.append(f"  … and {len(changes) - DIFFS_SHOWN} more differences in this document")
        return lines


def _codepoints(text: str) -> str:
    return " ".join(f"U+{ord(c):04X}" for c in text[:6]) + (" …" if len(text) > 6 else "") if text else "(nothing)"


@dataclass
class VerifyResult:
    documents: int = 0
    """Documents prepare keeps from the inputs."""
    exact: int = 0
    missing: int = 0
    """Expected documents the shards do not hold."""
    extra: int = 0
    """Shard documents beyond the expected ones."""
    differences: list[Difference] = field(default_factory=list)
    differing: int = 0

    @property
    def share_exact(self) -> float:
        total = max(self.documents, self.documents - self.missing + self.extra)
        return self.exact / total if total else 1.0

    @property
    def ok(self) -> bool:
        return self.exact == self.documents and not self.extra

    def format(self) -> str:
        lines = [
            f"{self.exact}/{self.documents} documents round-trip exactly ({100 * self.share_exact:.2f}%)"
            + (f"; {self.differing} differ" if self.differing else "")
            + (f"; {self.missing} missing from the shards" if self.missing else "")
            + (f"; {self.extra} extra in the shards" if self.extra else "")
        ]
        for diff in self.differences:
            lines += diff.describe()
        return "\n".join(lines)


def _split_sets(uri: str, options: StorageOptions | None) -> dict[str, ShardSet]:
    store = open_store(uri, options)
    if store.exists(INDEX_NAME):
        split = uri.rstrip("/").rsplit("/", 1)[-1]
        return {split if split in SPLITS else SPLITS[0]: ShardSet.open(uri, options)}
    sets = {s: ShardSet.open(store.uri_for(s), options) for s in SPLITS if store.exists(f"{s}/{INDEX_NAME}")}
    if not sets:
        raise ValueError(f"{uri}: no shard set here (no index.json, no train/ or validation/); give prepare's --output")
    return sets


def verify_against(
    uri: str, inputs: list[str], options: StorageOptions | None = None, tokenizer: str | None = None
) -> VerifyResult:
    """Compare every shard document of the prepare output at `uri` with what prepare keeps from `inputs`."""
    sets = _split_sets(uri, options)
    first = next(iter(sets.values()))
    cfg = PrepareConfig.from_settings(first.index.settings, expand_inputs(inputs, "--against", options), uri)
    tok = load_tokenizer(tokenizer or cfg.tokenizer, options, cfg.eos_token)
    if tok.fingerprint != first.index.tokenizer.fingerprint:
        raise ValueError(
            f"{tokenizer or cfg.tokenizer}: not the tokenizer the shards were made with "
            f"({first.index.tokenizer.fingerprint[:12]}); pass --tokenizer with the right one"
        )
    normalizer = tok.tokenizer.normalizer
    decoded = {split: decoded_documents(s, tok) for split, s in sets.items()}
    positions = dict.fromkeys(sets, 0)
    result = VerifyResult()
    for split, source, text, _ in kept_documents(cfg, list(cfg.inputs), tok, PrepareReport(), storage=options):
        if split not in sets:
            continue
        result.documents += 1
        expected = normalizer.normalize_str(text) if normalizer is not None else text
        got = next(decoded[split], None)
        if got is None:
            result.missing += 1
        elif got == expected:
            result.exact += 1
        else:
            result.differing += 1
            if len(result.differences) < DIFFS_SHOWN:
                result.differences.append(Difference(split, positions[split], source, expected, got))
        positions[split] += 1
    result.extra = sum(sum(1 for _ in rest) for rest in decoded.values())
    return result
