import gzip
import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pretrain_trainer.data.readers import ReadOptions, expand_inputs, read_documents


def _texts(files, **kw):
    return [d.text for d in read_documents(files, ReadOptions(**kw))]


def test_txt_is_one_document_per_file_by_default_and_blocks_or_lines_on_request(tmp_path):
    f = tmp_path / "a.txt"
    f.write_text("Åsa åt.\nSå gott.\n\n\nNästa  stycke.\n\nSista\n")
    assert _texts([str(f)]) == ["Åsa åt.\nSå gott.\n\n\nNästa  stycke.\n\nSista\n"]
    assert _texts([str(f)], txt_mode="blank-line") == ["Åsa åt.\nSå gott.", "Nästa  stycke.", "Sista"]
    assert _texts([str(f)], txt_mode="line")[:2] == ["Åsa åt.", "Så gott."]


def test_jsonl_parquet_and_gzip_inputs_yield_text_and_language(tmp_path):
    rows = [{"text": "Hej då", "lang": "sv"}, {"text": "Grüß Gott", "lang": "de"}]
    (tmp_path / "a.jsonl").write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in rows) + "\n\n")
    with gzip.open(tmp_path / "b.jsonl.gz", "wt", encoding="utf-8") as f:
        f.write(json.dumps({"text": "Ωμέγα"}) + "\n")
    pq.write_table(pa.table({"content": ["Жёлтый", "中文"], "lang": ["ru", "zh"]}), tmp_path / "c.parquet")
    docs = list(read_documents(expand_inputs([str(tmp_path / "*.jsonl*")])))
    assert [(d.text, d.lang) for d in docs] == [("Hej då", "sv"), ("Grüß Gott", "de"), ("Ωμέγα", None)]
    assert docs[0].source.endswith("a.jsonl:1")
    parquet = list(read_documents([str(tmp_path / "c.parquet")], ReadOptions(text_field="content")))
    assert [(d.text, d.lang) for d in parquet] == [("Жёлтый", "ru"), ("中文", "zh")]


def test_folders_expand_recursively_in_sorted_order(tmp_path):
    for name in ("b/2.txt", "a/1.jsonl", "a/notes.md"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("{}")
    assert [p.removeprefix(str(tmp_path)) for p in expand_inputs([str(tmp_path)])] == ["/a/1.jsonl", "/b/2.txt"]


def test_a_pattern_that_matches_nothing_is_an_error_naming_it(tmp_path):
    with pytest.raises(ValueError, match=r"nothing matched .*missing-\*\.txt"):
        expand_inputs([str(tmp_path / "missing-*.txt")])


def test_unsupported_file_type_is_rejected_with_the_supported_ones(tmp_path):
    (tmp_path / "x.csv").write_text("a,b")
    with pytest.raises(ValueError, match=r"x\.csv: unsupported input type; use \.txt, \.jsonl or \.parquet"):
        expand_inputs([str(tmp_path / "x.csv")])


def test_jsonl_without_the_text_field_names_the_line_and_the_keys(tmp_path):
    (tmp_path / "a.jsonl").write_text('{"body": "x"}\n')
    with pytest.raises(ValueError, match=r"a\.jsonl:1: no string field 'text'.*--text-field.*body"):
        list(read_documents([str(tmp_path / "a.jsonl")]))


def test_broken_json_line_names_the_line(tmp_path):
    (tmp_path / "a.jsonl").write_text('{"text": "ok"}\n{"text": \n')
    with pytest.raises(ValueError, match=r"a\.jsonl:2: not valid JSON"):
        list(read_documents([str(tmp_path / "a.jsonl")]))


def test_parquet_without_the_column_lists_the_columns(tmp_path):
    pq.write_table(pa.table({"body": ["x"]}), tmp_path / "a.parquet")
    with pytest.raises(ValueError, match="no column 'text'; set --text-field to one of body"):
        list(read_documents([str(tmp_path / "a.parquet")]))


def test_invalid_utf8_names_the_file(tmp_path):
    (tmp_path / "a.txt").write_bytes(b"ok \xff\xfe broken")
    with pytest.raises(ValueError, match=r"a\.txt: not valid UTF-8"):
        list(read_documents([str(tmp_path / "a.txt")]))
