"""Train a tokenizer on the user's own corpus: byte-level BPE, WordPiece or Unigram (Hugging Face `tokenizers`).

The output is a `tokenizer.json` that `transformers.PreTrainedTokenizerFast(tokenizer_file=...)` loads. When the
output is a directory (or a URI that does not end in `.json`), `tokenizer_config.json` is written beside it, so
`AutoTokenizer.from_pretrained(dir)` also knows which token is EOS, PAD, MASK and so on.

Normalisation is explicit: lower-casing never strips accents unless `strip_accents=True` is asked for. That is
the trap of BERT's uncased normaliser, which turns Swedish "Åsa åt ärtsoppa" into "asa at artsoppa".
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace

from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers

from pretrain_trainer.storage import StorageOptions, open_store, split_uri
from pretrain_trainer.tokenizer.load import SENTINEL_FORMAT

MODELS = ("bpe", "wordpiece", "unigram")
OBJECTIVES = ("clm", "mlm", "span-corruption", "denoising")
T5_SENTINELS = 100
"""T5's number of sentinel tokens (<extra_id_0> ... <extra_id_99>)."""
NORMALIZATIONS = ("none", "nfc", "nfkc")


@dataclass(frozen=True)
class SpecialTokens:
    """Special tokens for one objective, by role. `None` means the objective has no such role."""

    eos: str
    pad: str
    unk: str
    bos: str | None = None
    cls: str | None = None
    sep: str | None = None
    mask: str | None = None
    sentinels: int = 0
    """How many of T5's sentinels <extra_id_0>, <extra_id_1>, ... (span corruption)."""

    def all(self) -> list[str]:
        """Every special token once, in a stable order (ids 0..n-1 in the trained vocabulary)."""
        ordered = [self.pad, self.unk, self.bos, self.eos, self.cls, self.sep, self.mask, *self.sentinel_tokens()]
        return list(dict.fromkeys(t for t in ordered if t is not None))

    def sentinel_tokens(self) -> list[str]:
        return [SENTINEL_FORMAT.format(i) for i in range(self.sentinels)]


# CLM: GPT-2's single document separator; MLM: BERT's roles, so BERT- and RoBERTa-style models find them.
SPECIAL_TOKENS = {
    "clm": SpecialTokens(eos="<|endoftext|>", bos="<|endoftext|>", pad="<|pad|>", unk="<|unk|>"),
    "mlm": SpecialTokens(eos="[SEP]", pad="[PAD]", unk="[UNK]", cls="[CLS]", sep="[SEP]", mask="[MASK]"),
    # T5's and BART's spellings, so their transformers classes and generation defaults find them.
    "span-corruption": SpecialTokens(eos="</s>", pad="<pad>", unk="<unk>", sentinels=T5_SENTINELS),
    "denoising": SpecialTokens(eos="</s>", bos="<s>", pad="<pad>", unk="<unk>", mask="<mask>"),
}


@dataclass(frozen=True)
class TokenizerTrainingSpec:
    """What to train."""

    model: str = "bpe"
    """bpe (byte-level, lossless), wordpiece (BERT-style) or unigram (SentencePiece-style)."""
    vocab_size: int = 32000
    """Size of the vocabulary, special tokens included."""
    objective: str = "clm"
    """clm adds <|endoftext|>/<|pad|>; mlm adds [PAD] [UNK] [CLS] [SEP] [MASK] and a [CLS] $A [SEP] template;
    span-corruption adds <pad> <unk> </s> and the sentinels <extra_id_0> ... (T5); denoising adds <s> <pad> </s>
    <unk> <mask> (BART)."""
    sentinels: int = T5_SENTINELS
    """span-corruption only: how many sentinel tokens to add (one per noise span of a sample)."""
    normalization: str = "nfc"
    """Unicode normal form applied before tokenizing: none, nfc or nfkc (nfkc folds e.g. ligatures and full-width
    letters, which breaks exact round trips)."""
    lowercase: bool = False
    """Lower-case the text. Accents are kept unless strip_accents is also set."""
    strip_accents: bool = False
    """Remove combining accents (Å→A, é→e). Loses information in most languages other than English."""
    min_frequency: int = 2
    """Minimum count for a merge (BPE) or a piece (WordPiece) to enter the vocabulary."""

    def __post_init__(self) -> None:
        if self.model not in MODELS:
            raise ValueError(f"model: {self.model!r} is not one of {', '.join(MODELS)}")
        if self.objective not in OBJECTIVES:
            raise ValueError(f"objective: {self.objective!r} is not one of {', '.join(OBJECTIVES)}")
        if self.normalization not in NORMALIZATIONS:
            raise ValueError(f"normalization: {self.normalization!r} is not one of {', '.join(NORMALIZATIONS)}")
        floor = len(self.special_tokens.all()) + (256 if self.model == "bpe" else 0)
        if self.vocab_size <= floor:
            raise ValueError(
                f"vocab_size: {self.vocab_size} is too small for {self.model}; it must exceed {floor} "
                "(special tokens plus, for byte-level BPE, the 256 byte symbols)"
            )
        if self.min_frequency < 1:
            raise ValueError(f"min_frequency: must be at least 1, got {self.min_frequency}")
        if self.sentinels < 1:
            raise ValueError(f"sentinels: must be at least 1, got {self.sentinels}")

    @property
    def special_tokens(self) -> SpecialTokens:
        special = SPECIAL_TOKENS[self.objective]
        return replace(special, sentinels=self.sentinels) if special.sentinels else special


