"""The two images, read from their Dockerfiles without a Docker engine.

Both build from the repository root: every COPY source must exist there and must survive .dockerignore. The
operator image installs only the `operator` extra (no torch, so nothing that pulls it) and carries every trainer
module the operator imports; it runs `pretrain-operator` as user 65532. The trainer image starts from a CUDA PyTorch
image whose torch satisfies pyproject's requirement, installs the `trainer` extra without replacing that torch,
runs as a non-root user, writes under /tmp, and leaves the command to the operator (no ENTRYPOINT). The kind e2e
workflow builds exactly these Dockerfiles.
"""

from __future__ import annotations

import ast
import json
import re
import shlex
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from pretrain_operator import naming

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: pytest itself depends on tomli there
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[2]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
EXTRAS = PYPROJECT["project"]["optional-dependencies"]
IMAGES = {
    "operator": ROOT / "images" / "operator" / "Dockerfile",
    "trainer": ROOT / "images" / "trainer" / "Dockerfile",
}
INSTRUCTIONS = {
    "FROM", "RUN", "CMD", "LABEL", "EXPOSE", "ENV", "ADD", "COPY", "ENTRYPOINT", "VOLUME", "USER", "WORKDIR",
    "ARG", "ONBUILD", "STOPSIGNAL", "HEALTHCHECK", "SHELL",
}  # fmt: skip


# --- a small Dockerfile reader ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Instruction:
    keyword: str
    args: str
    stage: int  # index of the FROM it belongs to; -1 for ARGs before the first FROM


def parse_dockerfile(path: Path) -> list[Instruction]:
    """Instructions in order: comments and blank lines dropped, continuation lines joined, `${ARG}` references
    in FROM lines replaced by the defaults of the ARGs declared before the first FROM."""
    logical, current = [], ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        current += " " + line[:-1].strip() if line.endswith("\\") else " " + line
        if not line.endswith("\\"):
            logical.append(current.strip())
            current = ""
    assert not current, f"{path}: the last instruction ends with a line continuation"
    out, stage, global_args = [], -1, {}
    for line in logical:
        keyword, _, args = line.partition(" ")
        keyword = keyword.upper()
        assert keyword in INSTRUCTIONS, f"{path}: unknown instruction {keyword!r}"
        if keyword == "ARG" and stage == -1:
            name, _, default = args.partition("=")
            global_args[name.strip()] = default.strip()
        if keyword == "FROM":
            stage += 1
            args = re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: global_args[m.group(1) or m.group(2)], args)
        out.append(Instruction(keyword, args.strip(), stage))
    return out


def exec_form(args: str) -> list[str]:
    """JSON (exec) form of CMD/ENTRYPOINT/COPY, or the shell words of the plain form."""
    return json.loads(args) if args.startswith("[") else shlex.split(args)


def copies(instructions: list[Instruction]) -> list[tuple[list[str], str]]:
    """(sources, destination) of each COPY/ADD from the build context (not `--from` another stage)."""
    out = []
    for ins in instructions:
        if ins.keyword not in ("COPY", "ADD"):
            continue
        words = exec_form(ins.args)
        flags = [w for w in words if w.startswith("--")]
        if any(f.startswith("--from") for f in flags):
            continue
        paths = [w for w in words if not w.startswith("--")]
        out.append((paths[:-1], paths[-1]))
    return out


def final_stage(instructions: list[Instruction]) -> list[Instruction]:
    last = max(i.stage for i in instructions)
    return [i for i in instructions if i.stage == last]


def base_image(instructions: list[Instruction]) -> str:
    return [i for i in instructions if i.keyword == "FROM"][-1].args.split()[0]


def env_of(stage: list[Instruction]) -> dict[str, str]:
    env = {}
    for ins in stage:
        if ins.keyword == "ENV":
            for word in shlex.split(ins.args):
                key, _, value = word.partition("=")
                env[key] = value
    return env


def pip_installs(instructions: list[Instruction]) -> list[str]:
    """Each `pip install ...` command of every RUN, split out of `&&` chains."""
    out = []
    for ins in instructions:
        if ins.keyword == "RUN":
            out += [c.strip() for c in ins.args.split("&&") if re.search(r"\bpip install\b", c)]
    return out


def installed_extras(instructions: list[Instruction]) -> set[str]:
    extras: set[str] = set()
    for command in pip_installs(instructions):
        for group in re.findall(r"\[([\w,\s-]+)\]", command):
            extras |= {e.strip() for e in group.split(",")}
    return extras


def extras_closure(names: set[str]) -> set[str]:
    """The extras themselves plus those they pull in through self-references (`pretrain-operator[trainer,...]`)."""
    todo, seen = list(names), set()
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        for req in EXTRAS[name]:
            if m := re.match(r"pretrain-operator\[([\w,\s-]+)\]", req):
                todo += [e.strip() for e in m.group(1).split(",")]
    return seen


