"""The examples are specifications too: every PretrainJob under examples/ is one that `kubectl apply` accepts (the
CRD's schema) and that the operator admits (the trainer's typed spec and semantic checks), the GitOps overlays
render with kustomize (`kubectl kustomize`) into valid jobs that differ exactly as intended, the Argo CD Application
points at a path that exists, and the kind example's pieces (tiny job, MinIO, data-preparation Job) fit together.
Every `pretrainjob` command the examples show parses with the real command-line parser.
"""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from kubernetes_validate.utils import latest_version

from pretrain_trainer.cli import build_parser
from pretrain_trainer.config import ConfigError, Job, parse_job
from pretrain_trainer.contract import API_VERSION, KIND
from pretrain_trainer.objectives import objective_class
from tests.support.crd_schema import schema_errors
from tests.support.jobs import TINY_GPT

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
GITOPS = EXAMPLES / "gitops"
OVERLAYS = ("dev", "prod")


def yaml_files() -> list[Path]:
    return sorted(p for p in EXAMPLES.rglob("*") if p.suffix in (".yaml", ".yml"))


def documents(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d is not None]


def example_jobs() -> list[tuple[str, dict[str, Any]]]:
    """(id, manifest) of every PretrainJob in every YAML file under examples/, multi-document files included.
    Kustomize patches are fragments, not jobs: they are checked through the rendered overlays."""
    found = []
    for path in yaml_files():
        docs = documents(path)
        for n, doc in enumerate(docs):
            if isinstance(doc, dict) and doc.get("kind") == KIND and not path.name.endswith("-patch.yaml"):
                found.append(
                    (f"{path.relative_to(EXAMPLES)}#{n}" if len(docs) > 1 else str(path.relative_to(EXAMPLES)), doc)
                )
    return found


JOBS = example_jobs()


def job_at(relative: str) -> dict[str, Any]:
    (doc,) = [d for d in documents(EXAMPLES / relative) if d.get("kind") == KIND]
    return doc


