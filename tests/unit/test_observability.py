"""The chart's Grafana dashboard and Prometheus alert rules, as specifications.

Files under helm/pretrain-operator/files/:
- dashboard.json: a Grafana dashboard (uid "pretrain-operator") with datasource, namespace and job variables, every
  panel on the `${datasource}` variable and described;
- alerts.yaml: the alert rules (group "pretrain-operator"), each with a severity, a summary and a description naming
  the job, and a runbook hint;
- alerts_test.yaml: promtool unit tests showing each alert firing when it should and silent when it should not.

What is checked:
- every PromQL expression (dashboard targets, dashboard variable queries, alert rules, and the series the alert tests
  feed) names only series that exist: the trainer's `METRIC_NAMES` and the operator's `OPERATOR_METRIC_NAMES` as
  Prometheus stores them (a counter with `_total`, a histogram as `_bucket`/`_sum`/`_count`, types read from the
  metric objects themselves), plus a short allowlist of NVIDIA dcgm-exporter series; the name extractor is itself
  tested on made-up expressions, so the check cannot pass by finding nothing;
- the dashboard shows the metric families that matter, and filters per-job series by its variables;
- every dashboard expression is valid PromQL, `promtool check rules` accepts the rules and `promtool test rules`
  passes. promtool (Debian's `prometheus` package; `make tools` installs it) is required, not optional.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from pretrain_operator.metrics import OPERATOR_METRIC_NAMES, OperatorMetrics
from pretrain_trainer.contract import PHASES
from pretrain_trainer.metrics import METRIC_NAMES, TrainerMetrics

ROOT = Path(__file__).resolve().parents[2]
FILES = ROOT / "helm" / "pretrain-operator" / "files"
DASHBOARD = FILES / "dashboard.json"
ALERTS = FILES / "alerts.yaml"
ALERTS_TEST = FILES / "alerts_test.yaml"

# NVIDIA dcgm-exporter series the dashboard may use (absent where dcgm-exporter is not installed).
DCGM_SERIES = frozenset({"DCGM_FI_DEV_GPU_UTIL", "DCGM_FI_DEV_FB_USED", "DCGM_FI_DEV_FB_FREE"})

DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}

ALERT_NAMES = {
    "PretrainJobStalled",
    "PretrainJobLossNotFinite",
    "PretrainJobRestarting",
    "PretrainJobCheckpointStale",
    "PretrainJobFailed",
}

# Metric families (as named in METRIC_NAMES / OPERATOR_METRIC_NAMES, or DCGM series) each required panel rests on.
DASHBOARD_FAMILIES = {
    "pretrain_loss",
    "pretrain_validation_loss",
    "pretrain_probe_accuracy",
    "pretrain_learning_rate",
    "pretrain_grad_norm",
    "pretrain_tokens_per_second",
    "pretrain_mfu_ratio",
    "pretrain_step_duration_seconds",
    "pretrain_data_wait_seconds",
    "pretrain_step",
    "pretrain_max_steps",
    "pretrain_tokens_total",
    "pretrain_checkpoint_save_duration_seconds",
    "pretrain_checkpoint_blocked_seconds",
    "pretrain_last_checkpoint_timestamp_seconds",
    "pretrain_operator_jobs",
    "pretrain_operator_job_phase",
    "pretrain_operator_job_restarts",
    "pretrain_operator_job_estimated_completion_timestamp_seconds",
    "pretrain_operator_restarts_total",
    "pretrain_operator_reconcile_duration_seconds",
    "pretrain_operator_reconcile_errors_total",
    *DCGM_SERIES,
}

# Grafana's placeholders and the values they stand for when an expression is handed to promtool.
GRAFANA_VARIABLES = {
    "$__rate_interval": "2m",
    "$__interval": "1m",
    "$__range": "6h",
    "$namespace": ".*",
    "$job": ".*",
}

# ---------------------------------------------------------------------------------------- PromQL names

_FUNCTIONS = """
    abs absent absent_over_time acos acosh asin asinh atan atanh avg_over_time ceil changes clamp clamp_max
    clamp_min cos cosh count_over_time day_of_month day_of_week day_of_year days_in_month deg delta deriv exp floor
    histogram_count histogram_fraction histogram_quantile histogram_stddev histogram_stdvar histogram_sum
    holt_winters hour idelta increase irate label_join label_replace last_over_time ln log10 log2 mad_over_time
    max_over_time min_over_time minute month pi predict_linear present_over_time quantile_over_time rad rate resets
    round scalar sgn sin sinh sort sort_desc sqrt stddev_over_time stdvar_over_time sum_over_time tan tanh time
    timestamp vector year
