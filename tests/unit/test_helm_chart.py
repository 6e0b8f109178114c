"""The Helm chart (helm/pretrain-operator), rendered offline by Helm's own Go template engine.

helm-python-sdk binds libhelm (no helm binary, no cluster): `Chart.load(path).render(values, name=, namespace=)` runs
the same value coalescing, values.schema.json validation and template rendering as `helm template`. Every object of
every rendered configuration is validated against the Kubernetes API schemas shipped with kubernetes-validate (the
oldest Kubernetes the chart supports and the newest the package knows); the Prometheus Operator kinds, for which it
has no schema, are checked by shape. The rest reads the operator's contract with the cluster off the rendered objects:
a single non-root, read-only replica with probes on /healthz and flags its own CLI accepts; RBAC that grants exactly
what the operator uses (no Secrets); the CRD, dashboard and alerts taken verbatim from the chart's files/.

files/crd.yaml, files/dashboard.json and files/alerts.yaml are generated elsewhere; the chart fails to render
(with a message naming the file) when one it needs is missing, and so do these tests.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import helm_python as helm
import kubernetes_validate
import pytest
import yaml
from kubernetes_validate.utils import latest_version

from pretrain_operator import naming
from pretrain_operator.main import config_from, parse_args
from pretrain_operator.policy import Policy
from pretrain_trainer.contract import API_GROUP, PLURAL, VERSION

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "helm" / "pretrain-operator"
FILES = CHART / "files"

RELEASE = "po"
NAMESPACE = "pretrain-system"
FULLNAME = "po-pretrain-operator"
# The oldest Kubernetes the chart declares (Chart.yaml kubeVersion) and the newest kubernetes-validate ships.
KUBE_VERSIONS = ("1.27.0", latest_version())
MONITORING_GROUP = "monitoring.coreos.com/v1"

SCENARIOS: dict[str, dict[str, Any]] = {
    "default": {},
    "namespaced": {"watch": {"allNamespaces": False, "namespaces": ["team-a", "team-b"]}},
    "namespaced-release-namespace": {"watch": {"allNamespaces": False}},
    "monitoring": {
        "metrics": {
            "serviceMonitor": {"enabled": True, "labels": {"release": "kube-prometheus-stack"}, "scrapeTimeout": "10s"},
            "podMonitor": {"enabled": True, "labels": {"release": "kube-prometheus-stack"}, "interval": "20s"},
            "prometheusRule": {
                "enabled": True,
                "labels": {"release": "kube-prometheus-stack"},
                "additionalRules": [
                    {"alert": "PretrainOperatorDown", "expr": "absent(up{job=~'.*pretrain-operator.*'})", "for": "5m"},
                    {"record": "pretrain:tokens_per_second:sum", "expr": "sum(pretrain_tokens_per_second)"},
                ],
            },
        },
        "grafana": {"dashboard": {"namespace": "monitoring", "folder": "Training"}},
    },
    "namespaced-monitoring": {
        "watch": {"allNamespaces": False, "namespaces": ["team-a", "team-b"]},
        "metrics": {"podMonitor": {"enabled": True}},
    },
    "no-crds": {"crds": {"install": False}},
    "customized": {
        "image": {"repository": "registry.example.com/ml/operator", "tag": "v9", "pullPolicy": "Always"},
        "imagePullSecrets": [{"name": "regcred"}],
        "trainerImage": {"repository": "registry.example.com/ml/trainer", "tag": "cu124"},
        "operator": {"metricsPort": 9100, "healthPort": 9090, "resyncSeconds": 2.5, "logFormat": "plain"},
        "serviceAccount": {"create": False, "name": "ml-operator"},
        "resources": {"requests": {"cpu": "250m", "memory": "512Mi"}, "limits": {"cpu": 1, "memory": "1Gi"}},
        "nodeSelector": {"kubernetes.io/os": "linux"},
        "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "control", "effect": "NoSchedule"}],
        "affinity": {
            "nodeAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": {
                    "nodeSelectorTerms": [
                        {"matchExpressions": [{"key": "node-role", "operator": "In", "values": ["system"]}]}
                    ]
                }
            }
        },
        "podAnnotations": {"example.com/owner": "ml-platform"},
        "podLabels": {"team": "ml-platform"},
        "priorityClassName": "system-cluster-critical",
        "grafana": {"dashboard": {"enabled": False}},
    },
}

# What the operator does, resource by resource (apiGroup, resource) -> verbs; the chart must grant exactly this.
NAMESPACED_PERMISSIONS = {
    (API_GROUP, PLURAL): {"get", "list", "watch", "patch", "update", "delete"},
    (API_GROUP, f"{PLURAL}/status"): {"get", "patch", "update"},
    ("", "pods"): {"get", "list", "watch", "create", "delete", "patch"},
    ("", "services"): {"get", "list", "watch", "create", "delete", "patch"},
    ("", "configmaps"): {"get", "list", "watch", "create", "delete", "patch"},
    ("", "events"): {"create", "patch"},
    ("events.k8s.io", "events"): {"create", "patch"},
}
CLUSTER_PERMISSIONS = {
    ("", "namespaces"): {"get", "list", "watch"},
    ("apiextensions.k8s.io", "customresourcedefinitions"): {"get", "list", "watch"},
    ("", "nodes"): {"get"},  # in-place restarts only where every node of the gang is Ready
}


# --- rendering -------------------------------------------------------------------------------------------------


class KubeYamlLoader(yaml.SafeLoader):
    """PyYAML's safe loader, plus YAML 1.2 floats without a dot (`1e-08`, as Helm's toYaml writes them): Go's YAML,
    and so Helm and the API server, read those as numbers; PyYAML's YAML 1.1 rules would read a string."""


KubeYamlLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)[eE][-+]?[0-9]+$"),
    list("-+0123456789."),
)


@functools.cache
def chart() -> helm.Chart:
    return helm.Chart.load(CHART)


def render_values(values: dict[str, Any], *, name: str = RELEASE) -> list[dict[str, Any]]:
    """`helm template <name> CHART --namespace NAMESPACE --values <values>`, parsed, NOTES.txt left out."""
    manifests = chart().render(values, name=name, namespace=NAMESPACE, is_install=True)
    objects = []
    for path, text in sorted(manifests.items()):
        if path.endswith("NOTES.txt"):
            continue
        objects += [doc for doc in yaml.load_all(text, Loader=KubeYamlLoader) if doc]
    return objects


@functools.cache
def _render_scenario(scenario: str) -> str:
    return json.dumps(render_values(SCENARIOS[scenario]))


def render(scenario: str) -> list[dict[str, Any]]:
    """The objects of a named configuration (rendered once, a fresh copy each call)."""
    return json.loads(_render_scenario(scenario))


def objects_of(scenario: str, kind: str) -> list[dict[str, Any]]:
    return [obj for obj in render(scenario) if obj["kind"] == kind]


def one(scenario: str, kind: str) -> dict[str, Any]:
    found = objects_of(scenario, kind)
    assert len(found) == 1, f"{scenario}: expected one {kind}, got {len(found)}"
    return found[0]


def operator_container(scenario: str) -> dict[str, Any]:
    (container,) = one(scenario, "Deployment")["spec"]["template"]["spec"]["containers"]
    return container


def flag_values(args: list[str], flag: str) -> list[str]:
    return [args[i + 1] for i, arg in enumerate(args) if arg == flag]


def permissions(rules: list[dict[str, Any]]) -> dict[tuple[str, str], set[str]]:
    granted: dict[tuple[str, str], set[str]] = {}
    for rule in rules:
        assert set(rule) <= {"apiGroups", "resources", "verbs"}, f"unexpected rule fields: {rule}"
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                granted.setdefault((group, resource), set()).update(rule["verbs"])
    return granted


def crd_file() -> dict[str, Any]:
    return yaml.load((FILES / "crd.yaml").read_text(), Loader=KubeYamlLoader)


def dashboard_file() -> str:
    return (FILES / "dashboard.json").read_text()


def alerts_file() -> dict[str, Any]:
    return yaml.safe_load((FILES / "alerts.yaml").read_text())


# --- the chart as a package -------------------------------------------------------------------------------------


def test_chart_metadata_is_a_v2_application_chart_for_kubernetes_1_27_and_later():
    meta = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert meta["apiVersion"] == "v2"
    assert meta["name"] == "pretrain-operator"
    assert meta["version"] == "0.1.0"
    assert meta["appVersion"] == "0.1.0"
    assert meta["kubeVersion"] == ">=1.27.0-0"
    assert meta["description"].strip()


