"""Corpus inputs in S3: the readers, `corpus report`, `prepare` and `data verify` read s3:// URIs and globs."""

from __future__ import annotations

import gzip
import io
import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pretrain_trainer.bundled_corpus import bundled_corpus_files, load_bundled_documents
from pretrain_trainer.cli import main
from pretrain_trainer.data import object_inputs
from pretrain_trainer.data.readers import expand_inputs, input_bytes, read_documents
from pretrain_trainer.storage import open_store
from pretrain_trainer.tokenizer.train import TokenizerTrainingSpec, save_tokenizer
from tests.support.data import trained


@pytest.fixture
def corpus_bucket(s3_bucket, s3_env, monkeypatch):
    """The bundled corpus in a bucket: plain JSONL under corpus/, one file gzipped under corpus/gz/, one as
    Parquet, and a file of another type that must be ignored."""
    store = open_store(s3_bucket, s3_env)
    files = bundled_corpus_files()
    for path in files[:-2]:
        store.write(f"corpus/{path.name}", path.read_bytes())
    store.write(f"corpus/gz/{files[-2].name}.gz", gzip.compress(files[-2].read_bytes()))
    rows = [json.loads(line) for line in files[-1].read_text(encoding="utf-8").splitlines() if line.strip()]
    table = pa.table({"text": [r["text"] for r in rows], "lang": [r["lang"] for r in rows]})
    out = io.BytesIO()
    pq.write_table(table, out, row_group_size=7)
    store.write(f"corpus/pq/{files[-1].stem}.parquet", out.getvalue())
    store.write("corpus/notes.csv", b"a,b\n")
    # Small ranged reads, so that documents and Parquet pages straddle chunk boundaries.
    monkeypatch.setattr(object_inputs, "CHUNK_BYTES", 4096)
    return s3_bucket


def test_an_s3_prefix_reads_every_supported_object_like_the_local_files(corpus_bucket, s3_env):
    files = expand_inputs([f"{corpus_bucket}/corpus/"], storage=s3_env)
    assert len(files) == len(bundled_corpus_files()) and not any(f.endswith(".csv") for f in files)
    texts = sorted(d.text for d in read_documents(files, storage=s3_env))
    assert texts == sorted(d["text"] for d in load_bundled_documents())
    assert input_bytes(files, s3_env) > 0


def test_s3_globs_keep_to_one_segment_unless_double_star(corpus_bucket, s3_env):
    top = expand_inputs([f"{corpus_bucket}/corpus/*.jsonl"], storage=s3_env)
    deep = expand_inputs([f"{corpus_bucket}/corpus/**/*.gz"], storage=s3_env)
    assert len(top) == len(bundled_corpus_files()) - 2
    assert [f.rsplit("/", 2)[-2:] for f in deep] == [["gz", bundled_corpus_files()[-2].name + ".gz"]]
    with pytest.raises(ValueError, match="nothing matched"):
        expand_inputs([f"{corpus_bucket}/corpus/*.parquet"], storage=s3_env)


def test_corpus_report_prepare_and_verify_read_from_s3(corpus_bucket, s3_env, tmp_path, capsys):
    uri = f"{corpus_bucket}/corpus/"
    assert main(["corpus", "report", uri, "--output", str(tmp_path / "report"), "--no-progress"]) == 0
    report = json.loads((tmp_path / "report" / "report.json").read_text())
    assert report["documents"] == len(load_bundled_documents())
    assert all(f.startswith(corpus_bucket) for f in report["inputs"])
    spec = TokenizerTrainingSpec(model="bpe", vocab_size=600)
    tok = save_tokenizer(trained(spec), spec, str(tmp_path / "tok"))
    out = f"{corpus_bucket}/data"
    flags = ["--dedup", "--redact-pii", "--no-progress"]
    assert main(["prepare", "--tokenizer", tok, "--input", uri, "--output", out, *flags]) == 0
    capsys.readouterr()
    assert main(["data", "verify", out, "--against", uri]) == 0
    assert "(100.00%)" in capsys.readouterr().out


def test_a_missing_bucket_prefix_is_a_clear_error(corpus_bucket, capsys):
    assert main(["corpus", "report", f"{corpus_bucket}/nothing-here/", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "nothing matched" in err and "nothing-here" in err