"""
PROMQL_FUNCTIONS = frozenset(_FUNCTIONS.split())
_AGGREGATIONS = "sum min max avg group stddev stdvar count count_values bottomk topk quantile"
PROMQL_AGGREGATIONS = frozenset(_AGGREGATIONS.split())
# `start`/`end` are the `@ start()` / `@ end()` modifiers; inf and nan are number literals.
_KEYWORDS = "and or unless by without on ignoring group_left group_right offset bool atan2 start end inf nan"
PROMQL_KEYWORDS = frozenset(_KEYWORDS.split())

_GRAFANA_VARIABLE = re.compile(r"\$\{[^}]*\}|\$\w+|\[\[\w+\]\]")
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_COMMENT = re.compile(r"#[^\n]*")
_MATCHERS = re.compile(r"\{[^{}]*\}")
_RANGE = re.compile(r"\[[^\[\]]*\]")
_LABEL_LIST = re.compile(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)", re.IGNORECASE)
_TOKEN = re.compile(
    r"(?P<number>0[xX][0-9a-fA-F]+|(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?(?:(?:ms|[smhdwy])(?:\d+(?:ms|[smhdwy]))*)?)"
    r"|(?P<word>[A-Za-z_:][A-Za-z0-9_:]*)"
)


def metric_names(expr: str) -> set[str]:
    """The metric names an expression selects: its identifiers once strings, label matchers, range and subquery
    brackets, grouping label lists, comments, Grafana variables, numbers, durations, and PromQL's functions,
    aggregations and keywords are set aside. An unknown function name is reported as a metric name (and fails)."""
    text = _GRAFANA_VARIABLE.sub("", expr)
    text = _STRING.sub('""', text)
    text = _COMMENT.sub("", text)
    text = _MATCHERS.sub("{}", text)
    text = _RANGE.sub("[]", text)
    text = _LABEL_LIST.sub(r"\1 ()", text)
    names = set()
    for token in _TOKEN.finditer(text):
        word = token.group("word")
        if word is None:
            continue
        if word.lower() in PROMQL_KEYWORDS or word in PROMQL_FUNCTIONS or word in PROMQL_AGGREGATIONS:
            continue
        names.add(word)
    return names


def exposed_series(registry: Any) -> dict[str, set[str]]:
    """Metric family (as METRIC_NAMES spells it) → the series names Prometheus stores for it, from the metric
    objects' own types. `_created` series are left out: prometheus_client can turn them off."""
    out: dict[str, set[str]] = {}
    for family in registry.collect():
        if family.type == "counter":
            out[f"{family.name}_total"] = {f"{family.name}_total"}
        elif family.type == "histogram":
            out[family.name] = {f"{family.name}{suffix}" for suffix in ("_bucket", "_sum", "_count")}
        elif family.type == "gauge":
            out[family.name] = {family.name}
        else:
            raise AssertionError(f"{family.name}: a {family.type}, which this test does not know how to expose")
    return out


def all_families() -> dict[str, set[str]]:
    """Every family the dashboard and alerts may use → its series names."""
    families = exposed_series(TrainerMetrics("spec", 0, enabled=False).registry)
    families.update(exposed_series(OperatorMetrics().registry))
    families.update({name: {name} for name in DCGM_SERIES})
    return families


def family_of(series: str, families: dict[str, set[str]]) -> str | None:
    return next((family for family, names in families.items() if series in names), None)


def unknown_names(expr: str, families: dict[str, set[str]]) -> set[str]:
    return {name for name in metric_names(expr) if family_of(name, families) is None}


