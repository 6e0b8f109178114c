"""Manifests written to break whoever reads them: `pretrainjob validate` (and the trainer, and the operator, which
read YAML through the same bounded loader) answers each with one clear line naming the file and the field, in
bounded time, and goes on to the next file."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import yaml

from pretrain_trainer import safe_yaml
from pretrain_trainer.cli import main
from pretrain_trainer.config import ConfigError, load_job
from pretrain_trainer.contract import API_VERSION, KIND

VALID = f"""apiVersion: {API_VERSION}
kind: {KIND}
metadata: {{name: ok}}
spec:
  tokenizer: {{uri: s3://bucket/tok}}
  data: {{train: s3://bucket/train}}
  training: {{globalBatchSamples: 8, microBatchSize: 8}}
"""

# Nine levels of nine aliases: under 1 KB of text, 9**9 (387 million) leaves once expanded.
ALIAS_BOMB = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{chr(98 + n)}: &{chr(98 + n)} [{', '.join(['*' + chr(97 + n)] * 9)}]\n" for n in range(8)
)


def validate(capsys: pytest.CaptureFixture[str], *files: Path) -> tuple[int, list[str]]:
    code = main(["validate", *map(str, files)])
    return code, capsys.readouterr().out.splitlines()


def test_an_alias_bomb_is_refused_in_milliseconds_naming_the_file(tmp_path, capsys):
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text(
        VALID + "  model:\n    config:\n" + "".join("      " + line + "\n" for line in ALIAS_BOMB.splitlines())
    )
    started = time.monotonic()
    code, lines = validate(capsys, bomb)
    assert time.monotonic() - started < 2
    assert code != 0 and len(lines) == 1
    assert lines[0].startswith(f"{bomb}: (document): not valid YAML: ") and "alias bomb" in lines[0]


def test_many_aliases_are_refused_even_when_they_do_not_expand(tmp_path):
    text = "a: &a 1\nb: [" + ", ".join(["*a"] * (safe_yaml.MAX_ALIASES + 1)) + "]\n"
    with pytest.raises(safe_yaml.YamlLimitError, match=f"more than {safe_yaml.MAX_ALIASES} aliases"):
        safe_yaml.load(text)


def test_a_few_anchors_and_merge_keys_still_work():
    doc = safe_yaml.load("base: &base {cpu: 1, memory: 1Gi}\nlimits:\n  <<: *base\n  cpu: 2\n")
    assert doc["limits"] == {"cpu": 2, "memory": "1Gi"}


def test_duplicate_keys_are_refused_with_both_lines(tmp_path):
    path = tmp_path / "dup.yaml"
    path.write_text(VALID + "  workers:\n    replicas: 2\n    replicas: 200\n")
    with pytest.raises(ConfigError, match=r"dup\.yaml: \(document\): .*duplicate key 'replicas' at line 10.*line 9"):
        load_job(path)


def test_oversized_and_deeply_nested_documents_are_refused():
    with pytest.raises(safe_yaml.YamlLimitError, match="a manifest is at most"):
        safe_yaml.load("x: " + "y" * safe_yaml.MAX_BYTES)
    with pytest.raises(safe_yaml.YamlLimitError, match="nested more than"):
        safe_yaml.load("[" * 1000 + "]" * 1000)
    assert safe_yaml.load("[" * 20 + "]" * 20) is not None


def test_a_binary_file_is_named_and_validation_goes_on_to_the_next_file(tmp_path, capsys):
    binary, good, bad = tmp_path / "model.bin", tmp_path / "good.yaml", tmp_path / "bad.yaml"
    binary.write_bytes(bytes(range(256)) * 4)
    good.write_text(VALID)
    bad.write_text(VALID.replace("name: ok", "name: Not_OK"))
    code, lines = validate(capsys, binary, good, bad)
    assert code != 0
    assert lines[0].startswith(f"{binary}: (document): not valid YAML: {binary}: not UTF-8 text")
    assert len(lines) == 2 and lines[1].startswith(f"{bad}: metadata.name:")


@pytest.mark.parametrize(
    ("edit", "field"),
    [
        (lambda t: t.replace("metadata: {name: ok}", "metadata: [ok]"), "metadata: must be a mapping"),
        (lambda t: t.replace("metadata: {name: ok}", "metadata: {name: 42}"), "metadata.name: must be a string"),
        (lambda t: t.replace("metadata: {name: ok}", "metadata: {name: ok, namespace: [x]}"), "metadata.namespace"),
        (lambda t: t + "  workers: {resources: {limits: [1, 2]}}\n", "spec.workers.resources.limits: must be a map"),
        (lambda t: t + "  workers: {resources: {limits: {cpu: lots}}}\n", "spec.workers.resources.limits.cpu"),
        (lambda t: t + "  workers: {shmSize: huge}\n", "spec.workers.shmSize"),
        (lambda t: t + "  workers: {tolerations: [gpu]}\n", "spec.workers.tolerations[0]: must be a mapping"),
        (lambda t: t + "  workers: {serviceAccountName: 'a b'}\n", "spec.workers.serviceAccountName"),
        (lambda t: t + "  model: {config: {n_positions: '1024'}}\n", "spec.model.config.n_positions: must be a"),
        (lambda t: t + "  image: 'img; rm -rf /'\n", "spec.image: "),
    ],
)
def test_wrong_shapes_are_one_clear_line_naming_the_field(tmp_path, capsys, edit, field):
    path = tmp_path / "job.yaml"
    path.write_text(edit(VALID))
    code, lines = validate(capsys, path)
    assert code != 0 and len(lines) == 1, lines
    assert lines[0].startswith(f"{path}: {field}"), lines


def test_the_bounded_loader_is_a_safe_loader():
    with pytest.raises(yaml.YAMLError):
        safe_yaml.load("!!python/object/apply:os.system ['true']")