@pytest.mark.parametrize("name", ["crd.yaml", "dashboard.json", "alerts.yaml"])
def test_chart_ships_the_generated_files_its_templates_read(name):
    assert (FILES / name).is_file(), f"helm/pretrain-operator/files/{name} is missing: the chart cannot render"
    assert name in {Path(f["name"]).name for f in chart().files}, f"files/{name} is excluded by .helmignore"


def test_chart_passes_strict_helm_lint():
    report = helm.lint(CHART, strict=True, namespace=NAMESPACE, kube_version="v1.27.0")
    assert report["errors"] == []
    assert [m for m in report["messages"] if m["severity"] >= 2] == []


def test_every_values_key_is_commented_and_covered_by_a_closed_schema():
    lines = (CHART / "values.yaml").read_text().splitlines()
    for i, line in enumerate(lines):
        if re.match(r"^\s*[A-Za-z_][\w.-]*:", line):
            previous = next(p for p in reversed(lines[:i]) if p.strip())
            assert previous.lstrip().startswith("#"), f"values.yaml:{i + 1}: {line.strip()!r} has no comment above"

    schema = json.loads((CHART / "values.schema.json").read_text())

    def walk(values: dict[str, Any], node: dict[str, Any], path: str) -> None:
        assert node.get("type") == "object", path
        assert node.get("additionalProperties") is False, f"{path or '<root>'}: schema must reject unknown keys"
        props = node["properties"]
        assert set(values) <= set(props), f"{path}: keys missing from the schema: {set(values) - set(props)}"
        for key, value in values.items():
            sub = props[key]
            assert "type" in sub or "anyOf" in sub, f"{path}.{key}: no type in the schema"
            if isinstance(value, dict) and value and "properties" in sub:
                walk(value, sub, f"{path}.{key}")

    defaults = yaml.safe_load((CHART / "values.yaml").read_text())
    walk(defaults, schema, "")
    assert set(schema["properties"]) - {"global"} == set(defaults), "schema keys that values.yaml does not have"


@pytest.mark.parametrize(
    ("values", "key"),
    [
        ({"watch": {"allNamespaces": "yes"}}, "allNamespaces"),
        ({"wacth": {"allNamespaces": True}}, "wacth"),
        ({"watch": {"namespace": ["team-a"]}}, "namespace"),
        ({"watch": {"allNamespaces": False, "namespaces": ["Team_A"]}}, "namespaces"),
        ({"operator": {"metricsPort": 0}}, "metricsPort"),
        ({"operator": {"resyncSeconds": "10s"}}, "resyncSeconds"),
        ({"operator": {"logFormat": "xml"}}, "logFormat"),
        ({"image": {"pullPolicy": "Sometimes"}}, "pullPolicy"),
        ({"crds": {"install": "false"}}, "install"),
        ({"metrics": {"podMonitor": {"enabled": True, "interval": "fast"}}}, "interval"),
        ({"metrics": {"serviceMonitor": {"enable": True}}}, "enable"),
        ({"grafana": {"dashboard": {"labelValue": 1}}}, "labelValue"),
        ({"metrics": {"prometheusRule": {"additionalRules": [{"alert": "A"}]}}}, "expr"),
        ({"policy": {"allowedRegistries": "registry.corp/"}}, "allowedRegistries"),
        ({"policy": {"allowedServiceAccounts": ["Admin SA"]}}, "allowedServiceAccounts"),
    ],
)
def test_a_mistyped_or_misspelled_value_fails_the_install_naming_the_key(values, key):
    with pytest.raises(helm.HelmValuesError, match=re.escape(key)):
        chart().render(values, name=RELEASE, namespace=NAMESPACE, is_install=True)


# --- every object is valid Kubernetes -----------------------------------------------------------------------------


