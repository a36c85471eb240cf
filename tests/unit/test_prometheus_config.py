"""deploy/prometheus and deploy/grafana, checked with Debian's promtool (the `prometheus` package).

- prometheus.yml passes ``promtool check config``; rules.yml ``check rules``;
- the rule unit tests (rules_test.yml, synthetic series) pass ``promtool test rules``;
- every dashboard expression is valid PromQL (promtool checks it as a recording rule),
  reads at least one metric, and uses the provisioned data source;
- every alert has a severity and a runbook link to a section of docs/runbook.md.

Which metrics the dashboard's expressions read is checked against running processes in
tests/integration/test_observability.py.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.promql import metric_names

ROOT = Path(__file__).resolve().parents[2]
PROMETHEUS = ROOT / "deploy" / "prometheus"
GRAFANA = ROOT / "deploy" / "grafana"
PROMTOOL = shutil.which("promtool")


def promtool(*args: str, cwd: Path = PROMETHEUS) -> subprocess.CompletedProcess[str]:
    assert PROMTOOL, "promtool is missing: `make install` installs Debian's prometheus package"
    return subprocess.run([PROMTOOL, *args], cwd=cwd, capture_output=True, text=True, timeout=120)


def dashboard() -> dict[str, Any]:
    return dict(json.loads((GRAFANA / "dashboards" / "ops-engine.json").read_text()))


def dashboard_exprs() -> list[tuple[str, str]]:
    return [
        (panel["title"], target["expr"])
        for panel in dashboard()["panels"]
        for target in panel.get("targets", ())
    ]


def test_promtool_check_config() -> None:
    done = promtool("check", "config", "prometheus.yml")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout


def test_promtool_check_rules() -> None:
    done = promtool("check", "rules", "rules.yml")
    assert done.returncode == 0, done.stdout + done.stderr
    rules = yaml.safe_load((PROMETHEUS / "rules.yml").read_text())
    count = sum(len(group["rules"]) for group in rules["groups"])
    assert count >= 9
    assert f"SUCCESS: {count} rules found" in done.stdout


def test_rule_unit_tests() -> None:
    done = promtool("test", "rules", "rules_test.yml")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout


def test_every_rule_has_a_unit_test() -> None:
    rules = yaml.safe_load((PROMETHEUS / "rules.yml").read_text())
    alerts = {rule["alert"] for group in rules["groups"] for rule in group["rules"]}
    tests = yaml.safe_load((PROMETHEUS / "rules_test.yml").read_text())
    tested: dict[str, set[bool]] = {}
    for case in tests["tests"]:
        for check in case.get("alert_rule_test", ()):
            tested.setdefault(check["alertname"], set()).add(bool(check.get("exp_alerts")))
    assert alerts == set(tested)
    for alert, outcomes in tested.items():
        assert outcomes == {True, False}, f"{alert}: needs a case that fires and one that does not"


def test_alerts_name_severity_and_runbook_section() -> None:
    runbook = (ROOT / "docs" / "runbook.md").read_text()
    anchors = {
        re.sub(r"[^a-z0-9 -]", "", line.lstrip("#").strip().lower()).replace(" ", "-")
        for line in runbook.splitlines()
        if line.startswith("## ")
    }
    rules = yaml.safe_load((PROMETHEUS / "rules.yml").read_text())
    for group in rules["groups"]:
        for rule in group["rules"]:
            assert rule["labels"]["severity"] in ("warning", "critical"), rule["alert"]
            link = rule["annotations"]["runbook"]
            assert link.split("#", 1)[1] in anchors, f"{rule['alert']}: {link} is not a section of docs/runbook.md"


def test_dashboard_expressions_are_promql(tmp_path: Path) -> None:
    exprs = dashboard_exprs()
    assert len(exprs) >= 30
    rules = {
        "groups": [
            {"name": "dashboard", "rules": [{"record": f"dashboard:expr{i}", "expr": e} for i, (_, e) in enumerate(exprs)]}
        ]
    }
    path = tmp_path / "dashboard_rules.yml"
    path.write_text(yaml.safe_dump(rules))
    done = promtool("check", "rules", str(path), cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    for title, expr in exprs:
        assert metric_names(expr), f"{title}: {expr} reads no metric"


def test_dashboard_uses_the_provisioned_data_source() -> None:
    source = yaml.safe_load((GRAFANA / "provisioning" / "datasources" / "prometheus.yml").read_text())
    uid = source["datasources"][0]["uid"]
    assert source["datasources"][0]["url"] == "http://prometheus:9090"
    panels = [p for p in dashboard()["panels"] if p.get("targets")]
    assert panels
    for panel in panels:
        assert panel["datasource"]["uid"] == uid, panel["title"]
    provider = yaml.safe_load((GRAFANA / "provisioning" / "dashboards" / "ops-engine.yml").read_text())
    assert provider["providers"][0]["options"]["path"] == "/var/lib/grafana/dashboards"


@pytest.mark.parametrize(
    ("expr", "names"),
    [
        ("sum by (topic) (rate(ops_messages_processed_total[5m]))", {"ops_messages_processed_total"}),
        ("deriv(sum by (topic) (ops_consumer_lag)[10m:1m]) > 0 and sum(x_total) > 1", {"ops_consumer_lag", "x_total"}),
        ('sum by (a) (ALERTS{alertstate="firing", x="sum(y)"})', {"ALERTS"}),
        ("histogram_quantile(0.9, sum by (le) (rate(h_bucket[5m]))) / on (instance) group_left up", {"h_bucket", "up"}),
    ],
)
def test_metric_names_of_an_expression(expr: str, names: set[str]) -> None:
    assert metric_names(expr) == names
