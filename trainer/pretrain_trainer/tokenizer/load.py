"""Load a `tokenizer.json` from a path or URI, fingerprint it, and resolve its special-token roles (EOS, PAD, MASK).

The one place that knows which token plays which role: prepare, the objectives and the model build ask here.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

from tokenizers import Tokenizer

from pretrain_trainer.storage import ObjectStore, StorageNotFound, StorageOptions, open_store, split_uri

# Checked in this order when no tokenizer_config.json names the EOS token.
EOS_CANDIDATES = ("<|endoftext|>", "</s>", "<eos>", "[SEP]", "<|end_of_text|>", "<|im_end|>")
# The first of these in the vocabulary pads and masks (BERT's and RoBERTa's spellings, and ours for CLM).
PAD_TOKEN_CANDIDATES = ("[PAD]", "<pad>", "<|pad|>")
MASK_TOKEN_CANDIDATES = ("[MASK]", "<mask>")
CLS_TOKEN_CANDIDATES = ("[CLS]", "<s>")  # what a segment pair starts with (BERT's NSP, ALBERT's SOP)
SENTINEL_FORMAT = "<extra_id_{}>"
"""T5's sentinel tokens: the n-th noise span of a span-corruption sample is replaced by <extra_id_n>."""


def first_present(tok: Tokenizer, candidates: tuple[str, ...]) -> int | None:
    """The id of the first of `candidates` in the vocabulary (added tokens included), else None."""
    return next((i for i in map(tok.token_to_id, candidates) if i is not None), None)


def document_encoder(tok: Tokenizer) -> Tokenizer:
    """A copy of `tok` that encodes a document's text as text: the spelling of a special token inside it
    ("<|endoftext|>", "[MASK]", "<extra_id_0>") becomes ordinary pieces, never the control token, so a document
    can neither end itself early nor plant a mask or a sentinel. Same vocabulary and fingerprint."""
    copy = Tokenizer.from_str(tok.to_str())
    copy.encode_special_tokens = True
    return copy


def fingerprint(tokenizer_json: str) -> str:
    """sha256 of the tokenizer's canonical JSON: identical for the same vocabulary and rules, whatever the
    file's formatting, so shards can prove which tokenizer made them."""
    canonical = json.dumps(json.loads(tokenizer_json), sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


@dataclass(frozen=True)
class LoadedTokenizer:
    tokenizer: Tokenizer
    uri: str
    fingerprint: str
    eos_token: str
    eos_id: int
    special_tokens: tuple[str, ...]

    @property
    def vocab_size(self) -> int:
        return self.tokenizer.get_vocab_size(with_added_tokens=True)

    @property
    def pad_id(self) -> int | None:
        return first_present(self.tokenizer, PAD_TOKEN_CANDIDATES)

    def model_token_ids(self) -> dict[str, int | None]:
        """The special ids a model's config takes: pad, eos, and bos = eos (packed documents follow an EOS)."""
        return {"pad": self.pad_id, "eos": self.eos_id, "bos": self.eos_id}


def _config_beside(store: ObjectStore, name: str) -> dict[str, object]:
    if name != "tokenizer.json":
        return {}
    try:
        return json.loads(store.read("tokenizer_config.json"))
    except StorageNotFound:
        return {}


def _locate(uri: str) -> tuple[str, str]:
    """(folder URI, file name) of a tokenizer given as its file or its folder."""
    return split_uri(uri if uri.endswith(".json") else uri.rstrip("/") + "/tokenizer.json")


def _parse(text: str, uri: str) -> Tokenizer:
    try:
        return Tokenizer.from_str(text)
    except Exception as err:  # tokenizers raises a bare Exception on malformed JSON
        raise ValueError(f"{uri}: not a valid tokenizer.json ({err})") from err


def read_tokenizer(uri: str, options: StorageOptions | None = None) -> tuple[Tokenizer, str]:
    """The tokenizer at `uri` (a tokenizer.json or a folder holding one) and the URI it was read from."""
    folder, name = _locate(uri)
    store = open_store(folder, options)
    return _parse(store.read(name).decode("utf-8"), store.uri_for(name)), store.uri_for(name)


def load_tokenizer(uri: str, options: StorageOptions | None = None, eos_token: str | None = None) -> LoadedTokenizer:
    """Read `uri` (a tokenizer.json, or a folder holding one), fingerprint it and resolve its EOS token.

    EOS comes from `eos_token` if given, else from a tokenizer_config.json beside the file, else from the
    usual names (<|endoftext|>, </s>, [SEP], ...). A tokenizer with none of them is rejected: prepare
    needs a separator between documents.
    """
    folder, name = _locate(uri)
    store = open_store(folder, options)
    text = store.read(name).decode("utf-8")
    tok = _parse(text, store.uri_for(name))
    special = tuple(t.content for t in tok.get_added_tokens_decoder().values() if t.special)
    eos = eos_token or _config_beside(store, name).get("eos_token")
    if isinstance(eos, dict):  # transformers writes AddedToken dicts in some versions
        eos = eos.get("content")
    if eos is None:
        eos = next((c for c in EOS_CANDIDATES if tok.token_to_id(c) is not None), None)
    if not isinstance(eos, str) or tok.token_to_id(eos) is None:
        raise ValueError(
            f"{store.uri_for(name)}: no end-of-document token found (looked for "
            f"{eos or ', '.join(EOS_CANDIDATES)}). Pass --eos-token with a token that is in the vocabulary."
        )
    return LoadedTokenizer(
        tokenizer=tok,
        uri=store.uri_for(name),
        fingerprint=fingerprint(text),
        eos_token=eos,
        eos_id=tok.token_to_id(eos),
        special_tokens=special,
    )
