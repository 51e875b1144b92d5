"""The course's alert rules (observability/alerts.yml) pass Prometheus' own checker and their promtool unit tests:
each alert fires on the series that should fire it and stays silent on healthy ones. And ex12's grader reads a
learner's rules file as Prometheus would."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

OBSERVABILITY = Path(__file__).resolve().parents[1] / "observability"


def promtool() -> str:
    found = shutil.which("promtool")
    if not found:
        if os.environ.get("CI"):
            pytest.fail("promtool is missing: .ci/run installs Debian's prometheus package, which ships it")
        pytest.skip("promtool is not installed (optional for learners: `sudo apt-get install prometheus`)")
    return found


@pytest.mark.parametrize("command", [["check", "rules", "alerts.yml"], ["test", "rules", "alerts_test.yml"]],
                         ids=["promtool check rules", "promtool test rules"])
def test_the_alert_rules_pass_promtool(command):
    done = subprocess.run([promtool(), *command], cwd=OBSERVABILITY, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout


def test_every_alert_has_a_test_that_fires_it():
    """promtool compares the firing alerts exactly, so each firing case also shows its healthy series silent."""
    import yaml

    rules = yaml.safe_load((OBSERVABILITY / "alerts.yml").read_text())
    alerts = {rule["alert"] for group in rules["groups"] for rule in group["rules"] if "alert" in rule}
    cases = [case for test in yaml.safe_load((OBSERVABILITY / "alerts_test.yml").read_text())["tests"]
             for case in test["alert_rule_test"]]
    fired = {case["alertname"] for case in cases if case["exp_alerts"]}
    assert fired == alerts, f"alerts without a test that fires them: {sorted(alerts - fired)}"


# ----- ex12's grader reads the learner's rules as Prometheus would, and says what is wrong -------------------
TWO_DOCUMENTS = "groups:\n  - name: a\n    rules:\n      - alert: A\n        expr: up == 0\n---\ngroups: []\n"


@pytest.mark.parametrize("text, hint", [
    ("# nothing but a comment\n", "holds 0 YAML documents"),
    (TWO_DOCUMENTS, "holds 2 YAML documents"),
    ("groups:\n  - name: a\n    rules:\n      - record: r\n        expr: up\n", "no alerting rule"),
    ("groups:\n  - name: a\n    rules:\n      - alert: A\n        expr: up ==\n", "promtool check rules refuses"),
    ("", "return your alert rules as a string"),
])
def test_ex12_reads_rules_as_prometheus_would(text, hint, tmp_path):
    from course_utils.checks.ex12_deploy_to_an_slo import _read_rules
    from course_utils.machinery.grading import Fail

    promtool()
    with pytest.raises(Fail, match=hint):
        _read_rules(text, tmp_path / "rules.yml")
