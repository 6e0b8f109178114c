"""The install must never shadow the standard library's `operator`, and the CLI must be on PATH."""

import ast
import subprocess
import sys
from fnmatch import fnmatch
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _run(code: str, cwd: Path) -> str:
    return subprocess.run([sys.executable, "-c", code], cwd=cwd, capture_output=True, text=True, check=True).stdout


def test_import_operator_is_still_the_standard_library_module_after_install():
    # From the repository root too, where the folder `operator/` sits on sys.path[0].
    for cwd in (ROOT, ROOT / "operator"):
        out = _run(
            "import operator, sysconfig, pretrain_operator, pretrain_trainer;"
            "print(operator.__file__); print(sysconfig.get_paths()['stdlib']);"
            "print(operator.itemgetter(1)([0, 42]))",
            cwd,
        )
        path, stdlib, value = out.split("\n")[:3]
        assert path.startswith(stdlib), f"`operator` resolved to {path} from {cwd}"
        assert value == "42"


def test_operator_folder_is_not_a_package():
    assert not (ROOT / "operator" / "__init__.py").exists()


def test_project_packages_have_unique_names():
    out = _run(
        "import pretrain_operator, pretrain_trainer; print(pretrain_operator.__file__);"
        "print(pretrain_trainer.__file__)",
        ROOT,
    )
    op, tr = out.split()
    assert op.endswith("operator/pretrain_operator/__init__.py")
    assert tr.endswith("trainer/pretrain_trainer/__init__.py")


def test_pretrainjob_command_is_installed_and_helps():
    exe = Path(sys.executable).with_name("pretrainjob")
    out = subprocess.run([str(exe), "--help"], capture_output=True, text=True, check=True).stdout
    for command in ("tokenizer", "prepare", "data", "demo"):
        assert command in out


def _setuptools_config() -> dict:
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]


def test_the_package_data_ships_every_bundled_corpus_file():
    from pretrain_trainer.bundled_corpus import bundled_corpus_dir, bundled_corpus_files

    package_dir = bundled_corpus_dir().parent
    patterns = _setuptools_config()["package-data"]["pretrain_trainer"]
    shipped = {path for pattern in patterns for path in package_dir.glob(pattern)}
    assert bundled_corpus_files(), "no bundled corpus files"
    assert set(bundled_corpus_files()) <= shipped, "a bundled .jsonl file is missing from package-data"


def test_the_corpus_generator_is_a_developer_tool_that_no_runtime_module_imports():
    include = _setuptools_config()["packages"]["find"]["include"]
    assert not any(fnmatch("tools", pattern) for pattern in include), "tools/ must not be installed"
    for path in (ROOT / "trainer" / "pretrain_trainer").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names = [alias.name for alias in node.names] if isinstance(node, ast.Import) else []
            if isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            assert not any(n == "tools" or n.startswith("tools.") for n in names), f"{path} imports {names}"


def test_make_generate_regenerates_the_crd_the_reference_and_the_bundled_corpus():
    recipe = (ROOT / "Makefile").read_text().split("\ngenerate:", 1)[1].split("\n\n", 1)[0]
    commands = [line.strip() for line in recipe.splitlines()[1:]]
    modules = [c.split(" -m ", 1)[1] for c in commands if c.startswith("$(PY) -m ")]
    assert modules == [
        "pretrain_operator.crd --write",
        "pretrain_operator.reference --write",
        "tools.bundled_corpus.generate",
    ]


def test_tests_readme_maps_every_test_file_to_its_feature():
    table = (ROOT / "tests" / "README.md").read_text()
    files = sorted(str(p.relative_to(ROOT / "tests")) for p in (ROOT / "tests").glob("*/test_*.py"))
    assert files, "no test files found"
    missing = [name for name in files if f"`{name}`" not in table]
    assert not missing, f"add a row for each to tests/README.md: {missing}"


def test_the_operator_and_the_contract_import_without_torch():
    # The operator image has neither torch nor transformers: with both made unimportable, every operator module
    # and the trainer modules it shares (the contract, the spec) must still import.
    code = (
        "import importlib, pkgutil, sys\n"
        "for blocked in ('torch', 'transformers', 'numpy'):\n"
        "    sys.modules[blocked] = None\n"
        "import pretrain_operator, pretrain_trainer.contract, pretrain_trainer.config\n"
        "names = sorted(m.name for m in pkgutil.iter_modules(pretrain_operator.__path__, 'pretrain_operator.'))\n"
        "for name in names:\n"
        "    importlib.import_module(name)\n"
        "from pretrain_operator.admission import check\n"  # parsing runs the lazily imported semantic checks
        "spec = {'tokenizer': {'uri': 's3://corpus/tok.json'}, 'data': {'train': 's3://corpus/train'}}\n"
        "check('a', 'default', {**spec, 'training': {'globalBatchSamples': 8}})\n"
        "print(' '.join(names))\n"
    )
    imported = _run(code, ROOT).split()
    assert {"pretrain_operator.handlers", "pretrain_operator.lifecycle", "pretrain_operator.main"} <= set(imported)


def test_every_phony_make_target_has_a_recipe():
    makefile = (ROOT / "Makefile").read_text()
    phony = next(line for line in makefile.splitlines() if line.startswith(".PHONY:")).split(":", 1)[1].split()
    defined = {line.split(":", 1)[0] for line in makefile.splitlines() if line and not line[0].isspace()}
    assert phony and not set(phony) - defined, f"phony targets without a rule: {set(phony) - defined}"