def _check_monitoring_shape(obj: dict[str, Any]) -> None:
    """The Prometheus Operator kinds (no schema in kubernetes-validate): the fields their controllers require."""
    assert obj["metadata"]["name"] and obj["metadata"]["namespace"]
    spec = obj["spec"]
    if obj["kind"] == "ServiceMonitor":
        assert spec["selector"]["matchLabels"]
        assert spec["endpoints"] and all(e["port"] and e["interval"] for e in spec["endpoints"])
    elif obj["kind"] == "PodMonitor":
        assert spec["selector"]["matchLabels"]
        assert spec["podMetricsEndpoints"] and all(e["port"] and e["interval"] for e in spec["podMetricsEndpoints"])
    elif obj["kind"] == "PrometheusRule":
        assert spec["groups"]
        for group in spec["groups"]:
            assert group["name"] and group["rules"]
            for rule in group["rules"]:
                assert isinstance(rule["expr"], (str, int)) and str(rule["expr"]).strip()
                assert ("alert" in rule) != ("record" in rule), rule
    else:
        raise AssertionError(f"unexpected {obj['kind']}")


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
@pytest.mark.parametrize("kube_version", KUBE_VERSIONS)
def test_every_rendered_object_validates_against_the_kubernetes_api(scenario, kube_version):
    objects = render(scenario)
    assert objects
    for obj in objects:
        if obj["apiVersion"] == MONITORING_GROUP:
            _check_monitoring_shape(obj)
            continue
        try:
            kubernetes_validate.validate(obj, kube_version, strict=True)
        except kubernetes_validate.ValidationError as e:
            where = ".".join(str(p) for p in e.path)
            pytest.fail(f"{scenario}: {obj['kind']}/{obj['metadata']['name']} at {where}: {e.message}")


def test_objects_carry_the_standard_labels_and_names_fit_63_characters():
    long_release = "a-very-long-release-name-for-a-shared-training-clust"  # Helm's limit is 53
    objects = render_values({}, name=long_release)
    for obj in objects:
        name = obj["metadata"]["name"]
        assert len(name) <= 63 and not name.endswith("-"), name
        if obj["kind"] == "CustomResourceDefinition":
            continue
        labels = obj["metadata"]["labels"]
        assert labels["app.kubernetes.io/name"] == "pretrain-operator"
        assert labels["app.kubernetes.io/instance"] == long_release
        assert labels["app.kubernetes.io/version"] == "0.1.0"
        assert labels["app.kubernetes.io/managed-by"] == "Helm"
        assert labels["helm.sh/chart"] == "pretrain-operator-0.1.0"


def test_default_install_creates_the_crd_operator_rbac_metrics_service_and_dashboard_only():
    kinds = sorted(obj["kind"] for obj in render("default"))
    assert kinds == sorted(
        [
            "CustomResourceDefinition",
            "Deployment",
            "ServiceAccount",
            "ClusterRole",
            "ClusterRoleBinding",
            "Service",
            "ConfigMap",
        ]
    )
    namespaced = [obj for obj in render("default") if obj["kind"] not in {"CustomResourceDefinition", "ClusterRole"}]
    for obj in namespaced:
        if obj["kind"] != "ClusterRoleBinding":
            assert obj["metadata"]["namespace"] == NAMESPACE, obj["kind"]


# --- the operator Deployment ---------------------------------------------------------------------------------------


