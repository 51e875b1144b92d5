"""The GPU docker stack, checked without Docker: the compose file against the Compose
specification, its cross-references and safety rules, the Dockerfiles with hadolint,
and the wiring between the stack's environment variables and course_utils."""

import json
import re
import subprocess
from pathlib import Path

import pytest
import yaml

from course_utils.paths import REPO_ROOT
from course_utils.tools import tool

DOCKER = REPO_ROOT / "docker"
COMPOSE = DOCKER / "compose.yaml"
GPU_SERVICES = {"torchserve", "triton", "jupyter"}
SERVERS = {"torchserve", "triton", "jupyter", "prometheus", "grafana"}


@pytest.fixture(scope="module")
def services() -> dict:
    return yaml.safe_load(COMPOSE.read_text())["services"]


def test_compose_file_validates_against_the_compose_specification():
    result = subprocess.run([tool("check-jsonschema"), "--builtin-schema", "vendor.compose-spec", str(COMPOSE)],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_depends_on_names_a_service_and_waits_for_health(services):
    for name, service in services.items():
        for dependency, condition in service.get("depends_on", {}).items():
            assert dependency in services, f"{name} depends on unknown service {dependency}"
            assert condition == {"condition": "service_healthy"}, f"{name} -> {dependency}: wait for service_healthy"
            assert "healthcheck" in services[dependency], f"{dependency} is waited for but has no healthcheck"


def test_every_published_port_is_on_localhost(services):
    for name, service in services.items():
        for port in service.get("ports", []):
            assert str(port).startswith("127.0.0.1:"), f"{name} publishes {port} on every interface; use 127.0.0.1:"


def test_every_image_has_an_exact_tag(services):
    for name, service in services.items():
        image = service.get("image", "")
        tag = image.rpartition(":")[2] if ":" in image else ""
        assert tag and tag != "latest" and re.search(r"\d", tag), f"{name}: pin {image!r} to an exact tag"


def test_gpu_services_reserve_a_gpu_and_servers_have_health_checks(services):
    for name in GPU_SERVICES:
        devices = services[name]["deploy"]["resources"]["reservations"]["devices"]
        assert any("gpu" in d.get("capabilities", []) and d.get("driver") == "nvidia" for d in devices), name
    for name in SERVERS:
        assert services[name].get("healthcheck", {}).get("test"), f"{name} has no health check"


def test_bind_mounts_exist_and_the_servers_share_the_folder_the_lessons_write(services):
    for name, service in services.items():
        for volume in service.get("volumes", []):
            source, target = volume.split(":")[:2]
            path = (DOCKER / source).resolve()
            if path == REPO_ROOT / "work":   # created by the notebooks (work_dir) on first use
                assert target == "/course/work", f"{name} must mount work/ at /course/work, the path the notebooks use"
            else:
                assert path.exists(), f"{name} mounts {source}, which is not in the repository"
    jupyter = services["jupyter"]["environment"]
    for variable in ["TORCHSERVE_MODEL_STORE", "TORCHSERVE_KEY_FILE", "TORCHSERVE_LOG_DIR", "TORCHSERVE_WORKFLOW_STORE",
                     "TRITON_REPOSITORY", "COURSE_WORK_DIR"]:
        assert jupyter[variable].startswith("/course/work"), f"{variable} must point into the shared work folder"
    torchserve_command = " ".join(services["torchserve"]["command"])
    assert f"--model-store {jupyter['TORCHSERVE_MODEL_STORE']}" in torchserve_command
    assert f"--workflow-store {jupyter['TORCHSERVE_WORKFLOW_STORE']}" in torchserve_command
    assert f"cd {Path(jupyter['TORCHSERVE_KEY_FILE']).parent}" in torchserve_command  # key_file.json is written there
    assert f"--model-repository={jupyter['TRITON_REPOSITORY']}" in " ".join(services["triton"]["command"])
    assert "--model-control-mode=explicit" in " ".join(services["triton"]["command"])


def test_the_stack_keeps_torchserve_safe():
    config = dict(line.split("=", 1) for line in (DOCKER / "torchserve" / "config.properties").read_text().splitlines()
                  if line and not line.startswith("#"))
    assert config["allowed_urls"] == "file:///course/work/torchserve_store/.*"
    assert "disable_token_authorization" not in config and "enable_model_api" not in config


def test_the_environment_variables_the_stack_sets_are_the_ones_course_utils_reads(services):
    source = "".join(p.read_text() for p in (REPO_ROOT / "course_utils").rglob("*.py"))
    for variable in services["jupyter"]["environment"]:
        assert f'"{variable}"' in source, f"compose sets {variable}, but course_utils never reads it"


def test_dockerfiles_lint_clean():
    dockerfiles = sorted(DOCKER.rglob("Dockerfile"))
    assert dockerfiles
    for dockerfile in dockerfiles:
        result = subprocess.run([tool("hadolint"), str(dockerfile)], capture_output=True, text=True)
        assert result.returncode == 0, result.stdout + result.stderr


def test_grafana_dashboard_answers_lesson_22s_questions_for_both_servers():
    """Rate, error ratio, latency (Triton's p99 from its summary), queue against compute, batch size, alerts: the
    metrics lesson 22 reads. tests/test_prometheus.py runs each panel's query against a real Prometheus."""
    dashboard = json.loads((DOCKER / "grafana" / "dashboards" / "serving.json").read_text())
    expressions = " ".join(t["expr"] for panel in dashboard["panels"] for t in panel["targets"])
    for metric in ["ts_inference_requests_total", "ts_inference_latency_microseconds", "ts_queue_latency_microseconds",
                   "Requests2XX", "Requests4XX", "Requests5XX",
                   "nv_inference_request_success", "nv_inference_request_failure", 'nv_inference_request_summary_us{quantile="0.99"}',
                   "nv_inference_queue_duration_us", "nv_inference_compute_infer_duration_us", "nv_inference_count",
                   "nv_inference_exec_count", "ALERTS"]:
        assert metric in expressions, f"the dashboard has no panel using {metric}"
    scrape = yaml.safe_load((DOCKER / "prometheus" / "prometheus.yml").read_text())
    targets = {t for job in scrape["scrape_configs"] for c in job["static_configs"] for t in c["targets"]}
    assert targets == {"torchserve:8082", "triton:8002"}


def test_the_stacks_prometheus_loads_the_course_alert_rules_and_triton_reports_the_p99_they_read():
    scrape = yaml.safe_load((DOCKER / "prometheus" / "prometheus.yml").read_text())
    assert scrape["rule_files"] == ["/etc/prometheus/alerts.yml"]
    compose = yaml.safe_load((DOCKER / "compose.yaml").read_text())
    assert "../observability/alerts.yml:/etc/prometheus/alerts.yml:ro" in compose["services"]["prometheus"]["volumes"]
    assert "--metrics-config=summary_latencies=true" in compose["services"]["triton"]["command"][0]