def requirement_names(extras: set[str]) -> set[str]:
    reqs = PYPROJECT["project"]["dependencies"] + [r for e in extras for r in EXTRAS[e]]
    return {re.split(r"[<>=!~\[; ]", r, maxsplit=1)[0].lower() for r in reqs}


# --- .dockerignore, Docker's rules (last matching pattern wins; a matched folder takes its contents) --------------


def _pattern_regex(pattern: str) -> re.Pattern[str]:
    out, i = "", 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out, i = out + "(?:.*/)?", i + 3
        elif pattern.startswith("**", i):
            out, i = out + ".*", i + 2
        elif pattern[i] == "*":
            out, i = out + "[^/]*", i + 1
        elif pattern[i] == "?":
            out, i = out + "[^/]", i + 1
        else:
            out, i = out + re.escape(pattern[i]), i + 1
    return re.compile(out + r"\Z")


def dockerignore_rules() -> list[tuple[bool, re.Pattern[str]]]:
    rules = []
    for raw in (ROOT / ".dockerignore").read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        negated = line.startswith("!")
        rules.append((negated, _pattern_regex(line.lstrip("!").strip("/"))))
    return rules


def is_ignored(relative: str) -> bool:
    parts = relative.strip("/").split("/")
    candidates = ["/".join(parts[: n + 1]) for n in range(len(parts))]
    ignored = False
    for negated, regex in dockerignore_rules():
        if any(regex.match(c) for c in candidates):
            ignored = not negated
    return ignored


def context_files(source: str) -> list[str]:
    """The files a COPY source brings from the context (relative paths), after .dockerignore."""
    path = ROOT / source
    files = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]
    return [r for p in files if not is_ignored(r := str(p.relative_to(ROOT)))]


# --- both images -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("image", IMAGES)
def test_dockerfile_parses_into_stages_that_start_with_from(image: str):
    instructions = parse_dockerfile(IMAGES[image])
    assert next(i.keyword for i in instructions if i.stage >= 0) == "FROM"
    assert all(i.keyword == "ARG" for i in instructions if i.stage == -1)
    assert "$" not in base_image(instructions), "every ARG used in FROM has a default"


@pytest.mark.parametrize("image", IMAGES)
def test_every_copy_source_exists_in_the_context_and_is_not_dockerignored(image: str):
    sources = [s for srcs, _ in copies(parse_dockerfile(IMAGES[image])) for s in srcs]
    assert sources
    for source in sources:
        assert (ROOT / source).exists(), f"COPY {source}: not in the repository"
        assert not is_ignored(source), f"COPY {source}: excluded by .dockerignore"
        assert context_files(source), f"COPY {source}: .dockerignore leaves nothing of it"
        if (ROOT / source).is_dir():
            python = [f for f in (ROOT / source).rglob("*.py") if "__pycache__" not in f.parts]
            kept = set(context_files(source))
            assert all(str(f.relative_to(ROOT)) in kept for f in python), f"COPY {source}: sources dockerignored"


@pytest.mark.parametrize("image", IMAGES)
def test_the_package_is_installed_with_metadata_it_needs(image: str):
    """setuptools reads pyproject.toml and the README it names, and finds packages under both roots."""
    sources = {s.rstrip("/") for srcs, _ in copies(parse_dockerfile(IMAGES[image])) for s in srcs}
    assert {"pyproject.toml", PYPROJECT["project"]["readme"]} <= sources
    assert "operator" in sources, "pretrain_operator is found under operator/"
    assert any(s == "trainer" or s.startswith("trainer/pretrain_trainer") for s in sources)


@pytest.mark.parametrize("image", IMAGES)
def test_pip_installs_only_extras_that_pyproject_declares(image: str):
    extras = installed_extras(parse_dockerfile(IMAGES[image]))
    assert extras == {image}, f"the {image} image installs the {image} extra, got {extras}"
    assert extras <= set(EXTRAS)


@pytest.mark.parametrize("image", IMAGES)
def test_the_final_stage_runs_as_a_non_root_user(image: str):
    users = [i.args for i in final_stage(parse_dockerfile(IMAGES[image])) if i.keyword == "USER"]
    assert users, "no USER: the container would run as root"
    user = users[-1].split(":")[0]
    assert user not in ("root", "0")
    if image == "operator":
        assert users[-1] == "65532:65532", "the chart's securityContext runs the operator as 65532"


def test_dockerignore_keeps_the_environment_runs_tests_and_caches_out():
    for path in (".venv/bin/python", "runs/demo/summary.json", "tests/unit/test_images.py", ".git/HEAD"):
        assert is_ignored(path), path
    for path in ("trainer/pretrain_trainer/__pycache__/cli.cpython-311.pyc", ".pytest_cache/v", ".ruff_cache/x"):
        assert is_ignored(path), path
    for path in (
        "pyproject.toml",
        "README.md",
        "operator/pretrain_operator/main.py",
        "trainer/pretrain_trainer/cli.py",
    ):
        assert not is_ignored(path), path
    assert not is_ignored("trainer/pretrain_trainer/bundled_corpus/sv.jsonl"), "package data of the trainer"