def build_normalizer(spec: TokenizerTrainingSpec) -> normalizers.Normalizer | None:
    """The normaliser chain, built step by step so that lower-casing never implies accent stripping."""
    steps: list[normalizers.Normalizer] = []
    if spec.normalization == "nfc":
        steps.append(normalizers.NFC())
    elif spec.normalization == "nfkc":
        steps.append(normalizers.NFKC())
    if spec.strip_accents:
        # StripAccents removes combining marks, so they must first be split off the letters (NFD).
        steps += [normalizers.NFD(), normalizers.StripAccents()]
        if spec.normalization != "none":
            steps.append(normalizers.NFC())
    if spec.lowercase:
        steps.append(normalizers.Lowercase())
    if not steps:
        return None
    return steps[0] if len(steps) == 1 else normalizers.Sequence(steps)


def build_untrained(spec: TokenizerTrainingSpec) -> tuple[Tokenizer, trainers.Trainer]:
    """An empty tokenizer of the requested kind and the trainer that fills its vocabulary."""
    special = spec.special_tokens
    if spec.model == "bpe":
        tok = Tokenizer(models.BPE())
        # Byte-level: every string maps to bytes first, so nothing is unknown and decoding is lossless.
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tok.decoder = decoders.ByteLevel()
        trainer: trainers.Trainer = trainers.BpeTrainer(
            vocab_size=spec.vocab_size,
            min_frequency=spec.min_frequency,
            special_tokens=special.all(),
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
            show_progress=False,
        )
    elif spec.model == "wordpiece":
        tok = Tokenizer(models.WordPiece(unk_token=special.unk))
        tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
        tok.decoder = decoders.WordPiece()
        trainer = trainers.WordPieceTrainer(
            vocab_size=spec.vocab_size,
            min_frequency=spec.min_frequency,
            special_tokens=special.all(),
            # Every kept character costs two entries (c and ##c); on a multilingual corpus with CJK an
            # uncapped alphabet alone overshoots the vocabulary. The rarest characters become [UNK].
            limit_alphabet=spec.vocab_size // 4,
            show_progress=False,
        )
    else:
        tok = Tokenizer(models.Unigram())
        tok.pre_tokenizer = pre_tokenizers.Metaspace()
        tok.decoder = decoders.Metaspace()
        trainer = trainers.UnigramTrainer(
            vocab_size=spec.vocab_size,
            special_tokens=special.all(),
            unk_token=special.unk,
            show_progress=False,
        )
    normalizer = build_normalizer(spec)
    if normalizer is not None:
        tok.normalizer = normalizer
    return tok, trainer


def _with_post_processor(tok: Tokenizer, spec: TokenizerTrainingSpec) -> None:
    special = spec.special_tokens
    if spec.objective == "mlm":
        cls_id, sep_id = tok.token_to_id(special.cls), tok.token_to_id(special.sep)
        tok.post_processor = processors.TemplateProcessing(
            single=f"{special.cls} $A {special.sep}",
            pair=f"{special.cls} $A {special.sep} $B:1 {special.sep}:1",
            special_tokens=[(special.cls, cls_id), (special.sep, sep_id)],
        )
    elif spec.objective in ("span-corruption", "denoising"):
        # T5 ends an encoded text with </s>, BART wraps it in <s> ... </s> (as their own tokenizers do).
        ends = [special.bos] if special.bos else []
        template = processors.TemplateProcessing(
            single=" ".join([*ends, "$A", special.eos]),
            special_tokens=[(t, tok.token_to_id(t)) for t in [*ends, special.eos]],
        )
        byte_level = [processors.ByteLevel(trim_offsets=False)] if spec.model == "bpe" else []
        tok.post_processor = processors.Sequence([*byte_level, template]) if byte_level else template
    elif spec.model == "bpe":
        # Keep offsets right for byte-level BPE; adds no tokens.
        tok.post_processor = processors.ByteLevel(trim_offsets=False)


def train_tokenizer(texts: Iterable[str], spec: TokenizerTrainingSpec) -> Tokenizer:
    """Train on an iterable of documents and return the finished tokenizer."""
    tok, trainer = build_untrained(spec)
    tok.train_from_iterator(_nonempty(texts), trainer=trainer)
    _with_post_processor(tok, spec)
    return tok


def _nonempty(texts: Iterable[str]) -> Iterator[str]:
    return (t for t in texts if t)


def transformers_config(spec: TokenizerTrainingSpec, model_max_length: int = 1_000_000_000) -> dict[str, object]:
    """`tokenizer_config.json` content naming the special-token roles for `AutoTokenizer`."""
    special = spec.special_tokens
    roles = {
        "eos_token": special.eos,
        "pad_token": special.pad,
        "unk_token": special.unk,
        "bos_token": special.bos,
        "cls_token": special.cls,
        "sep_token": special.sep,
        "mask_token": special.mask,
    }
    config: dict[str, object] = {k: v for k, v in roles.items() if v is not None}
    if special.sentinels:
        config["additional_special_tokens"] = special.sentinel_tokens()
    config["tokenizer_class"] = "PreTrainedTokenizerFast"
    config["model_max_length"] = model_max_length
    config["clean_up_tokenization_spaces"] = False
    return config


def save_tokenizer(
    tok: Tokenizer, spec: TokenizerTrainingSpec, output: str, options: StorageOptions | None = None
) -> str:
    """Write to a local path or object-store URI; returns the URI of tokenizer.json.

    `output` ending in `.json` names the file itself; anything else is a directory that receives
    `tokenizer.json` and `tokenizer_config.json`.
    """
    payload = tok.to_str(pretty=True).encode()
    if output.endswith(".json"):
        parent, name = split_uri(output)
        store = open_store(parent, options)
        store.write(name, payload)
        return store.uri_for(name)
    store = open_store(output, options)
    store.write("tokenizer_config.json", json.dumps(transformers_config(spec), indent=2).encode())
    store.write("tokenizer.json", payload)
    return store.uri_for("tokenizer.json")
