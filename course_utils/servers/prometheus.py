"""A real Prometheus, run by the course like its servers: on 127.0.0.1, tied to the kernel, stopped with it.

Prometheus scrapes the servers' metrics endpoints (TorchServe's and Triton's /metrics) every
`scrape_interval_s`, stores the samples in its own time-series database (under the work folder) and
answers PromQL queries over its HTTP API (`/api/v1/query`). The binary is the one the learner's system
ships: Debian and Ubuntu package Prometheus 2.42 with its rule tester, promtool (`apt-get install
prometheus`). Its admin and lifecycle APIs stay off (Prometheus' default): nothing but queries and its
web page. With PROMETHEUS_URL set (the GPU docker stack's observability profile) that Prometheus is
used instead and nothing is started.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import pandas as pd
import requests

from .lifecycle import LoggedProcessServer, ask_to_stop
from .ports import LOCALHOST, free_ports, wait_until

INSTALL_HINT = ("Prometheus is not installed: `sudo apt-get install --no-install-recommends prometheus` (Debian, "
                "Ubuntu, WSL; it brings promtool; Debian 12's 2.42 is the version the course is tested with), then "
                "`sudo systemctl disable --now prometheus` where systemd runs (the package starts a system-wide "
                "Prometheus on 0.0.0.0:9090; the course starts its own on 127.0.0.1). Or unpack a release from "
                "prometheus.io and put its folder on PATH")


def prometheus_binary(name: str = "prometheus") -> str:
    """The path of `prometheus` (or `promtool`) on PATH; FileNotFoundError that says how to install it.

    Internal helper: no lesson calls it.
    """
    found = shutil.which(name)
    if not found:
        raise FileNotFoundError(f"{name} not found on PATH. {INSTALL_HINT}")
    return found


def _host_port(address: str) -> str:
    """ "http://127.0.0.1:8002/metrics" or "127.0.0.1:8002" -> "127.0.0.1:8002" (Prometheus adds /metrics)."""
    return address.split("://")[-1].removesuffix("/").removesuffix("/metrics")


@dataclass(eq=False)
class Prometheus(LoggedProcessServer):
    """A real Prometheus on 127.0.0.1 scraping `targets` (job name -> "host:port" serving /metrics, or that
    metrics URL: a server's `metrics_url`).

    `rule_files` are alerting rule files it loads. Use it as a context manager or call start()/stop().
    Introduced in 22_watching_servers.
    """

    work_dir: Path
    targets: Mapping[str, str] = field(default_factory=dict)
    scrape_interval_s: float = 1.0
    rule_files: Sequence[Path] = ()
    startup_timeout_s: float = 60.0
    use_external: bool = True   # False: start one even where PROMETHEUS_URL names another (a grader's own)
    process: subprocess.Popen | None = field(default=None, init=False, repr=False)
    kind = "Prometheus"
    main_address = "http"
    process_markers = ("prometheus",)
    external_note = "the GPU docker stack's observability profile: docker/compose.yaml; `docker compose logs prometheus`"

    def __post_init__(self) -> None:
        self.work_dir = Path(self.work_dir).resolve()
        external = os.environ.get("PROMETHEUS_URL", "").strip() if self.use_external else ""
        self.external = {"http": external.removeprefix("http://").rstrip("/")} if external else None
        self.addresses: dict[str, str] = dict(self.external or {})
        self.ports: dict[str, int] = {}

    @property
    def url(self) -> str:
        """Prometheus' base URL, e.g. http://127.0.0.1:40123 (its web page; the API is under /api/v1)."""
        return f"http://{self.addresses['http']}"

    @property
    def config_path(self) -> Path:
        return self.work_dir / "prometheus.yml"

    @property
    def log_path(self) -> Path:
        return self.work_dir / "prometheus.log"

    def config_text(self) -> str:
        """prometheus.yml: how often to scrape and evaluate, the rule files, one scrape job per target."""
        interval = f"{self.scrape_interval_s:g}s"
        lines = ["global:", f"  scrape_interval: {interval}", f"  evaluation_interval: {interval}"]
        if self.rule_files:
            lines += ["rule_files:", *[f"  - '{Path(path).resolve()}'" for path in self.rule_files]]
        lines.append("scrape_configs:")
        for job, address in self.targets.items():
            lines += [f"  - job_name: '{job}'", "    static_configs:", f"      - targets: ['{_host_port(address)}']"]
        return "\n".join(lines) + "\n"

    def command(self) -> list[str]:
        """The prometheus command line (embedded mode)."""
        return [prometheus_binary(), f"--config.file={self.config_path}",
                f"--storage.tsdb.path={self.work_dir / 'data'}", "--storage.tsdb.retention.time=2h",
                f"--web.listen-address={LOCALHOST}:{self.ports['http']}"]

    def pids(self) -> list[int]:
        """The prometheus process's PID ([] when this kernel did not start one), to check that stop() ended it."""
        return [self.process.pid] if self.process is not None and self.process.poll() is None else []

    # ----- queries --------------------------------------------------------------------
    def query(self, promql: str, at: float | None = None) -> list[dict[str, Any]]:
        """The result of an instant PromQL query: a list of {"metric": labels, "value": [time, "value"]}, sorted
        by labels (Prometheus answers series in no fixed order; a printed result should read the same each run).

        Raises ValueError with Prometheus' own message for a query it cannot parse or run.
        """
        return _by_labels(self._api("query", {"query": promql, **({"time": at} if at is not None else {})}))

    def query_range(self, promql: str, start: float, end: float, step_s: float) -> list[dict[str, Any]]:
        """The result of a range query: a list of {"metric": labels, "values": [[time, "value"], ...]}, sorted
        by labels."""
        return _by_labels(self._api("query_range", {"query": promql, "start": start, "end": end, "step": step_s}))

    def target_health(self) -> dict[str, str]:
        """Each scrape job's health as Prometheus sees it: "up", "down" or "unknown" (not scraped yet)."""
        answer = requests.get(f"{self.url}/api/v1/targets", timeout=10).json()
        return dict(sorted((target["labels"]["job"], target["health"]) for target in answer["data"]["activeTargets"]))

    def range_frame(self, promql: str, start: float, end: float, step_s: float = 1.0,
                    label: str = "job") -> pd.DataFrame:
        """A range query as a table: one row per step (seconds since `start`), one column per series, named by
        the series' `label` (e.g. job or model). Introduced in 22_watching_servers.
        """
        columns = {}
        for series in self.query_range(promql, start, end, step_s):
            name = series["metric"].get(label, promql)
            columns[name] = pd.Series({float(t) - start: float(v) for t, v in series["values"]})
        return pd.DataFrame(columns).sort_index()

    def metadata(self, job: str) -> list[dict[str, str]]:
        """What one scrape job's target exports: [{"metric", "type", "help"}, ...], from Prometheus' metadata API
        (`/api/v1/targets/metadata`), which keeps the `# TYPE` and `# HELP` lines of the last scrape.
        Introduced in 22_watching_servers.
        """
        answer = requests.get(f"{self.url}/api/v1/targets/metadata",
                              params={"match_target": f'{{job="{job}"}}'}, timeout=10).json()
        if answer.get("status") != "success":
            raise ValueError(f"Prometheus has no metadata for job {job!r}: {answer.get('error', answer)}")
        return [{"metric": item["metric"], "type": item["type"], "help": item["help"]} for item in answer["data"]]

    def alerts(self) -> list[dict[str, Any]]:
        """The alerts whose rule is true now: [{"name", "state" ("pending" or "firing"), "labels", "since"}],
        from `/api/v1/alerts`. Introduced in 22_watching_servers.
        """
        answer = requests.get(f"{self.url}/api/v1/alerts", timeout=10).json()
        return [{"name": alert["labels"]["alertname"], "state": alert["state"], "labels": alert["labels"],
                 "since": alert.get("activeAt", "")} for alert in answer["data"]["alerts"]]

    def wait_for_targets(self, timeout_s: float = 30.0) -> dict[str, str]:
        """Wait until Prometheus has scraped every target and found it up; return target_health().

        Before its first scrape a target has no series at all, and every query about it answers []. A target
        still down after `timeout_s` raises TimeoutError, naming it. Introduced in 22_watching_servers.
        """
        expected = {job: "up" for job in self.targets}
        wait_until(lambda: self.target_health() == expected, timeout_s, f"Prometheus to scrape {sorted(expected)}",
                   on_timeout=lambda: f"targets: {self.target_health()}")
        return self.target_health()

    def _api(self, endpoint: str, params: dict[str, Any]) -> list[dict[str, Any]]:
        answer = requests.get(f"{self.url}/api/v1/{endpoint}", params=params, timeout=30).json()
        if answer.get("status") != "success":
            raise ValueError(f"Prometheus refused {params.get('query')!r}: {answer.get('error', answer)}")
        return answer["data"]["result"]

    # ----- lifecycle (start(), stop(), describe() and log_tail() come from lifecycle.Server) -----
    def _launch(self) -> None:
        self.ports = {"http": free_ports(1)[0]}
        self.addresses = {"http": f"{LOCALHOST}:{self.ports['http']}"}
        config = os.open(self.config_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(config, "w") as file:
            file.write(self.config_text())
        log = os.fdopen(os.open(self.log_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "wb")
        with log:   # umask 077: its database and log are private to you
            self.process = subprocess.Popen(self.command(), cwd=self.work_dir, umask=0o077, stdout=log,
                                            stderr=subprocess.STDOUT, start_new_session=True)
        self._guard(self.process.pid)   # stopped if this kernel dies
        self._wait_until_answers(f"{self.url}/-/ready", self.ports["http"], self.startup_timeout_s,
                                 "Prometheus to be ready")

    def _attach(self) -> None:
        self._wait_until_answers(f"{self.url}/-/ready", None, 30, f"the external Prometheus at {self.url} (PROMETHEUS_URL)")

    def _detach(self) -> Callable[[], None]:
        return lambda: None

    def _load_models(self) -> None:
        pass   # Prometheus serves no models

    def _launch_description(self) -> str:
        return " \\\n    ".join(self.command()).replace(str(self.work_dir), "<work dir>")

    def _terminate(self) -> Callable[[], None]:
        """SIGTERM (Prometheus writes its database and exits); return the call that waits for it."""
        process, self.process = self.process, None
        return (lambda: None) if process is None else ask_to_stop(process, grace_s=15)


def _by_labels(result: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A query result's series sorted by their labels, `instance` (host:port, a new port each run) last.
    Internal helper: no lesson calls it.
    """
    if not isinstance(result, list) or not all(isinstance(series, dict) for series in result):
        return result     # a scalar or string result is [time, "value"], not a list of series

    def labels(series: dict[str, Any]) -> tuple:
        metric = series.get("metric", {})
        return tuple(sorted((k, v) for k, v in metric.items() if k != "instance")), metric.get("instance", "")
    return sorted(result, key=labels)
