"""`pretrainjob`: the command-line tool for data preparation, tokenizers and local runs.

    pretrainjob demo                                   # the whole data path on the bundled corpus
    pretrainjob tokenizer train --input corpus/ --vocab-size 32000 --output s3://b/tok/
    pretrainjob tokenizer audit s3://b/tok/ --corpus corpus/
    pretrainjob prepare --tokenizer s3://b/tok/ --input corpus/ --output s3://b/data/ --dedup
    pretrainjob data inspect s3://b/data/train/ --verify

Object-store settings come from the usual AWS environment variables (AWS_ENDPOINT_URL, AWS_REGION,
AWS_ACCESS_KEY_ID, ...) or the global --endpoint-url/--region flags.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

EXIT_FAILED_CHECK = 1
EXIT_BAD_INPUT = 2


def _storage_options(args: argparse.Namespace):  # type: ignore[no-untyped-def]
    from pretrain_trainer.storage import StorageOptions

    overrides = {k: v for k, v in (("endpoint_url", args.endpoint_url), ("region", args.region)) if v}
    return StorageOptions.from_env(**overrides)


def _read_options(args: argparse.Namespace):  # type: ignore[no-untyped-def]
    from pretrain_trainer.data.readers import ReadOptions

    return ReadOptions(text_field=args.text_field, lang_field=args.lang_field, txt_mode=args.txt_mode)


def _add_read_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--text-field", default="text", help="JSONL key / Parquet column with the text (default: text)")
    p.add_argument(
        "--lang-field",
        default="lang",
        help="key / column with a language label, used to group statistics (default: lang)",
    )
    p.add_argument(
        "--txt-mode",
        default="file",
        choices=("file", "blank-line", "line"),
        help="how .txt files split into documents (default: one document per file)",
    )


def _documents(args: argparse.Namespace, patterns: Sequence[str], flag: str = "--input"):  # type: ignore[no-untyped-def]
    from pretrain_trainer.data.readers import expand_inputs, read_documents

    return read_documents(expand_inputs(patterns, flag), _read_options(args))


def cmd_tokenizer_train(args: argparse.Namespace) -> int:
    from pretrain_trainer.tokenizer.train import TokenizerSpec, save_tokenizer, train_tokenizer

    spec = TokenizerSpec(
        model=args.model,
        vocab_size=args.vocab_size,
        objective=args.objective,
        normalization=args.normalization,
        lowercase=args.lowercase,
        strip_accents=args.strip_accents,
        min_frequency=args.min_frequency,
    )
    tok = train_tokenizer((d.text for d in _documents(args, args.input)), spec)
    uri = save_tokenizer(tok, spec, args.output, _storage_options(args))
    print(f"trained {spec.model} tokenizer: {tok.get_vocab_size()} tokens ({spec.objective} special tokens) -> {uri}")
    return 0


def cmd_tokenizer_audit(args: argparse.Namespace) -> int:
    from itertools import islice

    from pretrain_trainer.tokenizer.audit import audit_tokenizer, format_report
    from pretrain_trainer.tokenizer.load import read_tokenizer

    tokenizer, _ = read_tokenizer(args.tokenizer, _storage_options(args))
    docs = _documents(args, args.corpus, "--corpus")
    report = audit_tokenizer(tokenizer, islice(docs, args.max_documents), max_mismatches=args.show)
    print(format_report(report, args.threshold, args.ignore_whitespace))
    if args.json:
        Path(args.json).write_text(json.dumps(report.as_dict(), indent=1, ensure_ascii=False))
    return 0 if report.passes(args.threshold, args.ignore_whitespace) else EXIT_FAILED_CHECK


def cmd_tokenizer_extend(args: argparse.Namespace) -> int:
    from pretrain_trainer.tokenizer.extend import candidates, extend_tokenizer, write_extended
    from pretrain_trainer.tokenizer.load import read_tokenizer

    options = _storage_options(args)
    base, base_uri = read_tokenizer(args.tokenizer, options)
    found = candidates(
        base, (d.text for d in _documents(args, args.corpus, "--corpus")), args.min_count, args.min_pieces
    )
    chosen = found[: args.max_new_tokens]
    extended = extend_tokenizer(base, (c.word for c in chosen))
    for c in chosen[:10]:
        print(f"  + {c.word!r}: {c.count}× in the corpus, {c.pieces} pieces before")
    uri = write_extended(extended, base_uri, args.output, options)
    saved = sum(c.tokens_saved for c in chosen)
    print(
        f"added {len(chosen)} tokens ({base.get_vocab_size()} -> {extended.get_vocab_size()}), saving about "
        f"{saved} tokens on this corpus -> {uri}"
    )
    return 0


def cmd_prepare(args: argparse.Namespace) -> int:
    from pretrain_trainer.data.prepare import PrepareConfig, prepare

    cfg = PrepareConfig(
        inputs=tuple(args.input),
        output=args.output,
        tokenizer=args.tokenizer,
        read=_read_options(args),
        dedup=args.dedup,
        min_tokens=args.min_tokens,
        validation_fraction=args.validation_fraction,
        shard_tokens=args.shard_tokens,
        eos_token=args.eos_token,
        overwrite=args.overwrite,
        **({"page_bytes": args.page_bytes} if args.page_bytes else {}),
    )
    report = prepare(cfg, _storage_options(args), progress=not args.no_progress and sys.stderr.isatty())
    print(report.format())
    return 0


def cmd_data_inspect(args: argparse.Namespace) -> int:
    from pretrain_trainer.data.shards import ShardSet

    shards = ShardSet.open(args.uri, _storage_options(args))
    idx = shards.index
    print(
        f"{shards.store.uri}: {idx.num_documents} documents, {idx.num_tokens} tokens in {len(idx.shards)} "
        f"shards ({idx.dtype}, {idx.page_bytes}-byte pages)"
    )
    print(
        f"tokenizer {idx.tokenizer.fingerprint[:12]} from {idx.tokenizer.uri or '?'}: vocab "
        f"{idx.tokenizer.vocab_size}, EOS {idx.tokenizer.eos_token!r} = {idx.tokenizer.eos_id}"
    )
    if args.verify:
        shards.verify()
        print(f"verified: every shard's sha256 matches ({shards.bytes_read} bytes read)")
    if args.tokenizer and args.head:
        from pretrain_trainer.tokenizer.load import load_tokenizer

        tok = load_tokenizer(args.tokenizer, _storage_options(args))
        head = shards.read_tokens(0, min(args.head, shards.num_tokens))
        print(f"first {len(head)} tokens decode to:\n{tok.tokenizer.decode(head.tolist(), skip_special_tokens=False)}")
    return 0


def cmd_corpus(args: argparse.Namespace) -> int:
    from pretrain_trainer.bundled_corpus import copy_bundled_corpus

    for path in copy_bundled_corpus(Path(args.output)):
        print(path)
    return 0


def cmd_validate(args: argparse.Namespace) -> int:
    from pretrain_trainer.config import ConfigError, load_jobs

    failed = 0
    for path in args.files:
        try:
            load_jobs(path)
        except ConfigError as err:
            failed += 1
            print(err)
        except OSError as err:
            failed += 1
            print(f"{path}: cannot read ({err.strerror})")
    if not failed:
        print(f"{len(args.files)} valid")
    return EXIT_FAILED_CHECK if failed else 0


def cmd_train(args: argparse.Namespace) -> int:
    from pretrain_trainer.__main__ import main as trainer_main

    return trainer_main(["--config", args.config] + (["--run-dir", args.run_dir] if args.run_dir else []))


def cmd_run(args: argparse.Namespace) -> int:
    from pretrain_trainer.config import load_job
    from pretrain_trainer.launch import run_local
    from pretrain_trainer.report import format_summary, plot_loss

    if not args.local:
        raise ValueError("run: only --local runs start here; on a cluster, `kubectl apply -f` the manifest")
    job = load_job(args.job)  # fail on a bad manifest before any process starts
    run_dir = Path(args.run_dir or f"runs/{job.name}")
    code = run_local(args.job, args.nproc, run_dir)
    summary_file = run_dir / "summary.json"
    if summary_file.exists():
        print(format_summary(json.loads(summary_file.read_text())))
        plot = plot_loss(run_dir)
        print(f"run folder: {run_dir} (train.jsonl, rank logs{', loss plot ' + str(plot) if plot else ''})")
    return code


def cmd_worker(args: argparse.Namespace) -> int:
    from pretrain_trainer.launch import run_worker

    return run_worker(args.config, rendezvous_timeout_s=args.rendezvous_timeout)


def cmd_demo(args: argparse.Namespace) -> int:
    from pretrain_trainer.demo import run_demo

    return run_demo(Path(args.workdir))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pretrainjob",
        description="Prepare tokenizers and token shards for language-model pretraining, and run jobs locally.",
        epilog="Run `pretrainjob COMMAND --help` for a command's options.",
    )
    parser.add_argument("--endpoint-url", help="S3 endpoint (default: $AWS_ENDPOINT_URL, else AWS)")
    parser.add_argument("--region", help="S3 region (default: $AWS_REGION)")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug details")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    tok = sub.add_parser("tokenizer", help="train or audit a tokenizer")
    tok_sub = tok.add_subparsers(dest="tokenizer_command", required=True, metavar="ACTION")
    train = tok_sub.add_parser(
        "train",
        help="train a tokenizer on your corpus",
        description="Train a BPE (byte-level), WordPiece or Unigram tokenizer and write tokenizer.json. "
        "Lower-casing keeps accents unless --strip-accents is given.",
    )
    train.add_argument("--input", nargs="+", required=True, metavar="PATH", help="files, folders or globs")
    train.add_argument(
        "--model",
        default="bpe",
        choices=("bpe", "wordpiece", "unigram"),
        help="bpe is byte-level and lossless (default)",
    )
    train.add_argument("--vocab-size", type=int, default=32000, help="vocabulary size (default: 32000)")
    train.add_argument(
        "--objective",
        default="clm",
        choices=("clm", "mlm"),
        help="which special tokens to add: clm <|endoftext|>, mlm [CLS] [SEP] [MASK] ... (default: clm)",
    )
    train.add_argument(
        "--normalization", default="nfc", choices=("none", "nfc", "nfkc"), help="Unicode normal form (default: nfc)"
    )
    train.add_argument("--lowercase", action="store_true", help="lower-case the text (accents are kept)")
    train.add_argument("--strip-accents", action="store_true", help="remove accents: Å→A, é→e (lossy)")
    train.add_argument("--min-frequency", type=int, default=2, help="minimum pair/piece count (default: 2)")
    train.add_argument(
        "--output",
        required=True,
        help="tokenizer.json path/URI, or a folder/URI prefix to hold it and tokenizer_config.json",
    )
    _add_read_flags(train)
    train.set_defaults(func=cmd_tokenizer_train)

    audit = tok_sub.add_parser(
        "audit",
        help="check round-trip fidelity, unknown tokens and fertility on a corpus",
        description="Encode and decode every document; report per language/script the round-trip share, "
        "unknown-token rate, characters per token and tokens per word, and what a lossy tokenizer loses. "
        "Exits 1 when round-trip fidelity is below --threshold.",
    )
    audit.add_argument("tokenizer", help="tokenizer.json, or a folder/URI holding it")
    audit.add_argument("--corpus", nargs="+", required=True, metavar="PATH", help="files, folders or globs")
    audit.add_argument(
        "--threshold", type=float, default=0.99, help="minimum share of documents that must round-trip (default: 0.99)"
    )
    audit.add_argument(
        "--ignore-whitespace",
        action="store_true",
        help="judge fidelity ignoring whitespace (WordPiece cannot restore spacing)",
    )
    audit.add_argument("--max-documents", type=int, default=None, help="audit only the first N documents")
    audit.add_argument("--show", type=int, default=5, help="how many differing examples to print (default: 5)")
    audit.add_argument("--json", metavar="FILE", help="also write the full report as JSON")
    _add_read_flags(audit)
    audit.set_defaults(func=cmd_tokenizer_audit)

    extend = tok_sub.add_parser(
        "extend",
        help="add a domain's frequent multi-piece words to an existing tokenizer (for DAPT)",
        description="Keep every token of TOKENIZER at its id and append the corpus's frequent words that it "
        "splits into many pieces. Train with model.extendVocab: true to grow the checkpoint's embeddings.",
    )
    extend.add_argument("tokenizer", help="the checkpoint's tokenizer.json, or a folder/URI holding it")
    extend.add_argument("--corpus", nargs="+", required=True, metavar="PATH", help="domain files, folders or globs")
    extend.add_argument("--max-new-tokens", type=int, default=1000, help="at most this many tokens (default: 1000)")
    extend.add_argument("--min-count", type=int, default=5, help="minimum occurrences of a word (default: 5)")
    extend.add_argument(
        "--min-pieces", type=int, default=3, help="only words split into at least this many tokens (default: 3)"
    )
    extend.add_argument(
        "--output", required=True, help="folder or URI prefix for tokenizer.json (and the base's tokenizer_config.json)"
    )
    _add_read_flags(extend)
    extend.set_defaults(func=cmd_tokenizer_extend)

    prep = sub.add_parser(
        "prepare",
        help="tokenize a corpus into verified token shards",
        description="Read .txt/.jsonl/.parquet documents, tokenize them in parallel batches, append EOS "
        "between documents and write shards plus index.json to OUTPUT/train/ (and OUTPUT/validation/).",
    )
    prep.add_argument("--tokenizer", required=True, help="tokenizer.json, or a folder/URI holding it")
    prep.add_argument("--input", nargs="+", required=True, metavar="PATH", help="files, folders or globs")
    prep.add_argument("--output", required=True, help="local folder or s3:// URI for the shard sets")
    prep.add_argument("--dedup", action="store_true", help="drop exact duplicate documents")
    prep.add_argument("--min-tokens", type=int, default=1, help="drop documents shorter than this (default: 1)")
    prep.add_argument(
        "--validation-fraction",
        type=float,
        default=0.0,
        help="share of documents for the validation split, by hash of their text (default: 0)",
    )
    prep.add_argument("--shard-tokens", type=int, default=1 << 26, help="target tokens per shard (default: 67108864)")
    prep.add_argument("--page-bytes", type=int, help="checksum page size in bytes (default: 4096)")
    prep.add_argument("--eos-token", help="document separator (default: the tokenizer's EOS)")
    prep.add_argument("--overwrite", action="store_true", help="replace existing shard sets at --output")
    prep.add_argument("--no-progress", action="store_true", help="no progress bar")
    _add_read_flags(prep)
    prep.set_defaults(func=cmd_prepare)

    data = sub.add_parser("data", help="look into prepared shard sets")
    data_sub = data.add_subparsers(dest="data_command", required=True, metavar="ACTION")
    inspect = data_sub.add_parser("inspect", help="summarise a shard set, optionally verify every checksum")
    inspect.add_argument("uri", help="a shard set folder (holding index.json)")
    inspect.add_argument("--verify", action="store_true", help="read everything and check every sha256")
    inspect.add_argument("--tokenizer", help="decode the first --head tokens with this tokenizer")
    inspect.add_argument("--head", type=int, default=64, help="tokens to decode with --tokenizer (default: 64)")
    inspect.set_defaults(func=cmd_data_inspect)

    validate = sub.add_parser(
        "validate",
        help="check PretrainJob manifests offline (for GitOps pipelines)",
        description="Check each manifest with the trainer's schema and semantic checks. Prints one line per "
        "problem (file: field path: message) and exits 1 if any file is invalid.",
    )
    validate.add_argument("files", nargs="+", metavar="FILE", help="PretrainJob manifests (or bare specs)")
    validate.set_defaults(func=cmd_validate)

    run = sub.add_parser(
        "run",
        help="run a PretrainJob with local worker processes",
        description="Start the job's workers as local processes with the environment a pod gets (torchrun "
        "contract), wait for them, then print a summary and plot the loss.",
    )
    run.add_argument("job", help="PretrainJob manifest (or bare spec)")
    run.add_argument("--local", action="store_true", help="run here (the only mode of this command)")
    run.add_argument("--nproc", type=int, help="processes (default: workers.replicas × workers.procsPerWorker)")
    run.add_argument("--run-dir", help="folder for logs, summary and plot (default: runs/<job name>)")
    run.set_defaults(func=cmd_run)

    train_job = sub.add_parser("train", help="run the trainer in this process (what each worker runs)")
    train_job.add_argument("--config", required=True, help="PretrainJob manifest or spec (YAML)")
    train_job.add_argument("--run-dir", help="local folder for logs and the summary")
    train_job.set_defaults(func=cmd_train)

    worker = sub.add_parser(
        "worker",
        help="what an operator-made pod runs: this node's trainer processes in a multi-node job",
        description="Read the node's place from PET_NNODES, PET_NODE_RANK, PET_NPROC_PER_NODE, PET_MASTER_ADDR and "
        "PET_MASTER_PORT (as torchrun does), wait until the rendezvous host resolves, then run the processes with "
        "torchrun's environment. Exits with the first failing process's code (2: bad config, 143: checkpointed "
        "after SIGTERM).",
    )
    worker.add_argument("--config", required=True, help="PretrainJob manifest (the pod's ConfigMap)")
    worker.add_argument(
        "--rendezvous-timeout", type=float, default=600.0, help="seconds to wait for the rendezvous host's DNS"
    )
    worker.set_defaults(func=cmd_worker)

    corpus = sub.add_parser("corpus", help="write the bundled multilingual demo corpus to a folder")
    corpus.add_argument("--output", required=True, help="folder for one .jsonl file per language")
    corpus.set_defaults(func=cmd_corpus)

    demo = sub.add_parser(
        "demo",
        help="run the whole data path on the bundled corpus with an embedded S3 endpoint",
        description="Train and audit a tokenizer on the bundled corpus, prepare shards into a local S3 "
        "endpoint on loopback, and stream them back as two ranks would.",
    )
    demo.add_argument("--workdir", default="runs/demo", help="local folder for reports (default: runs/demo)")
    demo.set_defaults(func=cmd_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    from pretrain_trainer.data.shards import ShardError
    from pretrain_trainer.storage import StorageError

    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )
    try:
        return args.func(args)
    except (ValueError, FileExistsError, StorageError, ShardError) as err:
        if args.verbose:
            raise
        print(f"pretrainjob: error: {err}", file=sys.stderr)
        return EXIT_BAD_INPUT


if __name__ == "__main__":
    sys.exit(main())
