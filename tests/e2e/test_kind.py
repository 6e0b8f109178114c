"""End to end on a real Kubernetes cluster (kind): the operator image installed by the Helm chart runs the tiny
PretrainJob of examples/tiny-cpu/ with the trainer image, against the in-cluster MinIO of examples/kind/.

What it does, in order, all with `kubectl --context kind-<cluster>`:

1. applies the CRD (crds/, server-side) and the chart rendered offline by helm-python-sdk (Helm's own engine)
   with the images under test, and waits for the operator Deployment;
2. applies examples/kind/minio.yaml (MinIO and the `s3-credentials` Secret) in the job namespace;
3. runs the Jobs of examples/kind/prepare-data-job.yaml one after the other, each to completion: setup (bucket,
   corpus and tokenizer in MinIO), the Indexed Job of `prepare --tasks 2`, and the merge into the shard sets;
4. applies examples/tiny-cpu/pretrainjob.yaml (2 workers × 1 process) with a fresh checkpoint prefix and waits
   for `.status.phase == Succeeded`;
5. checks the status (step == maxSteps, a last checkpoint) and reads the final checkpoint's MANIFEST.json from
   MinIO through a port-forward.

It needs Docker, kind and a kind cluster, and skips without them, saying what is missing. To run it:

    kind create cluster --name pretrain-e2e
    docker build -f images/operator/Dockerfile -t pretrain-operator:e2e .
    docker build -f images/trainer/Dockerfile -t pretrain-trainer:e2e .
    kind load docker-image pretrain-operator:e2e pretrain-trainer:e2e --name pretrain-e2e
    .venv/bin/pytest tests/e2e -v

Settings (environment): KIND_CLUSTER_NAME (default pretrain-e2e), PRETRAIN_OPERATOR_IMAGE (pretrain-operator:e2e),
PRETRAIN_TRAINER_IMAGE (pretrain-trainer:e2e); PRETRAIN_E2E_REQUIRED=1 turns a skip into a failure (CI).
Images that the cluster's node lacks but the local Docker engine has are loaded with `kind load docker-image`.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import shutil
import socket
import subprocess
import time
import uuid
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import helm_python as helm
import pytest
import yaml

from pretrain_operator.crd import CRD_NAME
from pretrain_trainer.storage import StorageOptions, open_store

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "helm" / "pretrain-operator"
CRDS = ROOT / "crds"
EXAMPLES = ROOT / "examples"

CLUSTER = os.environ.get("KIND_CLUSTER_NAME", "pretrain-e2e")
OPERATOR_IMAGE = os.environ.get("PRETRAIN_OPERATOR_IMAGE", "pretrain-operator:e2e")
TRAINER_IMAGE = os.environ.get("PRETRAIN_TRAINER_IMAGE", "pretrain-trainer:e2e")
REQUIRED = os.environ.get("PRETRAIN_E2E_REQUIRED", "") not in ("", "0", "false")

RELEASE = "pretrain-operator"
OPERATOR_NAMESPACE = "pretrain-system"
JOB_NAMESPACE = "pretrain-e2e"
JOB_TIMEOUT_S = 15 * 60
PREPARE_TIMEOUT_S = 10 * 60

HOW_TO_RUN = (
    f"to run it: `kind create cluster --name {CLUSTER}`, build the images (`docker build -f "
    f"images/operator/Dockerfile -t {OPERATOR_IMAGE} .` and `docker build -f images/trainer/Dockerfile "
    f"-t {TRAINER_IMAGE} .`), then `pytest tests/e2e` (see images/README.md)"
)


# --- what is there ---------------------------------------------------------------------------------------------


def _run(args: list[str], timeout: float = 60, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, timeout=timeout, check=False, **kwargs)


def missing_prerequisites() -> list[str]:
    """Why the kind test cannot run here, each missing piece named ([] when it can run)."""
    missing = [f"`{tool}` is not on PATH" for tool in ("kind", "docker", "kubectl") if shutil.which(tool) is None]
    if shutil.which("docker"):
        try:
            info = _run(["docker", "info", "--format", "{{.ServerVersion}}"], timeout=30)
            if info.returncode != 0:
                last = (info.stderr.strip().splitlines() or ["no output"])[-1]
                missing.append(f"no working Docker engine (`docker info` failed: {last})")
        except subprocess.TimeoutExpired:
            missing.append("no working Docker engine (`docker info` did not answer within 30 s)")
    if not missing:
        clusters = _run(["kind", "get", "clusters"], timeout=30)
        names = clusters.stdout.split()
        if clusters.returncode != 0 or CLUSTER not in names:
            found = ", ".join(names) or "none"
            missing.append(f"no kind cluster named {CLUSTER!r} (found: {found}; KIND_CLUSTER_NAME picks another)")
    return missing


MISSING = missing_prerequisites()
WHY_NOT = f"kind e2e test: {'; '.join(MISSING)}. {HOW_TO_RUN[0].upper()}{HOW_TO_RUN[1:]}"
# Where kind and Docker are absent the test skips, saying what is missing; CI with a cluster requires it.
pytestmark = pytest.mark.skipif(bool(MISSING) and not REQUIRED, reason=WHY_NOT)


def split_image(image: str) -> tuple[str, str]:
    """`registry:5000/org/name:tag` -> (`registry:5000/org/name`, `tag`); no tag means `latest`."""
    name, sep, tag = image.rpartition(":")
    if not sep or "/" in tag:
        return image, "latest"
    return name, tag


def ensure_loaded(image: str) -> None:
    """Load `image` into the cluster's nodes unless every node has it already (or the local engine lacks it:
    then pods that use it fail with ErrImagePull, which the diagnostics show)."""
    nodes = _run(["kind", "get", "nodes", "--name", CLUSTER], timeout=30).stdout.split()
    if nodes and all(_run(["docker", "exec", n, "crictl", "inspecti", image]).returncode == 0 for n in nodes):
        return
    if _run(["docker", "image", "inspect", image]).returncode != 0:
        warnings.warn(f"{image} is in neither the kind cluster {CLUSTER!r} nor the local Docker engine", stacklevel=2)
        return
    loaded = _run(["kind", "load", "docker-image", image, "--name", CLUSTER], timeout=1800)
    assert loaded.returncode == 0, f"kind load docker-image {image} failed:\n{loaded.stderr}"


# --- kubectl ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Kube:
    """kubectl pinned to the kind cluster's context, so nothing here ever touches another cluster."""

    context: str

    def run(self, *args: str, stdin: str | None = None, timeout: float = 120, check: bool = True) -> str:
        proc = _run(["kubectl", "--context", self.context, *args], timeout=timeout, input=stdin)
        if check and proc.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr}{proc.stdout}")
        return proc.stdout

    def json(self, *args: str) -> dict[str, Any]:
        return json.loads(self.run(*args, "-o", "json"))

    def apply(self, manifests: str | list[dict[str, Any]], namespace: str | None = None) -> None:
        text = manifests if isinstance(manifests, str) else yaml.safe_dump_all(manifests, sort_keys=False)
        ns = ["--namespace", namespace] if namespace else []
        self.run(
            "apply", *ns, "--server-side", "--force-conflicts", "--field-manager=pretrain-e2e", "-f", "-", stdin=text
        )

    def ensure_namespace(self, name: str) -> None:
        self.apply([{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}])

    def diagnostics(self, namespace: str, *, extra: tuple[str, ...] = ()) -> str:
        """What to read when something did not happen: objects, events and the last log lines."""
        parts = []
        commands = [
            ("get", "pretrainjobs,pods,jobs", "-n", namespace, "-o", "wide"),
            *[("describe", "pretrainjob", name, "-n", namespace) for name in extra],
            ("get", "events", "-n", namespace, "--sort-by=.lastTimestamp"),
            ("logs", "-n", namespace, "-l", "app.kubernetes.io/managed-by=pretrain-operator", "--prefix", "--tail=40"),
            ("logs", "-n", OPERATOR_NAMESPACE, "-l", "app.kubernetes.io/name=pretrain-operator", "--tail=60"),
        ]
        for command in commands:
            try:
                out = self.run(*command, check=False, timeout=60)
            except subprocess.TimeoutExpired:
                out = "(timed out)"
            parts.append(f"$ kubectl {' '.join(command)}\n{out[-6000:]}")
        return "\n".join(parts)