def test_default_install_runs_operator_non_root_with_read_only_root():
    pod = one("default", "Deployment")["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == 65532
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    sc = operator_container("default")["securityContext"]
    assert sc["runAsNonRoot"] is True
    assert sc["runAsUser"] == 65532
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"] == {"drop": ["ALL"]}
    assert sc["seccompProfile"] == {"type": "RuntimeDefault"}
    # The one writable place: an emptyDir at /tmp.
    mounts = {m["mountPath"]: m["name"] for m in operator_container("default")["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes[mounts["/tmp"]]["emptyDir"] == {}
    assert {"name": "PYTHONUNBUFFERED", "value": "1"} in operator_container("default")["env"]


def test_operator_is_one_replica_replaced_with_recreate_because_kopf_runs_standalone():
    spec = one("default", "Deployment")["spec"]
    assert spec["replicas"] == 1
    assert spec["strategy"] == {"type": "Recreate"}
    pod_labels = spec["template"]["metadata"]["labels"]
    assert spec["selector"]["matchLabels"].items() <= pod_labels.items()


def test_default_operator_watches_all_namespaces_with_flags_its_cli_accepts():
    container = operator_container("default")
    assert container["command"] == ["pretrain-operator"]
    assert container["image"] == "ghcr.io/pretrain-operator/operator:0.1.0"
    args = parse_args(container["args"])
    assert args.all_namespaces is True and args.namespace is None
    assert args.metrics_port == 8000
    assert args.health_port == 8080
    assert args.default_image == "ghcr.io/pretrain-operator/trainer:0.1.0"
    assert args.resync_seconds == 10
    assert args.log_format == "json"


def test_the_default_policy_values_are_the_operators_default_policy():
    args = parse_args(operator_container("default")["args"])
    assert config_from(args).lifecycle.policy == Policy()


def test_policy_values_become_the_flags_of_the_same_policy():
    values = {
        "policy": {
            "allowedRegistries": ["registry.corp/ml/", "ghcr.io/pretrain-operator/"],
            "requireImageDigest": True,
            "allowedServiceAccounts": ["trainer"],
            "allowServiceAccountToken": False,
            "allowWritableRootFilesystem": True,
            "forbiddenAnnotationPrefixes": [],
            "forbiddenTolerationKeys": ["node-role.kubernetes.io/control-plane", "dedicated"],
        }
    }
    (deployment,) = [obj for obj in render_values(values) if obj["kind"] == "Deployment"]
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert config_from(parse_args(container["args"])).lifecycle.policy == Policy(
        allowed_registries=("registry.corp/ml/", "ghcr.io/pretrain-operator/"),
        require_digest=True,
        allowed_service_accounts=("trainer",),
        allow_service_account_token=False,
        allow_writable_root_filesystem=True,
        forbidden_annotation_prefixes=(),
        forbidden_toleration_keys=("node-role.kubernetes.io/control-plane", "dedicated"),
    )


def test_probes_get_healthz_on_the_health_port_and_metrics_port_is_named_metrics():
    container = operator_container("default")
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"metrics": 8000, "health": 8080}
    for probe in ("livenessProbe", "readinessProbe"):
        get = container[probe]["httpGet"]
        assert get["path"] == "/healthz"
        assert ports[get["port"]] == 8080


def test_default_resources_request_cpu_and_memory_and_cap_memory():
    resources = operator_container("default")["resources"]
    assert resources["requests"] == {"cpu": "100m", "memory": "256Mi"}
    assert resources["limits"]["memory"] == "512Mi"


def test_images_ports_scheduling_and_service_account_come_from_values():
    deployment = one("customized", "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    container = operator_container("customized")
    values = SCENARIOS["customized"]
    assert container["image"] == "registry.example.com/ml/operator:v9"
    assert container["imagePullPolicy"] == "Always"
    assert pod["imagePullSecrets"] == [{"name": "regcred"}]
    args = parse_args(container["args"])
    assert args.default_image == "registry.example.com/ml/trainer:cu124"
    assert (args.metrics_port, args.health_port, args.resync_seconds) == (9100, 9090, 2.5)
    assert args.log_format == "plain"
    assert {p["name"]: p["containerPort"] for p in container["ports"]} == {"metrics": 9100, "health": 9090}
    assert container["livenessProbe"]["httpGet"]["port"] == "health"
    assert container["resources"] == {
        "requests": {"cpu": "250m", "memory": "512Mi"},
        "limits": {"cpu": 1, "memory": "1Gi"},
    }
    assert pod["nodeSelector"] == values["nodeSelector"]
    assert pod["tolerations"] == values["tolerations"]
    assert pod["affinity"] == values["affinity"]
    assert pod["priorityClassName"] == "system-cluster-critical"
    assert deployment["spec"]["template"]["metadata"]["annotations"] == values["podAnnotations"]
    assert deployment["spec"]["template"]["metadata"]["labels"]["team"] == "ml-platform"
    # A ServiceAccount the user brings: none is created, and the pod and every binding use it.
    assert objects_of("customized", "ServiceAccount") == []
    assert pod["serviceAccountName"] == "ml-operator"
    for binding in objects_of("customized", "ClusterRoleBinding"):
        assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "ml-operator", "namespace": NAMESPACE}]
    assert objects_of("customized", "ConfigMap") == []  # grafana.dashboard.enabled: false


# --- RBAC -------------------------------------------------------------------------------------------------------


def test_cluster_wide_rbac_grants_exactly_what_the_operator_uses_and_no_secrets():
    (role,) = objects_of("default", "ClusterRole")
    granted = permissions(role["rules"])
    assert granted == NAMESPACED_PERMISSIONS | CLUSTER_PERMISSIONS
    assert not any(resource == "secrets" or "*" in verbs for (_, resource), verbs in granted.items())
    (binding,) = objects_of("default", "ClusterRoleBinding")
    assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": FULLNAME}
    account = one("default", "ServiceAccount")["metadata"]
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": account["name"], "namespace": NAMESPACE}]
    assert one("default", "Deployment")["spec"]["template"]["spec"]["serviceAccountName"] == account["name"]
    assert objects_of("default", "Role") == objects_of("default", "RoleBinding") == []


def test_watching_listed_namespaces_uses_a_role_per_namespace_and_a_namespace_flag_each():
    args = operator_container("namespaced")["args"]
    assert "--all-namespaces" not in args
    assert flag_values(args, "--namespace") == ["team-a", "team-b"]
    parsed = parse_args(args)
    assert parsed.namespace == ["team-a", "team-b"] and not parsed.all_namespaces

    roles = {r["metadata"]["namespace"]: r for r in objects_of("namespaced", "Role")}
    bindings = {b["metadata"]["namespace"]: b for b in objects_of("namespaced", "RoleBinding")}
    assert sorted(roles) == sorted(bindings) == ["team-a", "team-b"]
    for ns in ("team-a", "team-b"):
        assert permissions(roles[ns]["rules"]) == NAMESPACED_PERMISSIONS
        assert bindings[ns]["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": FULLNAME}
        assert bindings[ns]["subjects"] == [{"kind": "ServiceAccount", "name": FULLNAME, "namespace": NAMESPACE}]
    # Cluster scope keeps only the reads kopf's scanning needs.
    (cluster_role,) = objects_of("namespaced", "ClusterRole")
    assert permissions(cluster_role["rules"]) == CLUSTER_PERMISSIONS
    (cluster_binding,) = objects_of("namespaced", "ClusterRoleBinding")
    assert cluster_binding["roleRef"]["name"] == cluster_role["metadata"]["name"]


def test_watching_no_listed_namespace_means_the_release_namespace():
    assert flag_values(operator_container("namespaced-release-namespace")["args"], "--namespace") == [NAMESPACE]
    (role,) = objects_of("namespaced-release-namespace", "Role")
    assert role["metadata"]["namespace"] == NAMESPACE
    assert [b["metadata"]["namespace"] for b in objects_of("namespaced-release-namespace", "RoleBinding")] == [
        NAMESPACE
    ]


def test_rbac_can_be_left_to_the_cluster_admin():
    kinds = {obj["kind"] for obj in render_values({"rbac": {"create": False}})}
    assert not kinds & {"ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding"}


# --- the CRD ---------------------------------------------------------------------------------------------------


def test_crd_is_files_crd_yaml_and_is_kept_when_the_release_is_uninstalled():
    crd = one("default", "CustomResourceDefinition")
    annotations = crd["metadata"].pop("annotations")
    assert annotations == {"helm.sh/resource-policy": "keep"}
    assert crd == crd_file()
    assert crd["spec"]["group"] == API_GROUP
    assert crd["spec"]["names"]["plural"] == PLURAL
    assert [v["name"] for v in crd["spec"]["versions"]] == [VERSION]


def test_crds_install_false_leaves_the_crd_to_the_cluster_admin():
    assert objects_of("no-crds", "CustomResourceDefinition") == []
    assert {obj["kind"] for obj in render("no-crds")} == {obj["kind"] for obj in render("default")} - {
        "CustomResourceDefinition"
    }


# --- Prometheus and Grafana --------------------------------------------------------------------------------------


def test_monitors_and_rules_are_off_by_default_but_the_metrics_service_is_on():
    assert [obj for obj in render("default") if obj["apiVersion"] == MONITORING_GROUP] == []
    service = one("default", "Service")
    assert service["spec"]["ports"] == [{"name": "metrics", "port": 8000, "targetPort": "metrics", "protocol": "TCP"}]
    pod_labels = one("default", "Deployment")["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= pod_labels.items()


def test_service_monitor_scrapes_the_operator_metrics_port_honoring_its_labels():
    monitor = one("monitoring", "ServiceMonitor")
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    service = one("monitoring", "Service")
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    assert monitor["spec"]["namespaceSelector"] == {"matchNames": [NAMESPACE]}
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint["port"] == "metrics" == service["spec"]["ports"][0]["name"]
    assert endpoint["honorLabels"] is True
    assert (endpoint["interval"], endpoint["scrapeTimeout"]) == ("30s", "10s")


def test_pod_monitor_scrapes_rank_zero_workers_in_every_watched_namespace():
    monitor = one("monitoring", "PodMonitor")
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    selector = monitor["spec"]["selector"]["matchLabels"]
    assert selector == {
        "app.kubernetes.io/managed-by": "pretrain-operator",
        "app.kubernetes.io/component": "worker",
        naming.INDEX_LABEL: "0",
    }
    # The labels the operator puts on a job's rank-0 worker pod match; rank 1 does not.
    rank0 = naming.common_labels("demo", "worker") | {naming.INDEX_LABEL: "0"}
    rank1 = naming.common_labels("demo", "worker") | {naming.INDEX_LABEL: "1"}
    assert selector.items() <= rank0.items() and not selector.items() <= rank1.items()
    assert monitor["spec"]["namespaceSelector"] == {"any": True}
    (endpoint,) = monitor["spec"]["podMetricsEndpoints"]
    assert (endpoint["port"], endpoint["interval"]) == ("metrics", "20s")

    namespaced = one("namespaced-monitoring", "PodMonitor")
    assert namespaced["spec"]["namespaceSelector"] == {"matchNames": ["team-a", "team-b"]}


def test_prometheus_rule_carries_the_groups_of_files_alerts_yaml_plus_additional_rules():
    rule = one("monitoring", "PrometheusRule")
    assert rule["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    groups = rule["spec"]["groups"]
    shipped = alerts_file()["groups"]
    assert shipped, "files/alerts.yaml has no groups"
    assert groups[: len(shipped)] == shipped
    assert groups[len(shipped) :] == [
        {
            "name": "pretrain-operator.additional",
            "rules": SCENARIOS["monitoring"]["metrics"]["prometheusRule"]["additionalRules"],
        }
    ]
    # No additional rules: exactly the file's groups.
    plain = render_values({"metrics": {"prometheusRule": {"enabled": True}}})
    (only,) = [obj for obj in plain if obj["kind"] == "PrometheusRule"]
    assert only["spec"]["groups"] == shipped


def test_dashboard_configmap_holds_files_dashboard_json_for_the_grafana_sidecar():
    configmap = one("default", "ConfigMap")
    assert configmap["metadata"]["namespace"] == NAMESPACE
    assert configmap["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert "annotations" not in configmap["metadata"]
    assert list(configmap["data"]) == ["pretrain-operator.json"]
    text = configmap["data"]["pretrain-operator.json"]
    assert text == dashboard_file()
    assert json.loads(text) == json.loads(dashboard_file())


def test_dashboard_namespace_folder_and_sidecar_label_are_configurable():
    configmap = one("monitoring", "ConfigMap")
    assert configmap["metadata"]["namespace"] == "monitoring"
    assert configmap["metadata"]["annotations"] == {"grafana_folder": "Training"}
    relabelled = render_values({"grafana": {"dashboard": {"labelKey": "dashboards", "labelValue": "pretrain"}}})
    (cm,) = [obj for obj in relabelled if obj["kind"] == "ConfigMap"]
    assert cm["metadata"]["labels"]["dashboards"] == "pretrain"
    assert "grafana_dashboard" not in cm["metadata"]["labels"]


def _iter_readme_value_keys(text: str) -> Iterator[str]:
    yield from re.findall(r"^\| `([A-Za-z][\w.]*)` \|", text, flags=re.MULTILINE)


def test_readme_documents_install_the_crd_option_and_monitoring_with_real_values_keys():
    readme = (CHART / "README.md").read_text()
    for topic in ("helm install", "crds.install", "ServiceMonitor", "PodMonitor", "PrometheusRule", "grafana"):
        assert topic in readme, topic
    defaults = chart().values
    keys = list(_iter_readme_value_keys(readme))
    assert keys, "README.md has no values table"
    for key in keys:
        node: Any = defaults
        for part in key.split("."):
            assert isinstance(node, dict) and part in node, f"README.md names {key!r}, which values.yaml lacks"
            node = node[part]