# --- the operator image ------------------------------------------------------------------------------------------


def test_operator_image_installs_no_torch():
    instructions = parse_dockerfile(IMAGES["operator"])
    extras = extras_closure(installed_extras(instructions))
    assert "torch" not in requirement_names(extras), f"extras {sorted(extras)} pull torch"
    assert not any(re.search(r"\btorch\b", c) for c in pip_installs(instructions))


def _module_file(module: str) -> Path | None:
    base = ROOT / "trainer" / Path(*module.split("."))
    return next((p for p in (base.with_suffix(".py"), base / "__init__.py") if p.exists()), None)


def _trainer_imports(path: Path) -> set[str]:
    """The pretrain_trainer modules a file imports (`from pretrain_trainer import contract` included), at any depth."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "pretrain_trainer":
            found.add(node.module)
            found |= {f"{node.module}.{a.name}" for a in node.names if _module_file(f"{node.module}.{a.name}")}
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.split(".")[0] == "pretrain_trainer"}
    return found


def test_operator_image_holds_every_trainer_module_that_the_operator_imports():
    copied = {s.rstrip("/") for srcs, _ in copies(parse_dockerfile(IMAGES["operator"])) for s in srcs}
    needed: set[str] = set()
    todo = set().union(*map(_trainer_imports, (ROOT / "operator" / "pretrain_operator").glob("*.py")))
    while todo:  # what those modules import in turn
        module = todo.pop()
        needed.add(module)
        todo |= _trainer_imports(_module_file(module)) - needed  # type: ignore[arg-type]
    assert {"pretrain_trainer.config", "pretrain_trainer.contract"} <= needed
    for module in needed:
        parts = module.split(".")
        files = [f"trainer/{'/'.join(parts[: n + 1])}/__init__.py" for n in range(len(parts))]
        files.append(f"trainer/{'/'.join(parts)}.py")
        for f in (f for f in files if (ROOT / f).exists()):
            assert any(f == c or f.startswith(c + "/") for c in copied), f"{module} needs {f} in the operator image"


def test_operator_image_entrypoint_is_the_console_script():
    stage = final_stage(parse_dockerfile(IMAGES["operator"]))
    (entrypoint,) = [exec_form(i.args) for i in stage if i.keyword == "ENTRYPOINT"]
    assert entrypoint == ["pretrain-operator"]
    assert "pretrain-operator" in PYPROJECT["project"]["scripts"]
    assert base_image(parse_dockerfile(IMAGES["operator"])).startswith("python:3.11-slim")


# --- the trainer image -------------------------------------------------------------------------------------------


def test_trainer_image_starts_from_a_cuda_pytorch_image_with_a_recent_enough_torch():
    image = base_image(parse_dockerfile(IMAGES["trainer"]))
    m = re.fullmatch(r"pytorch/pytorch:(\d+)\.(\d+)\.(\d+)-cuda(\d+\.\d+)-cudnn(\d+)-(runtime|devel)", image)
    assert m, f"{image} is not a pytorch/pytorch CUDA image"
    (required,) = [r for r in EXTRAS["trainer"] if r.startswith("torch")]
    minimum = tuple(int(x) for x in required.split(">=")[1].split("."))
    assert tuple(int(x) for x in m.groups()[:3])[: len(minimum)] >= minimum, f"{image} vs {required}"


def test_trainer_image_keeps_the_base_images_torch():
    installs = pip_installs(parse_dockerfile(IMAGES["trainer"]))
    assert installs and all(re.search(r"(--constraint|-c)\s", c) for c in installs), "pip must not replace torch"
    assert not any(re.search(r"\btorch\b", c.replace("torch-constraint", "")) for c in installs)


def test_trainer_image_leaves_the_command_to_the_operator_and_writes_under_tmp():
    stage = final_stage(parse_dockerfile(IMAGES["trainer"]))
    assert not [i for i in stage if i.keyword == "ENTRYPOINT"], "the operator sets the worker command"
    env = env_of(stage)
    assert env["PRETRAIN_RUN_DIR"] == naming.RUN_DIR
    assert env["HF_HOME"].startswith("/tmp/")
    assert env["HOME"] and env["HOME"] != "/root"


# --- CI ----------------------------------------------------------------------------------------------------------


def test_kind_workflow_builds_both_dockerfiles_from_the_root_and_runs_the_e2e_tests_and_ci():
    workflow = yaml.safe_load((ROOT / ".github" / "workflows" / "kind-e2e.yaml").read_text())
    steps = [s.get("run", "") for job in workflow["jobs"].values() for s in job["steps"]]
    for path in IMAGES.values():
        assert any(f"docker build -f {path.relative_to(ROOT)} " in s and s.rstrip().endswith(" .") for s in steps)
    assert any("kind load docker-image" in s for s in steps)
    assert any(re.search(r"pytest tests/e2e\b", s) for s in steps)
    assert any("bash .ci/run" in s for s in steps)
    assert set(workflow[True]) == {"push", "pull_request"}  # YAML 1.1 reads the key `on` as true