def wait_for(what: str, probe: Any, timeout_s: float, interval_s: float = 5.0) -> Any:
    """Call `probe()` until it returns something other than None; fail after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while True:
        result = probe()
        if result is not None:
            return result
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not within {timeout_s:.0f} s")
        time.sleep(interval_s)


@contextlib.contextmanager
def port_forward(kube: Kube, namespace: str, target: str, port: int) -> Iterator[str]:
    """`kubectl port-forward` to `target`'s `port` on a free local port; yields http://127.0.0.1:<local>."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        local = s.getsockname()[1]
    proc = subprocess.Popen(
        ["kubectl", "--context", kube.context, "port-forward", "-n", namespace, target, f"{local}:{port}"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:

        def connected() -> bool | None:
            assert proc.poll() is None, f"kubectl port-forward exited: {proc.stderr.read() if proc.stderr else ''}"
            with socket.socket() as probe:
                probe.settimeout(1)
                return True if probe.connect_ex(("127.0.0.1", local)) == 0 else None

        wait_for(f"port-forward to {target}", connected, 30, 0.5)
        yield f"http://127.0.0.1:{local}"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


# --- the cluster, step by step ---------------------------------------------------------------------------------


def render_chart() -> str:
    """The chart as `helm template` renders it, with the images under test and the CRD left to crds/."""
    op_repo, op_tag = split_image(OPERATOR_IMAGE)
    tr_repo, tr_tag = split_image(TRAINER_IMAGE)
    values = {
        "image": {"repository": op_repo, "tag": op_tag, "pullPolicy": "IfNotPresent"},
        "trainerImage": {"repository": tr_repo, "tag": tr_tag},
        "watch": {"allNamespaces": True},
        "crds": {"install": False},
        "operator": {"resyncSeconds": 5, "logFormat": "plain"},
    }
    with helm.Chart.load(CHART) as chart:
        manifests = chart.render(values, name=RELEASE, namespace=OPERATOR_NAMESPACE, is_install=True)
    return "\n---\n".join(text for path, text in sorted(manifests.items()) if not path.endswith("NOTES.txt"))


@pytest.fixture(scope="module")
def kube() -> Kube:
    if MISSING:  # only reached with PRETRAIN_E2E_REQUIRED set: a CI that promised a cluster
        pytest.fail(WHY_NOT)
    for image in (OPERATOR_IMAGE, TRAINER_IMAGE):
        ensure_loaded(image)
    return Kube(context=f"kind-{CLUSTER}")


@pytest.fixture(scope="module")
def operator(kube: Kube) -> str:
    """The CRD and the chart installed; the operator Deployment's name once it is available."""
    kube.run("apply", "--server-side", "--force-conflicts", "--field-manager=pretrain-e2e", "-f", str(CRDS))
    kube.run("wait", "--for=condition=established", "--timeout=60s", f"crd/{CRD_NAME}")
    kube.ensure_namespace(OPERATOR_NAMESPACE)
    rendered = render_chart()
    kube.apply(rendered, OPERATOR_NAMESPACE)
    (deployment,) = [d["metadata"]["name"] for d in yaml.safe_load_all(rendered) if d and d["kind"] == "Deployment"]
    try:
        kube.run(
            "rollout", "status", "-n", OPERATOR_NAMESPACE, f"deployment/{deployment}", "--timeout=180s", timeout=200
        )
    except AssertionError as err:
        raise AssertionError(f"{err}\n{kube.diagnostics(OPERATOR_NAMESPACE)}") from None
    return deployment


@pytest.fixture(scope="module")
def store(kube: Kube) -> dict[str, str]:
    """MinIO and its `s3-credentials` Secret in the job namespace; returns the Secret's values."""
    kube.ensure_namespace(JOB_NAMESPACE)
    kube.apply((EXAMPLES / "kind" / "minio.yaml").read_text(), JOB_NAMESPACE)
    kube.run("rollout", "status", "-n", JOB_NAMESPACE, "deployment/minio", "--timeout=300s", timeout=320)
    secret = kube.json("get", "secret", "s3-credentials", "-n", JOB_NAMESPACE)
    return {k: base64.b64decode(v).decode() for k, v in secret["data"].items()}


@pytest.fixture(scope="module")
def tiny_data(kube: Kube, store: dict[str, str]) -> None:
    """The prepare-data Jobs (setup, Indexed Job of prepare tasks, merge), with the trainer image under test, each
    run to completion before the next."""
    for job in yaml.safe_load_all((EXAMPLES / "kind" / "prepare-data-job.yaml").read_text()):
        _run_to_completion(kube, job)


def _run_to_completion(kube: Kube, job: dict[str, Any]) -> None:
    name = job["metadata"]["name"]
    for container in job["spec"]["template"]["spec"]["containers"]:
        container["image"] = TRAINER_IMAGE
    kube.run("delete", "job", name, "-n", JOB_NAMESPACE, "--ignore-not-found", "--wait=true", timeout=180)
    kube.apply([job], JOB_NAMESPACE)

    def finished() -> str | None:
        conditions = kube.json("get", "job", name, "-n", JOB_NAMESPACE).get("status", {}).get("conditions", [])
        done = [c["type"] for c in conditions if c["type"] in ("Complete", "Failed") and c["status"] == "True"]
        return done[0] if done else None

    try:
        outcome = wait_for(f"job/{name}", finished, PREPARE_TIMEOUT_S)
    except TimeoutError as err:
        outcome = str(err)
    if outcome != "Complete":
        logs = kube.run("logs", "-n", JOB_NAMESPACE, f"job/{name}", "--tail=80", check=False)
        pytest.fail(f"data preparation: {outcome}\n{logs}\n{kube.diagnostics(JOB_NAMESPACE)}")


def test_the_tiny_job_trains_to_max_steps_and_leaves_a_complete_checkpoint_in_minio(
    kube: Kube, operator: str, store: dict[str, str], tiny_data: None
) -> None:
    manifest = yaml.safe_load((EXAMPLES / "tiny-cpu" / "pretrainjob.yaml").read_text())
    name, spec = manifest["metadata"]["name"], manifest["spec"]
    # A fresh checkpoint prefix per run: a rerun on the same cluster must train, not resume a finished run.
    spec["checkpoint"]["uri"] = f"{spec['checkpoint']['uri']}/run-{uuid.uuid4().hex[:8]}"
    max_steps = spec["training"]["maxSteps"]
    kube.run("delete", "pretrainjob", name, "-n", JOB_NAMESPACE, "--ignore-not-found", "--wait=true", timeout=180)
    kube.apply([manifest], JOB_NAMESPACE)

    def finished() -> dict[str, Any] | None:
        status = kube.json("get", "pretrainjob", name, "-n", JOB_NAMESPACE).get("status") or {}
        return status if status.get("phase") in ("Succeeded", "Failed") else None

    try:
        status = wait_for(f"PretrainJob {name}", finished, JOB_TIMEOUT_S)
    except TimeoutError as err:
        pytest.fail(f"{err}\n{kube.diagnostics(JOB_NAMESPACE, extra=(name,))}")
    assert status["phase"] == "Succeeded", (
        f"{name} ended {status['phase']}: {status}\n{kube.diagnostics(JOB_NAMESPACE, extra=(name,))}"
    )
    assert status.get("step") == max_steps, status
    assert status.get("lastCheckpoint"), f"no lastCheckpoint in the status: {status}"
    assert 0 < status["lastCheckpoint"] <= max_steps, status

    with port_forward(kube, JOB_NAMESPACE, "service/minio", 9000) as endpoint:
        options = StorageOptions(
            endpoint_url=endpoint,
            region=spec["storage"]["region"],
            access_key_id=store["AWS_ACCESS_KEY_ID"],
            secret_access_key=store["AWS_SECRET_ACCESS_KEY"],
        )
        checkpoints = open_store(spec["checkpoint"]["uri"], options)
        complete = sorted(o.key for o in checkpoints.list("step-") if o.key.endswith("/MANIFEST.json"))
        final = json.loads(checkpoints.read(f"step-{max_steps:08d}/MANIFEST.json"))
    assert final["step"] == max_steps, final
    assert 1 <= len(complete) <= spec["checkpoint"]["keep"], complete