def kustomize(directory: Path) -> list[dict[str, Any]]:
    kubectl = shutil.which("kubectl")
    assert kubectl, "kubectl is needed to render the kustomize overlays (it is on the CI and developer machines)"
    proc = subprocess.run([kubectl, "kustomize", str(directory)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, f"kubectl kustomize {directory.relative_to(ROOT)} failed:\n{proc.stderr}"
    return [d for d in yaml.safe_load_all(proc.stdout) if d]


def rendered_job(overlay: str) -> dict[str, Any]:
    (job,) = [d for d in kustomize(GITOPS / "overlays" / overlay) if d["kind"] == KIND]
    return job


def admitted(manifest: dict[str, Any]) -> Job:
    """What the operator admits: the CRD's schema first (kubectl apply), then the typed spec's checks."""
    assert schema_errors(manifest) == []
    try:
        return parse_job(manifest)
    except ConfigError as err:
        pytest.fail(f"the operator would refuse it (InvalidSpec):\n{err}")


def pretrainjob_commands(text: str) -> list[str]:
    """Every `pretrainjob ...` command in a text (shell blocks, YAML comments, scripts), continuation lines joined."""
    commands, current = [], None
    for raw in text.splitlines():
        line = raw.strip().lstrip("#").strip()
        if current is None:
            if not line.startswith("pretrainjob "):
                continue
            current = ""
        current += " " + line.rstrip("\\").strip()
        if not line.endswith("\\"):
            commands.append(current.strip())
            current = None
    return commands


# --- every job ---------------------------------------------------------------------------------------------------


def test_the_examples_hold_the_jobs_the_readme_lists():
    folders = {job_id.split("/")[0] for job_id, _ in JOBS}
    assert {"tiny-cpu", "gpt-from-scratch", "roberta-dapt", "own-tokenizer", "gitops"} <= folders


@pytest.mark.parametrize(("job_id", "manifest"), JOBS, ids=[job_id for job_id, _ in JOBS])
def test_every_example_job_passes_the_crd_schema(job_id: str, manifest: dict[str, Any]):
    assert manifest["apiVersion"] == API_VERSION
    assert schema_errors(manifest) == [], job_id


@pytest.mark.parametrize(("job_id", "manifest"), JOBS, ids=[job_id for job_id, _ in JOBS])
def test_every_example_job_passes_the_operators_semantic_checks(job_id: str, manifest: dict[str, Any]):
    try:
        parse_job(manifest)
    except ConfigError as err:
        pytest.fail(f"{job_id}:\n{err}")


def test_no_example_carries_credentials_except_the_kind_test_store():
    for path in yaml_files():
        for doc in documents(path):
            if doc.get("kind") == "Secret":
                assert path.relative_to(EXAMPLES).parts[0] == "kind", f"{path}: credentials belong outside Git"


# --- the tiny job and the kind store -----------------------------------------------------------------------------


def test_tiny_cpu_job_is_two_single_process_cpu_workers_of_a_tiny_gpt():
    job = admitted(job_at("tiny-cpu/pretrainjob.yaml")).spec
    assert (job.workers.replicas, job.workers.procs_per_worker) == (2, 1)
    assert "nvidia.com/gpu" not in str(job.workers.resources)
    assert job.model.architecture == "gpt2" and job.model.config == TINY_GPT
    assert job.training.max_steps <= 100, "a few dozen steps: the kind test waits for it"
    assert job.checkpoint.uri.startswith("s3://")
    assert job.checkpoint.every_steps < job.training.max_steps, "a checkpoint before the final one"
    assert job.training.max_steps % job.checkpoint.every_steps == 0


def test_tiny_cpu_job_reads_the_store_and_data_that_the_kind_manifests_provide():
    job = admitted(job_at("tiny-cpu/pretrainjob.yaml")).spec
    store = {d["kind"]: d for d in documents(EXAMPLES / "kind" / "minio.yaml")}
    secret, service = store["Secret"], store["Service"]
    assert job.storage.credentials_secret == secret["metadata"]["name"] == "s3-credentials"
    assert set(secret["stringData"]) == {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"}
    s3_port = next(p["port"] for p in service["spec"]["ports"] if p["name"] == "s3")
    assert job.storage.endpoint == f"http://{service['metadata']['name']}:{s3_port}"
    container = store["Deployment"]["spec"]["template"]["spec"]["containers"][0]
    root_env = {e["name"]: e["valueFrom"]["secretKeyRef"] for e in container["env"]}
    assert {ref["name"] for ref in root_env.values()} == {"s3-credentials"}, "MinIO's root user is the job's key"

    script = ""
    for prepare in documents(EXAMPLES / "kind" / "prepare-data-job.yaml"):
        (worker,) = prepare["spec"]["template"]["spec"]["containers"]
        env = {e["name"]: e.get("value", e.get("valueFrom")) for e in worker["env"]}
        assert env["AWS_ENDPOINT_URL"] == job.storage.endpoint
        assert env["AWS_ACCESS_KEY_ID"]["secretKeyRef"]["name"] == job.storage.credentials_secret
        script += " ".join(worker["args"])
    tokenizer_out = re.search(r"tokenizer train .*?--output (\S+)", script, re.S).group(1)
    data_out = re.search(r"pretrainjob prepare .*?--output (\S+)", script, re.S).group(1)
    assert job.tokenizer.uri == tokenizer_out
    assert job.data.train == data_out.rstrip("/") + "/train"
    assert job.data.validation == data_out.rstrip("/") + "/validation"
    bucket = job.checkpoint.uri.split("/")[2]
    assert f"ensure_bucket('s3://{bucket}'" in script, "the Job creates the bucket the job writes to"


def test_kind_data_preparation_is_setup_then_an_indexed_job_of_prepare_tasks_then_the_merge():
    jobs = documents(EXAMPLES / "kind" / "prepare-data-job.yaml")
    components = [j["metadata"]["labels"]["app.kubernetes.io/component"] for j in jobs]
    assert components == ["setup", "tasks", "merge"], "in the order the header's loop applies them"
    for job in jobs:
        for version in ("1.27.0", latest_version()):  # Indexed Jobs are GA since 1.24
            kubernetes_validate.validate(job, version, strict=True)
        pod = job["spec"]["template"]["spec"]
        assert pod["restartPolicy"] == "Never" and pod["securityContext"]["runAsNonRoot"] is True
        assert pod["containers"][0]["image"].startswith("ghcr.io/pretrain-operator/trainer:")
        assert pod["containers"][0]["name"] == job["metadata"]["labels"]["app.kubernetes.io/component"]
    setup, tasks, merge = (" ".join(j["spec"]["template"]["spec"]["containers"][0]["args"]) for j in jobs)
    spec = jobs[1]["spec"]
    count = int(re.search(r"pretrainjob prepare --tasks (\d+)", tasks).group(1))
    assert spec["completionMode"] == "Indexed" and spec["completions"] == spec["parallelism"] == count
    assert "--task-index" not in tasks, "each pod takes its index from JOB_COMPLETION_INDEX"
    corpus = re.search(r"--input (\S+)", tasks).group(1)
    assert f"open_store('{corpus.rstrip('/')}')" in setup, "the tasks read the corpus the setup Job uploads"
    assert re.search(r"--tokenizer (\S+)", tasks).group(1) == re.search(r"train .*?--output (\S+)", setup, re.S).group(
        1
    )
    output = re.search(r"--output (\S+)", tasks).group(1)
    assert f"pretrainjob prepare merge --output {output}" in merge


# --- the GPU examples ----------------------------------------------------------------------------------------------


def test_gpt_from_scratch_is_a_gang_of_four_eight_gpu_nodes_with_fsdp_bf16_and_compile():
    manifest = job_at("gpt-from-scratch/pretrainjob.yaml")
    spec = admitted(manifest).spec
    assert spec.model.architecture == "llama" and spec.model.init == "scratch"
    assert (spec.workers.replicas, spec.workers.procs_per_worker) == (4, 8)
    assert spec.workers.resources["limits"]["nvidia.com/gpu"] == spec.workers.procs_per_worker
    assert (spec.training.precision, spec.training.parallelism, spec.training.compile) == ("bf16", "fsdp", True)
    assert any(t["key"] == "nvidia.com/gpu" for t in spec.workers.tolerations)
    assert spec.workers.shm_size and spec.workers.priority_class_name
    assert manifest["metadata"]["labels"]["kueue.x-k8s.io/queue-name"]


def test_roberta_dapt_continues_a_pretrained_checkpoint_with_whole_word_masking_and_a_grown_vocabulary():
    spec = admitted(job_at("roberta-dapt/pretrainjob.yaml")).spec
    assert (spec.model.architecture, spec.model.init) == ("roberta", "pretrained")
    assert spec.model.from_.startswith("s3://") and spec.model.extend_vocab
    assert (spec.objective.type, spec.objective.mlm.masking) == ("mlm", "whole-word")


def test_electra_small_trains_a_quarter_width_generator_beside_the_small_discriminator():
    spec = admitted(job_at("electra-small/pretrainjob.yaml")).spec
    assert (spec.model.architecture, spec.objective.type) == ("electra", "electra")
    assert spec.objective.electra.generator_size == 0.25 and spec.objective.electra.discriminator_weight == 50
    assert spec.model.config["hidden_size"] == 256 and spec.checkpoint.export_hf


def test_t5_small_corrupts_spans_into_encoder_inputs_of_exactly_512_tokens():
    spec = admitted(job_at("t5-span-corruption/pretrainjob.yaml")).spec
    assert (spec.model.architecture, spec.objective.type) == ("t5", "span-corruption")
    assert spec.objective.span_corruption.noise_density == 0.15 and spec.checkpoint.export_hf
    assert objective_class(spec.objective.type).raw_length(spec) == 568  # T5's raw window for 512 inputs


def test_bart_continues_a_hugging_face_folder_with_infilling_and_sentence_permutation():
    spec = admitted(job_at("bart-denoising/pretrainjob.yaml")).spec
    assert (spec.model.architecture, spec.model.init, spec.objective.type) == ("bart", "pretrained", "denoising")
    assert spec.objective.denoising.mask_ratio == 0.3 and spec.objective.denoising.permute_sentences
    assert spec.model.from_ == spec.tokenizer.uri and spec.checkpoint.export_hf


def test_distilroberta_distils_roberta_base_into_six_of_its_layers_with_the_triple_loss():
    spec = admitted(job_at("distilroberta/pretrainjob.yaml")).spec
    kd = spec.objective.distillation
    assert spec.objective.type == "mlm" and kd.teacher == spec.tokenizer.uri
    assert (kd.student_init, kd.layer_map, kd.temperature) == ("teacher", [0, 2, 4, 7, 9, 11], 2.0)
    assert (kd.alpha_kd, kd.alpha_task, kd.alpha_cos) == (5.0, 2.0, 1.0)


# --- commands the examples show ------------------------------------------------------------------------------------


COMMAND_SOURCES = [
    "own-tokenizer/README.md",
    "kind/prepare-data-job.yaml",
    "roberta-dapt/pretrainjob.yaml",
]


@pytest.mark.parametrize("source", COMMAND_SOURCES)
def test_every_pretrainjob_command_shown_parses_with_the_real_cli(source: str):
    commands = pretrainjob_commands((EXAMPLES / source).read_text())
    assert commands, f"{source} shows no pretrainjob command"
    parser = build_parser()
    for command in commands:
        argv = shlex.split(command, comments=True)[1:]
        try:
            parser.parse_args(argv)
        except SystemExit:
            pytest.fail(f"{source}: `{command}` is not a valid pretrainjob command line")


def test_own_tokenizer_walkthrough_trains_audits_and_prepares_with_the_jobs_tokenizer():
    commands = pretrainjob_commands((EXAMPLES / "own-tokenizer" / "README.md").read_text())
    parsed = [build_parser().parse_args(shlex.split(c, comments=True)[1:]) for c in commands]
    steps = {(a.command, getattr(a, "tokenizer_command", None)): a for a in parsed}
    assert {("tokenizer", "train"), ("tokenizer", "audit"), ("prepare", None)} <= set(steps)
    spec = admitted(job_at("own-tokenizer/pretrainjob.yaml")).spec
    assert steps["tokenizer", "train"].output == spec.tokenizer.uri
    assert steps["tokenizer", "audit"].tokenizer == spec.tokenizer.uri
    assert steps["prepare", None].tokenizer == spec.tokenizer.uri
    assert spec.data.train == steps["prepare", None].output.rstrip("/") + "/train"


# --- GitOps --------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_each_overlay_renders_one_valid_pretrainjob_and_no_secret(overlay: str):
    objects = kustomize(GITOPS / "overlays" / overlay)
    assert [o["kind"] for o in objects] == [KIND]
    job = admitted(objects[0])
    assert job.namespace == f"ml-{overlay}"
    assert objects[0]["metadata"]["labels"]["environment"] == overlay


def test_the_base_renders_the_job_the_overlays_start_from():
    (base,) = kustomize(GITOPS / "base")
    assert base == job_at("gitops/base/pretrainjob.yaml")


def test_overlays_differ_in_size_length_namespace_and_image_tag_only_as_intended():
    base = job_at("gitops/base/pretrainjob.yaml")
    dev, prod = rendered_job("dev"), rendered_job("prod")
    assert (
        dev["spec"]["workers"]["replicas"] < base["spec"]["workers"]["replicas"] < prod["spec"]["workers"]["replicas"]
    )
    assert (
        dev["spec"]["training"]["maxSteps"]
        < base["spec"]["training"]["maxSteps"]
        < prod["spec"]["training"]["maxSteps"]
    )
    assert dev["metadata"]["namespace"] != prod["metadata"]["namespace"]
    repo = base["spec"]["image"].rsplit(":", 1)[0]
    dev_repo, dev_tag = dev["spec"]["image"].rsplit(":", 1)
    prod_repo, prod_tag = prod["spec"]["image"].rsplit(":", 1)
    assert dev_repo == prod_repo == repo and dev_tag != prod_tag
    assert "kueue.x-k8s.io/queue-name" in prod["metadata"]["labels"]
    for job in (dev, prod):  # the same data, tokenizer, model and credentials Secret as the base
        for key in ("tokenizer", "data", "model", "objective", "storage"):
            assert job["spec"][key] == base["spec"][key], key
    assert dev["spec"]["optimizer"]["warmupSteps"] < dev["spec"]["training"]["maxSteps"]


def test_argocd_application_syncs_the_prod_overlay_into_its_namespace():
    (app,) = documents(GITOPS / "argocd-application.yaml")
    assert (app["apiVersion"], app["kind"]) == ("argoproj.io/v1alpha1", "Application")
    source, destination = app["spec"]["source"], app["spec"]["destination"]
    assert source["repoURL"].startswith("https://") and source["targetRevision"]
    assert source["path"] == "examples/gitops/overlays/prod"
    assert (ROOT / source["path"] / "kustomization.yaml").is_file()
    assert destination["namespace"] == rendered_job("prod")["metadata"]["namespace"]
    assert destination["server"] == "https://kubernetes.default.svc"
    assert app["spec"]["syncPolicy"]["automated"]["prune"] is False, "removing a file must not delete a running job"
