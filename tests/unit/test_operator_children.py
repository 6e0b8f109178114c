"""The children of a PretrainJob as children.py builds them: the headless Service, the ConfigMap holding the
trainer's job.yaml, and the worker Pods with the torchrun/Kubeflow environment contract.

Pure builders, so these tests build a JobRef and a checked spec and look at the manifests; kubernetes_validate
checks them against the Kubernetes core/v1 schemas (strict: no unknown or misspelt fields).
"""

from __future__ import annotations

import json
import re
from typing import Any

import kubernetes_validate
import pytest
import yaml

from pretrain_operator import children, naming
from pretrain_operator.admission import check
from pretrain_trainer import contract as c
from pretrain_trainer.config import ConfigError, PretrainJobSpec, load_job
from pretrain_trainer.contract import API_VERSION, KIND, METRICS_PORT, RENDEZVOUS_PORT

IMAGE = "registry.example/trainer:1.2.3"
SECRET = "s3-creds-6f1c"
UID = "0b6a7a1e-5a7c-4b1e-9a55-3c1c0f6f2a10"
RFC1035_LABEL = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
K8S_VERSION = "1.30"

SPEC: dict[str, Any] = {
    "tokenizer": {"uri": "s3://corpus/tokenizer.json"},
    "data": {
        "train": "s3://corpus/train",
        "validation": "s3://corpus/validation",
        "sequenceLength": 512,
        "cacheMib": 4096,
    },
    "workers": {
        "replicas": 4,
        "procsPerWorker": 8,
        "resources": {"limits": {"nvidia.com/gpu": 8, "memory": "512Gi"}, "requests": {"cpu": "32"}},
        "nodeSelector": {"node.kubernetes.io/instance-type": "p5.48xlarge"},
        "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
        "affinity": {
            "nodeAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": {
                    "nodeSelectorTerms": [
                        {
                            "matchExpressions": [
                                {"key": "topology.kubernetes.io/zone", "operator": "In", "values": ["a"]}
                            ]
                        }
                    ]
                }
            }
        },
        "priorityClassName": "training-high",
        "serviceAccountName": "trainer",
        "imagePullSecrets": ["regcred", "mirror"],
        "shmSize": "64Gi",
        "terminationGraceSeconds": 600,
        "labels": {"team": "nlp"},
        "annotations": {"cost-center": "research"},
    },
    "storage": {"endpoint": "https://minio.example", "credentialsSecret": SECRET},
    "training": {"globalBatchTokens": 1048576, "microBatchSize": 4},
}


def make_job(name: str = "gpt-small", labels: dict[str, str] | None = None) -> children.JobRef:
    return children.JobRef(name, "ml", UID, dict(labels or {}))


@pytest.fixture(scope="module")
def spec() -> PretrainJobSpec:
    return check("gpt-small", "ml", SPEC)


@pytest.fixture(scope="module")
def pods(spec: PretrainJobSpec) -> list[dict[str, Any]]:
    return children.build_pods(make_job(), spec, attempt=3, image=IMAGE)


def container(pod: dict[str, Any]) -> dict[str, Any]:
    [trainer] = pod["spec"]["containers"]
    return trainer


def env_values(pod: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: e["value"] for e in container(pod)["env"] if "value" in e}