# ------------------------------------------------------------------------------------------- the files


def load_dashboard() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text())


def load_rules() -> list[dict[str, Any]]:
    doc = yaml.safe_load(ALERTS.read_text())
    return [rule for group in doc["groups"] for rule in group["rules"]]


def all_panels(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """Panels, including those inside (collapsed) rows."""
    for panel in panels:
        yield panel
        yield from all_panels(panel.get("panels") or [])


def variables(dashboard: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {v["name"]: v for v in dashboard["templating"]["list"]}


def variable_query(variable: dict[str, Any]) -> str:
    query = variable["query"]
    return query["query"] if isinstance(query, dict) else query


def variable_expr(query: str) -> str:
    """The PromQL inside a Grafana Prometheus variable query."""
    if m := re.fullmatch(r"\s*label_values\((.*),\s*[A-Za-z_]\w*\s*\)\s*", query, re.DOTALL):
        return m.group(1)
    if m := re.fullmatch(r"\s*query_result\((.*)\)\s*", query, re.DOTALL):
        return m.group(1)
    raise AssertionError(f"unsupported variable query {query!r}: use label_values(<selector>, <label>)")


def dashboard_exprs(dashboard: dict[str, Any]) -> list[tuple[str, str]]:
    """(where, expression) for every panel target and query variable."""
    out = []
    for panel in all_panels(dashboard["panels"]):
        for target in panel.get("targets") or []:
            out.append((f"panel {panel['title']!r} target {target.get('refId')}", target["expr"]))
    for name, variable in variables(dashboard).items():
        if variable["type"] == "query":
            out.append((f"variable {name}", variable_expr(variable_query(variable))))
    return out


def rule_exprs() -> list[tuple[str, str]]:
    return [(f"rule {rule.get('alert') or rule.get('record')}", rule["expr"]) for rule in load_rules()]


def alert_test_series() -> list[tuple[str, str]]:
    doc = yaml.safe_load(ALERTS_TEST.read_text())
    return [
        (f"alerts_test.yaml input series {s['series']}", s["series"])
        for test in doc["tests"]
        for s in test.get("input_series") or []
    ]


@pytest.fixture(scope="module")
def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        pytest.fail(
            "promtool not found: install it with `apt-get install prometheus` (Debian/Ubuntu), or run `make tools`"
        )
    return path


def run(cmd: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)


# ------------------------------------------------------------------------------------- the name checks


def test_trainer_and_operator_metric_lists_match_the_metric_objects() -> None:
    trainer = exposed_series(TrainerMetrics("spec", 0, enabled=False).registry)
    operator = exposed_series(OperatorMetrics().registry)
    assert set(trainer) == set(METRIC_NAMES)
    assert set(operator) == set(OPERATOR_METRIC_NAMES)
    # The types the panels and alerts rely on.
    assert trainer["pretrain_step_duration_seconds"] == {
        "pretrain_step_duration_seconds_bucket",
        "pretrain_step_duration_seconds_sum",
        "pretrain_step_duration_seconds_count",
    }
    assert trainer["pretrain_tokens_total"] == {"pretrain_tokens_total"}
    assert operator["pretrain_operator_restarts_total"] == {"pretrain_operator_restarts_total"}
    assert "Failed" in PHASES


def test_the_extractor_finds_metric_names_and_nothing_else() -> None:
    expr = """
        histogram_quantile(0.99, sum by (le, job_name) (
            rate(foo_seconds_bucket{job_name=~"$job", le!="sum"}[$__rate_interval])
        ))
        / on (namespace, job_name) group_left (phase) bar_total offset 1h30m
        > bool 1e30 or vector(0) and time() - baz{a="rate(x[5m])"} @ start()
        unless count without (pod) (max_over_time(qux[10m:1m])) # comment_name
        + Inf - NaN + 0x1F
    """
    assert metric_names(expr) == {"foo_seconds_bucket", "bar_total", "baz", "qux"}
    assert metric_names('label_replace(up, "dst", "$1", "src", "(.*)")') == {"up"}


def test_the_name_check_catches_unknown_names() -> None:
    families = all_families()
    assert unknown_names("rate(pretrain_tokens_total[5m]) / pretrain_mfu_ratio", families) == set()
    assert unknown_names("pretrain_lost > 3 and pretrain_step", families) == {"pretrain_lost"}
    # A histogram is stored as _bucket/_sum/_count only; a counter only with _total.
    assert unknown_names("pretrain_step_duration_seconds", families) == {"pretrain_step_duration_seconds"}
    assert unknown_names("rate(pretrain_tokens[5m])", families) == {"pretrain_tokens"}
    assert unknown_names("pretrain_operator_restarts", families) == {"pretrain_operator_restarts"}
    # A misspelt function is not silently taken for one.
    assert unknown_names("rat(pretrain_tokens_total[5m])", families) == {"rat"}
    assert unknown_names('DCGM_FI_DEV_GPU_TEMP{pod=~"x"}', families) == {"DCGM_FI_DEV_GPU_TEMP"}


@pytest.mark.parametrize(
    "source", ["dashboard", "alerts", "alerts_test"], ids=["dashboard.json", "alerts.yaml", "alerts_test.yaml"]
)
def test_every_expression_uses_only_exported_metrics(source: str) -> None:
    families = all_families()
    exprs = {
        "dashboard": lambda: dashboard_exprs(load_dashboard()),
        "alerts": rule_exprs,
        "alerts_test": alert_test_series,
    }[source]()
    assert exprs
    problems = {where: sorted(unknown) for where, expr in exprs if (unknown := unknown_names(expr, families))}
    assert not problems, f"metric names that no exporter serves: {problems}"
    assert all(metric_names(expr) for _, expr in exprs), "an expression without any metric"


def test_the_dashboard_shows_the_metrics_that_matter() -> None:
    families = all_families()
    used = {family_of(name, families) for _, expr in dashboard_exprs(load_dashboard()) for name in metric_names(expr)}
    assert DASHBOARD_FAMILIES - used == set()


def test_dashboard_series_are_filtered_by_namespace_and_job() -> None:
    """Per-job series carry both variables' matchers; DCGM series select the jobs' worker pods."""
    families = all_families()
    per_job = {name for family in METRIC_NAMES for name in families[family]} | {
        "pretrain_operator_job_phase",
        "pretrain_operator_job_restarts",
        "pretrain_operator_job_progress_percent",
        "pretrain_operator_job_estimated_completion_timestamp_seconds",
        "pretrain_operator_restarts_total",
    }
    selector = re.compile(r"\b([A-Za-z_:][\w:]*)\s*(\{[^{}]*\})?")
    checked = 0
    for panel in all_panels(load_dashboard()["panels"]):
        for target in panel.get("targets") or []:
            for name, matchers in selector.findall(target["expr"]):
                where = f"{panel['title']!r}: {name}{matchers}"
                if name in per_job:
                    assert 'namespace=~"$namespace"' in matchers, where
                    assert 'job_name=~"$job"' in matchers, where
                    checked += 1
                elif name in DCGM_SERIES:
                    assert 'namespace=~"$namespace"' in matchers, where
                    assert 'pod=~"$job-worker-' in matchers, where
                    checked += 1
    assert checked


# ------------------------------------------------------------------------------------------ dashboard


def test_dashboard_identity() -> None:
    dashboard = load_dashboard()
    assert dashboard["uid"] == "pretrain-operator"
    assert dashboard["title"] == "Pretraining jobs"
    assert dashboard["schemaVersion"] >= 39
    assert dashboard.get("id") is None  # importable into any Grafana


def test_dashboard_panels() -> None:
    panels = list(all_panels(load_dashboard()["panels"]))
    ids = [panel["id"] for panel in panels]
    assert all(isinstance(i, int) for i in ids)
    assert len(ids) == len(set(ids)), "duplicate panel ids"
    for panel in panels:
        title = panel["title"]
        assert panel["datasource"] == DATASOURCE, title
        assert panel.get("description", "").strip(), f"{title}: no description"
        if panel["type"] == "row":
            continue
        targets = panel["targets"]
        assert targets, title
        assert len({t["refId"] for t in targets}) == len(targets), f"{title}: duplicate refIds"
        for target in targets:
            assert target["datasource"] == DATASOURCE, title
            assert target["expr"].strip(), title


def test_dashboard_layout_has_no_overlaps() -> None:
    cells: dict[tuple[int, int], str] = {}
    for panel in all_panels(load_dashboard()["panels"]):
        g = panel["gridPos"]
        assert g["x"] >= 0 and g["w"] > 0 and g["x"] + g["w"] <= 24, panel["title"]
        for x in range(g["x"], g["x"] + g["w"]):
            for y in range(g["y"], g["y"] + g["h"]):
                assert (x, y) not in cells, f"{panel['title']!r} overlaps {cells[(x, y)]!r}"
                cells[(x, y)] = panel["title"]


def test_dashboard_variables() -> None:
    vs = variables(load_dashboard())
    assert {"datasource", "namespace", "job"} <= set(vs)
    assert vs["datasource"]["type"] == "datasource"
    assert vs["datasource"]["query"] == "prometheus"
    for name in ("namespace", "job"):
        assert vs[name]["type"] == "query"
        assert vs[name]["datasource"] == DATASOURCE
    assert re.fullmatch(r"label_values\(pretrain_step\s*,\s*namespace\)", variable_query(vs["namespace"]))
    job_query = variable_query(vs["job"])
    assert re.fullmatch(r"label_values\(pretrain_step\{.*\}\s*,\s*job_name\)", job_query)
    assert 'namespace=~"$namespace"' in job_query


def test_dashboard_expressions_are_valid_promql(promtool: str, tmp_path: Path) -> None:
    """promtool parses every dashboard expression, Grafana's variables replaced by sample values."""
    rules = []
    for i, (where, expr) in enumerate(dashboard_exprs(load_dashboard())):
        for variable, value in sorted(GRAFANA_VARIABLES.items(), key=lambda kv: -len(kv[0])):
            expr = expr.replace(variable, value)
        assert "$" not in expr, f"{where}: a Grafana variable this test does not know: {expr}"
        rules.append({"record": f"dashboard:expr_{i}", "expr": expr, "labels": {"where": where}})
    path = tmp_path / "dashboard_rules.yaml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    result = run([promtool, "check", "rules", str(path)])
    assert result.returncode == 0, result.stdout + result.stderr


# ---------------------------------------------------------------------------------------------- alerts


def test_alert_rules_pass_promtool_check(promtool: str) -> None:
    result = run([promtool, "check", "rules", str(ALERTS)])
    assert result.returncode == 0, result.stdout + result.stderr


def test_alert_rules_pass_their_promtool_unit_tests(promtool: str) -> None:
    result = run([promtool, "test", "rules", str(ALERTS_TEST)])
    assert result.returncode == 0, result.stdout + result.stderr


def test_alert_rules_metadata() -> None:
    doc = yaml.safe_load(ALERTS.read_text())
    assert [group["name"] for group in doc["groups"]] == ["pretrain-operator"]
    rules = load_rules()
    assert {rule["alert"] for rule in rules} == ALERT_NAMES
    for rule in rules:
        name = rule["alert"]
        assert rule["labels"]["severity"] in {"critical", "warning"}, name
        annotations = rule["annotations"]
        assert {"summary", "description", "runbook"} <= set(annotations), name
        for key in ("summary", "description"):
            assert "$labels.namespace" in annotations[key], f"{name}.{key}"
            assert "$labels.job_name" in annotations[key], f"{name}.{key}"
        assert annotations["runbook"].strip(), name


def test_every_alert_is_tested_firing_and_silent() -> None:
    doc = yaml.safe_load(ALERTS_TEST.read_text())
    assert doc["rule_files"] == [ALERTS.name]
    firing, silent = set(), set()
    for test in doc["tests"]:
        for case in test.get("alert_rule_test") or []:
            (firing if case.get("exp_alerts") else silent).add(case["alertname"])
    assert firing == ALERT_NAMES
    assert silent == ALERT_NAMES