def env_refs(pod: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {e["name"]: e["valueFrom"] for e in container(pod)["env"] if "valueFrom" in e}


# ------------------------------------------------------------------------------------------------ pods


def test_one_pod_per_replica_with_stable_names_hostnames_and_the_service_as_subdomain(pods):
    assert [p["metadata"]["name"] for p in pods] == [f"gpt-small-worker-{i}" for i in range(4)]
    for i, pod in enumerate(pods):
        assert pod["apiVersion"] == "v1" and pod["kind"] == "Pod"
        assert pod["metadata"]["namespace"] == "ml"
        assert pod["spec"]["hostname"] == f"gpt-small-worker-{i}"
        assert pod["spec"]["subdomain"] == "gpt-small" == naming.service_name("gpt-small")


def test_pods_carry_index_attempt_and_job_labels(pods):
    for i, pod in enumerate(pods):
        labels = pod["metadata"]["labels"]
        assert labels[naming.INDEX_LABEL] == str(i)
        assert labels[naming.ATTEMPT_LABEL] == "3"
        assert labels[naming.JOB_LABEL] == "gpt-small"
        assert labels["app.kubernetes.io/managed-by"] == "pretrain-operator"
        assert labels["app.kubernetes.io/component"] == "worker"


@pytest.mark.parametrize("index", [0, 1, 3])
def test_env_contract_for_torchrun_and_kubeflow_scripts(pods, index):
    env = env_values(pods[index])
    master = "gpt-small-worker-0.gpt-small.ml.svc"
    assert env["PET_NNODES"] == "4"
    assert env["PET_NPROC_PER_NODE"] == "8"
    assert env["PET_NODE_RANK"] == str(index)
    assert env["PET_MASTER_ADDR"] == master
    assert env["PET_MASTER_PORT"] == str(RENDEZVOUS_PORT)
    assert env["PET_RDZV_ID"] == f"{UID}-3"  # a fresh rendezvous per attempt
    assert env["MASTER_ADDR"] == master
    assert env["MASTER_PORT"] == str(RENDEZVOUS_PORT)
    assert env[c.PRETRAIN_TERMINATION_LOG] == naming.TERMINATION_LOG == container(pods[index])["terminationMessagePath"]
    assert env[c.PRETRAIN_RUN_DIR] == naming.RUN_DIR
    assert env[c.PRETRAIN_JOB_UID] == UID  # the checkpoint lease's identity: the same for every attempt


@pytest.mark.parametrize("index", [0, 3])
def test_pods_leave_per_process_variables_to_the_launcher(pods, index):
    # A pod is a node of `procsPerWorker` processes: `pretrainjob worker` sets each one's RANK and WORLD_SIZE,
    # and drops any it inherits. A pod-wide RANK would be the node's, which no process should ever read.
    names = {e["name"] for e in container(pods[index])["env"]}
    assert not names & {"RANK", "WORLD_SIZE", "LOCAL_RANK"}
    # Nothing reads these: the launcher never restarts a process (the operator restarts the gang), and the
    # attempt and pod name are in the pod's labels and hostname.
    assert not names & {"PET_MAX_RESTARTS", "PRETRAIN_ATTEMPT", "POD_NAME"}


def test_metrics_listen_on_the_pod_ip_where_the_pod_monitor_scrapes(pods):
    # The trainer's default is loopback (a local run publishes nothing); in a pod the downward API gives the IP.
    assert env_refs(pods[0])[c.PRETRAIN_METRICS_ADDR] == {"fieldRef": {"fieldPath": "status.podIP"}}


def test_every_env_value_is_a_string(pods):
    for e in container(pods[0])["env"]:
        assert isinstance(e.get("value", ""), str), e


def test_master_addr_is_worker_zeros_hostname_under_the_service(pods):
    zero = pods[0]
    fqdn = f"{zero['spec']['hostname']}.{zero['spec']['subdomain']}.{zero['metadata']['namespace']}.svc"
    assert env_values(pods[2])["PET_MASTER_ADDR"] == fqdn == naming.master_addr("gpt-small", "ml")


def test_rendezvous_and_metrics_ports_are_declared(pods):
    ports = {p["name"]: p["containerPort"] for p in container(pods[0])["ports"]}
    assert ports == {"rendezvous": RENDEZVOUS_PORT, "metrics": METRICS_PORT}  # the spec's default metrics port


def test_metrics_port_zero_declares_no_metrics_port():
    spec = check("gpt-small", "ml", {**SPEC, "metrics": {"port": 0}})
    pod = children.build_pod(make_job(), spec, 0, 1, IMAGE)
    assert [p["name"] for p in container(pod)["ports"]] == ["rendezvous"]


def test_dev_shm_is_memory_backed_with_the_spec_size_limit(pods):
    volumes = {v["name"]: v for v in pods[0]["spec"]["volumes"]}
    mounts = {m["mountPath"]: m["name"] for m in container(pods[0])["volumeMounts"]}
    assert volumes[mounts["/dev/shm"]]["emptyDir"] == {"medium": "Memory", "sizeLimit": "64Gi"}


def test_default_shm_size_is_8gi():
    spec = check(
        "gpt-small",
        "ml",
        {"tokenizer": {"uri": "t"}, "data": {"train": "s3://bkt/d"}, "training": {"globalBatchSamples": 8}},
    )
    pod = children.build_pod(make_job(), spec, 0, 1, IMAGE)
    shm = next(v for v in pod["spec"]["volumes"] if v.get("emptyDir", {}).get("medium") == "Memory")
    assert shm["emptyDir"]["sizeLimit"] == "8Gi"


def test_the_node_data_cache_is_a_memory_backed_empty_dir_sized_from_the_spec_and_named_in_the_env(pods):
    volumes = {v["name"]: v for v in pods[0]["spec"]["volumes"]}
    mounts = {m["mountPath"]: m["name"] for m in container(pods[0])["volumeMounts"]}
    cache = env_values(pods[0])["PRETRAIN_DATA_CACHE_DIR"]
    assert cache == naming.DATA_CACHE_DIR
    # The cache keeps itself within cacheMib; the limit leaves headroom so the kubelet never evicts the pod.
    assert volumes[mounts[cache]]["emptyDir"] == {"medium": "Memory", "sizeLimit": "4160Mi"}


def test_gpu_and_other_resources_pass_through(pods):
    assert container(pods[1])["resources"] == SPEC["workers"]["resources"]


def test_restart_policy_never_and_grace_period_from_the_spec(pods):
    for pod in pods:
        assert pod["spec"]["restartPolicy"] == "Never"
        assert pod["spec"]["terminationGracePeriodSeconds"] == 600


def test_command_reads_the_mounted_job_yaml(pods, spec):
    trainer = container(pods[0])
    assert trainer["command"] == ["pretrainjob", "worker", "--config", "/etc/pretrainjob/job.yaml"]
    [mount] = [m for m in trainer["volumeMounts"] if m["mountPath"] == "/etc/pretrainjob"]
    assert mount["readOnly"] is True
    [volume] = [v for v in pods[0]["spec"]["volumes"] if v["name"] == mount["name"]]
    config_map = children.build_config_map(make_job(), spec)
    assert volume["configMap"]["name"] == config_map["metadata"]["name"] == "gpt-small-config"
    assert naming.CONFIG_FILE in config_map["data"]


def test_image_is_the_operators_default_unless_the_spec_names_one(spec):
    assert container(children.build_pod(make_job(), spec, 0, 1, IMAGE))["image"] == IMAGE
    own = check("gpt-small", "ml", {**SPEC, "image": "mine:7"})
    assert container(children.build_pod(make_job(), own, 0, 1, IMAGE))["image"] == "mine:7"


def test_every_child_is_owned_by_the_job_as_its_controller(pods, spec):
    job = make_job()
    for obj in [*pods, children.build_service(job), children.build_config_map(job, spec)]:
        [owner] = obj["metadata"]["ownerReferences"]
        assert owner == {
            "apiVersion": API_VERSION,
            "kind": KIND,
            "name": "gpt-small",
            "uid": UID,
            "controller": True,
            "blockOwnerDeletion": True,
        }
        assert obj["metadata"]["namespace"] == "ml"


def test_scheduling_fields_and_extra_metadata_are_carried(pods):
    workers = SPEC["workers"]
    for pod in pods:
        spec = pod["spec"]
        assert spec["nodeSelector"] == workers["nodeSelector"]
        assert spec["tolerations"] == workers["tolerations"]
        assert spec["affinity"] == workers["affinity"]
        assert spec["priorityClassName"] == "training-high"
        assert spec["serviceAccountName"] == "trainer"
        assert spec["imagePullSecrets"] == [{"name": "regcred"}, {"name": "mirror"}]
        assert pod["metadata"]["labels"]["team"] == "nlp"
        assert pod["metadata"]["annotations"] == {"cost-center": "research", c.RESTART_ROUND_ANNOTATION: "0"}


def test_empty_optional_fields_are_left_out():
    spec = check(
        "tiny",
        "ml",
        {"tokenizer": {"uri": "t"}, "data": {"train": "s3://bkt/d"}, "training": {"globalBatchSamples": 8}},
    )
    pod = children.build_pod(make_job("tiny"), spec, 0, 1, IMAGE)
    for key in (
        "nodeSelector",
        "tolerations",
        "affinity",
        "priorityClassName",
        "serviceAccountName",
        "imagePullSecrets",
    ):
        assert key not in pod["spec"], key
    assert pod["metadata"]["annotations"] == {c.RESTART_ROUND_ANNOTATION: "0"}  # failurePolicy.restartInPlace
    assert not any(e["name"].startswith("AWS_") for e in container(pod)["env"])


def test_in_place_restarts_show_the_pods_restart_round_to_the_worker_and_probe_its_trainers(pods):
    for pod in pods:
        assert pod["metadata"]["annotations"][c.RESTART_ROUND_ANNOTATION] == "0"  # a new gang starts in round 0
        (volume,) = [v for v in pod["spec"]["volumes"] if "downwardAPI" in v]
        (item,) = volume["downwardAPI"]["items"]
        assert item["fieldRef"]["fieldPath"] == f"metadata.annotations['{c.RESTART_ROUND_ANNOTATION}']"
        (mount,) = [m for m in container(pod)["volumeMounts"] if m["name"] == volume["name"]]
        assert mount["readOnly"] and env_values(pod)[c.PRETRAIN_RESTART_ROUND_FILE] == (
            f"{mount['mountPath']}/{item['path']}"
        )
        probe = container(pod)["readinessProbe"]
        run_dir = env_values(pod)[c.PRETRAIN_RUN_DIR]
        assert probe["exec"]["command"] == ["cat", f"{run_dir}/{c.TRAINERS_RUNNING_FILE}"]
        assert probe["periodSeconds"] == 1


def test_without_in_place_restarts_pods_carry_no_round_no_probe_and_no_round_file():
    spec = check("tiny", "ml", {**SPEC, "failurePolicy": {"restartInPlace": False}})
    pod = children.build_pod(make_job("tiny"), spec, 0, 1, IMAGE)
    assert c.RESTART_ROUND_ANNOTATION not in pod["metadata"]["annotations"]
    assert "readinessProbe" not in container(pod)
    assert not [v for v in pod["spec"]["volumes"] if "downwardAPI" in v]
    assert c.PRETRAIN_RESTART_ROUND_FILE not in env_values(pod)


def test_operator_labels_win_over_user_labels_of_the_same_key():
    spec = check(
        "gpt-small",
        "ml",
        {**SPEC, "workers": {**SPEC["workers"], "labels": {naming.JOB_LABEL: "spoofed", naming.ATTEMPT_LABEL: "99"}}},
    )
    labels = children.build_pod(make_job(), spec, 0, 2, IMAGE)["metadata"]["labels"]
    assert labels[naming.JOB_LABEL] == "gpt-small"
    assert labels[naming.ATTEMPT_LABEL] == "2"


def test_kueue_queue_label_makes_each_attempt_one_pod_group(spec):
    job = make_job(labels={naming.KUEUE_QUEUE_LABEL: "team-a"})
    for attempt in (1, 2):
        for pod in children.build_pods(job, spec, attempt, IMAGE):
            labels = pod["metadata"]["labels"]
            assert labels[naming.KUEUE_QUEUE_LABEL] == "team-a"
            assert labels[naming.KUEUE_GROUP_LABEL] == f"gpt-small-{attempt}"
            assert pod["metadata"]["annotations"][naming.KUEUE_COUNT_ANNOTATION] == "4"


def test_without_a_queue_label_pods_have_no_kueue_metadata(pods):
    for pod in pods:
        assert not [k for k in pod["metadata"]["labels"] if k.startswith("kueue.x-k8s.io/")]
        assert not [k for k in pod["metadata"].get("annotations", {}) if k.startswith("kueue.x-k8s.io/")]


# ---------------------------------------------------------------------------------------- credentials


def test_credentials_are_secret_references_only(pods):
    refs = env_refs(pods[0])
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        assert refs[key] == {"secretKeyRef": {"name": SECRET, "key": key}}
    assert refs["AWS_SESSION_TOKEN"] == {"secretKeyRef": {"name": SECRET, "key": "AWS_SESSION_TOKEN", "optional": True}}
    assert not {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"} & set(env_values(pods[0]))


def test_the_secret_name_appears_only_inside_secret_key_refs(pods, spec):
    """Serialized, no built object holds a credential value; the Secret's name occurs only in secretKeyRefs."""
    job = make_job()
    objects = [*pods, children.build_service(job), children.build_config_map(job, spec)]

    def strip_refs(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: strip_refs(v) for k, v in value.items() if k != "secretKeyRef"}
        if isinstance(value, list):
            return [strip_refs(v) for v in value]
        return value

    pod_text = json.dumps(pods)
    assert pod_text.count(f'"secretKeyRef": {{"name": "{SECRET}"') == 3 * len(pods)
    for obj in objects:
        if obj["kind"] == "ConfigMap":
            # The trainer's job.yaml names the Secret (it is part of the spec) but holds no credential.
            assert "AWS_SECRET_ACCESS_KEY" not in json.dumps(obj)
            continue
        assert SECRET not in json.dumps(strip_refs(obj)), obj["metadata"]["name"]
    for pod in pods:
        for e in container(pod)["env"]:
            assert not (e["name"].startswith("AWS_") and "value" in e), e


# ------------------------------------------------------------------------------------- service and config


def test_service_is_headless_publishes_not_ready_addresses_and_selects_every_attempts_pods(pods):
    service = children.build_service(make_job())
    assert service["metadata"]["name"] == "gpt-small"
    assert service["spec"]["clusterIP"] == "None"
    assert service["spec"]["publishNotReadyAddresses"] is True
    assert service["spec"]["ports"] == [{"name": "rendezvous", "port": RENDEZVOUS_PORT, "targetPort": RENDEZVOUS_PORT}]
    selector = service["spec"]["selector"]
    assert selector
    for pod in [*pods, *children.build_pods(make_job(), check("gpt-small", "ml", SPEC), 7, IMAGE)]:
        assert selector.items() <= pod["metadata"]["labels"].items()


def test_service_does_not_select_another_jobs_pods(spec):
    selector = children.build_service(make_job())["spec"]["selector"]
    other = children.build_pod(make_job("gpt-small-2"), spec, 0, 1, IMAGE)
    assert not selector.items() <= other["metadata"]["labels"].items()


def test_config_map_job_yaml_loads_back_into_the_same_spec(spec, tmp_path):
    config_map = children.build_config_map(make_job(), spec)
    path = tmp_path / "job.yaml"
    path.write_text(config_map["data"]["job.yaml"])
    job = load_job(path)
    assert (job.name, job.namespace) == ("gpt-small", "ml")
    assert job.spec == spec


def test_config_map_spells_out_every_default(spec):
    config_map = children.build_config_map(make_job(), spec)
    written = yaml.safe_load(config_map["data"]["job.yaml"])
    assert written["apiVersion"] == API_VERSION and written["kind"] == KIND
    assert written["spec"]["optimizer"]["lr"] == 3e-4
    assert written["spec"]["checkpoint"]["keep"] == 3
    assert children.accepted_spec_of(config_map) == written["spec"]


# --------------------------------------------------------------------------------------- name lengths


def test_longest_allowed_job_name_gives_valid_pod_names():
    name = "j" + "a" * 49 + "z"
    assert len(name) == 51
    spec = check(name, "ml", {**SPEC, "workers": {**SPEC["workers"], "replicas": 2}})
    job = make_job(name)
    names = [p["metadata"]["name"] for p in children.build_pods(job, spec, 1, IMAGE)]
    names += [naming.pod_name(name, 9999), naming.service_name(name)]
    for pod_name in names:
        assert len(pod_name) <= 63, pod_name
        assert RFC1035_LABEL.match(pod_name), pod_name
    assert len(naming.pod_name(name, 9999)) == 63
    assert len(naming.config_map_name(name)) <= 253


# ------------------------------------------------------------------------------------ core/v1 schemas


def test_built_pod_service_and_config_map_are_valid_core_v1_objects(spec):
    job = make_job(labels={naming.KUEUE_QUEUE_LABEL: "team-a"})
    objects = [
        children.build_pod(job, spec, 0, 1, IMAGE),
        children.build_service(job),
        children.build_config_map(job, spec),
    ]
    for obj in objects:
        assert kubernetes_validate.validate(obj, K8S_VERSION, strict=True) == K8S_VERSION


def test_core_v1_validation_can_fail(pods):
    """The check above bites: a misspelt pod field is refused."""
    broken = json.loads(json.dumps(pods[0]))
    broken["spec"]["restartPolicyy"] = "Never"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, K8S_VERSION, strict=True)


# ------------------------------------------------------------------------------------------- hardening


def test_worker_pods_run_non_root_without_privileges_capabilities_or_a_writable_root(pods):
    for pod in pods:
        pod_ctx, ctx = pod["spec"]["securityContext"], container(pod)["securityContext"]
        assert pod_ctx["runAsNonRoot"] is True and pod_ctx["runAsUser"] != 0
        assert pod_ctx["seccompProfile"] == {"type": "RuntimeDefault"} == ctx["seccompProfile"]
        assert ctx["allowPrivilegeEscalation"] is False and ctx["privileged"] is False
        assert ctx["capabilities"] == {"drop": ["ALL"]}
        assert ctx["readOnlyRootFilesystem"] is True


def test_everything_the_trainer_writes_is_an_empty_dir(pods):
    pod = pods[0]
    volumes = {v["name"]: v for v in pod["spec"]["volumes"]}
    writable = {m["mountPath"]: m["name"] for m in container(pod)["volumeMounts"] if not m.get("readOnly")}
    assert set(writable) == {"/tmp", "/dev/shm", naming.DATA_CACHE_DIR}
    assert all("emptyDir" in volumes[name] for name in writable.values())
    env = env_values(pod)
    for var in ("XDG_CACHE_HOME", "HF_HOME", "TRITON_CACHE_DIR", "TORCHINDUCTOR_CACHE_DIR", c.PRETRAIN_RUN_DIR):
        assert env[var].startswith("/tmp/"), var


def test_the_service_account_token_is_mounted_only_when_the_spec_asks(spec):
    assert all(
        p["spec"]["automountServiceAccountToken"] is False for p in children.build_pods(make_job(), spec, 1, IMAGE)
    )
    asking = check("gpt-small", "ml", {**SPEC, "workers": {**SPEC["workers"], "automountServiceAccountToken": True}})
    assert children.build_pod(make_job(), asking, 0, 1, IMAGE)["spec"]["automountServiceAccountToken"] is True


def test_the_checkpoint_signing_key_arrives_as_a_secret_reference_only():
    signed = check("gpt-small", "ml", {**SPEC, "checkpoint": {"uri": "s3://ckpt/x", "signingSecret": "ckpt-key"}})
    pod = children.build_pod(make_job(), signed, 0, 1, IMAGE)
    ref = {"name": "ckpt-key", "key": c.PRETRAIN_CHECKPOINT_SIGNING_KEY}
    assert env_refs(pod)[c.PRETRAIN_CHECKPOINT_SIGNING_KEY] == {"secretKeyRef": ref}
    assert c.PRETRAIN_CHECKPOINT_SIGNING_KEY not in env_values(pod)


def test_a_job_may_choose_another_non_root_user_and_a_writable_root_only_by_asking():
    custom = check("gpt-small", "ml", {**SPEC, "workers": {**SPEC["workers"], "runAsUser": 4242}})
    pod = children.build_pod(make_job(), custom, 0, 1, IMAGE)
    assert {pod["spec"]["securityContext"][k] for k in ("runAsUser", "runAsGroup", "fsGroup")} == {4242}
    writable = check("gpt-small", "ml", {**SPEC, "workers": {**SPEC["workers"], "readOnlyRootFilesystem": False}})
    pod = children.build_pod(make_job(), writable, 0, 1, IMAGE)
    assert container(pod)["securityContext"]["readOnlyRootFilesystem"] is False
    with pytest.raises(ConfigError, match=r"spec\.workers\.runAsUser: must be >= 1"):
        check("gpt-small", "ml", {**SPEC, "workers": {**SPEC["workers"], "runAsUser": 0}})
