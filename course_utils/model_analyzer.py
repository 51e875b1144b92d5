"""NVIDIA Triton Model Analyzer, an optional configuration search (lesson 21): run it on the embedded server, read it.

Model Analyzer launches a tritonserver, loads one variant of a model's config after another (instance
count x max batch size x queue delay), drives perf_analyzer against each at the given concurrencies and
writes a table and reports. It cannot share the course's environment (it brings numba, optuna and NVIDIA's
cuda-python, about 600 MB), so `make model-analyzer` installs it from `tools/model-analyzer.lock` into
`.venv-model-analyzer/`; lessons run it only where that exists.

Here it runs in its `local` launch mode against the tritonserver inside the nvidia-pytriton wheel: a small
script (`server_wrapper`) starts that binary with the course's Python backend, on 127.0.0.1, with a
shared-memory prefix of its own, and Model Analyzer adds its ports, repository and explicit model control.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shlex
import shutil
import signal
import subprocess
import time
import uuid
from pathlib import Path
from typing import Sequence

import pandas as pd
import psutil

from .paths import REPO_ROOT
from .perf_analyzer import perf_analyzer_env
from .servers import watchdog
from .servers.lifecycle import end_processes
from .servers.ports import free_ports
from .servers.triton import CONTROL_HEADER, _python_backend_dir, _triton_env, triton_install_dir
from .servers.triton_serving_copy import serving_copy
from .triton_config import read_config

MODEL_ANALYZER = REPO_ROOT / ".venv-model-analyzer" / "bin" / "model-analyzer"
RESULTS_CSV = Path("results") / "metrics-model-inference.csv"


class ModelAnalyzerError(RuntimeError):
    """Model Analyzer exited with an error or wrote no results."""


def model_analyzer_installed() -> bool:
    """Whether `make model-analyzer` has installed Model Analyzer in its own environment.

    Introduced in 21_tuning_to_an_slo.
    """
    return MODEL_ANALYZER.exists()


def server_wrapper(folder: Path, shm_prefix: str) -> Path:
    """Write `folder/tritonserver`: the embedded tritonserver with the course's Python backend, on 127.0.0.1.

    Model Analyzer loads and unloads variants through the model-repository API and cannot send a key, so
    that API stays open (on 127.0.0.1, for the run); shared memory, logging and trace need a random key
    nobody is given. Internal helper: no lesson calls it.
    """
    folder = Path(folder)
    backends = _python_backend_dir(folder / "backends")
    locked = f"shared-memory,logging,trace:{CONTROL_HEADER}={secrets.token_urlsafe(24)}"
    command = [str(triton_install_dir() / "bin" / "tritonserver"), f"--backend-directory={backends}",
               f"--backend-config=python,shm-region-prefix-name={shm_prefix}",
               "--http-address=127.0.0.1", "--grpc-address=127.0.0.1", "--metrics-address=127.0.0.1",
               f"--http-restricted-api={locked}", f"--grpc-restricted-protocol={locked}",
               "--pinned-memory-pool-byte-size=0", "--allow-gpu-metrics=false"]
    script = folder / "tritonserver"
    script.touch(mode=0o700)
    script.write_text("#!/bin/sh\n"
                      f"export LD_LIBRARY_PATH={shlex.quote(_triton_env()['LD_LIBRARY_PATH'])}\n"
                      f'exec {shlex.join(command)} "$@"\n')
    script.chmod(0o700)
    return script


def model_analyzer_config(repository: Path, model: str, out_dir: Path, instances: Sequence[int],
                          max_batch_sizes: Sequence[int], delays_us: Sequence[int], concurrencies: Sequence[int],
                          slo_ms: float, shm_prefix: str) -> str:
    """Model Analyzer's profile config (YAML) for a brute-force search of one model under a p99 constraint.

    Internal helper: no lesson calls it.
    """
    out_dir = Path(out_dir)
    http, grpc, metrics = free_ports(3)
    return f"""\
model_repository: {repository}
output_model_repository_path: {out_dir / 'variants'}
override_output_model_repository: true
checkpoint_directory: {out_dir / 'checkpoints'}
export_path: {out_dir}
triton_launch_mode: local
triton_server_path: {server_wrapper(out_dir, shm_prefix)}
triton_output_path: {out_dir / 'tritonserver.log'}
triton_http_endpoint: 127.0.0.1:{http}
triton_grpc_endpoint: 127.0.0.1:{grpc}
triton_metrics_url: http://127.0.0.1:{metrics}/metrics
run_config_search_disable: true
concurrency: {list(concurrencies)}
perf_analyzer_flags:
  measurement-interval: 500
objectives:
  - perf_throughput
constraints:
  perf_latency_p99:
    max: {slo_ms}
profile_models:
  {model}:
    cpu_only: true
    model_config_parameters:
      max_batch_size: {list(max_batch_sizes)}
      instance_group:
        - kind: KIND_CPU
          count: {list(instances)}
      dynamic_batching:
        max_queue_delay_microseconds: {list(delays_us)}
"""


def run_model_analyzer(repository: Path, model: str, out_dir: Path, instances: Sequence[int],
                       max_batch_sizes: Sequence[int], delays_us: Sequence[int], concurrencies: Sequence[int],
                       slo_ms: float, timeout_s: float = 900) -> pd.DataFrame:
    """Run `model-analyzer profile` on `model` of `repository`; return its results table (one row a measurement).

    The model folder is served as the course serves it (its serving copy), Model Analyzer's processes
    are tied to this kernel like the course's servers, and the command is kept in out_dir/command.txt.
    Raises ModelAnalyzerError with its last output lines.
    Introduced in 21_tuning_to_an_slo.
    """
    out_dir = Path(out_dir).resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / RESULTS_CSV).unlink(missing_ok=True)   # an earlier run's table must not pass for this one
    shutil.rmtree(out_dir / "checkpoints", ignore_errors=True)   # nor its checkpoint (it would skip measured variants)
    served = out_dir / "served_repository"
    serving_copy(Path(repository), served, model=model)
    shm_prefix = f"course_{uuid.uuid4().hex[:8]}_"
    config = out_dir / "config.yaml"
    config.write_text(model_analyzer_config(served, model, out_dir, instances, max_batch_sizes, delays_us,
                                            concurrencies, slo_ms, shm_prefix))
    command = [str(MODEL_ANALYZER), "profile", "-f", str(config)]
    (out_dir / "command.txt").write_text(" ".join(command) + "\n")
    env = {**os.environ, **perf_analyzer_env(), "MPLBACKEND": "Agg"}   # perf_analyzer on PATH; no inline plots
    log = open(out_dir / "model_analyzer.log", "w")
    process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    groups = _tie_to_kernel(process, shm_prefix, set())
    try:
        deadline = time.monotonic() + timeout_s
        while process.poll() is None:
            if time.monotonic() > deadline:
                raise ModelAnalyzerError(f"model-analyzer ran over {timeout_s:.0f} s; see {out_dir / 'model_analyzer.log'}")
            time.sleep(1)
            groups = _tie_to_kernel(process, shm_prefix, groups)
    except BaseException:   # a timeout or an interrupt: stop Model Analyzer and everything it launched
        _stop_tree(process)
        raise
    finally:
        log.close()
        for group in groups:
            watchdog.release(group)
    output = (out_dir / "model_analyzer.log").read_text()
    if process.returncode != 0 or not (out_dir / RESULTS_CSV).exists():
        raise ModelAnalyzerError(f"model-analyzer exited with {process.returncode}:\n"
                                 + "\n".join(output.splitlines()[-15:]))
    return read_model_analyzer(out_dir)


MARKERS = ("model-analyzer", "tritonserver", "triton_python_backend_stub", "perf_analyzer")


def _tie_to_kernel(process: subprocess.Popen, shm_prefix: str, groups: set[int]) -> set[int]:
    """Register with the course's watchdog every process group of Model Analyzer's tree not yet registered.

    Model Analyzer starts tritonserver and perf_analyzer in sessions of their own, so its own group does
    not hold them; each group is registered as it appears (a kernel that dies stops them all).
    """
    found = {process.pid}
    with contextlib.suppress(psutil.Error):
        for child in psutil.Process(process.pid).children(recursive=True):
            with contextlib.suppress(ProcessLookupError, psutil.Error):
                found.add(os.getpgid(child.pid))
    for group in found - groups:
        watchdog.guard(group, MARKERS, shm_prefix=shm_prefix)
    return groups | found


def _stop_tree(process: subprocess.Popen) -> None:
    """SIGINT to Model Analyzer (it stops its server), then end whatever of its tree is left."""
    with contextlib.suppress(psutil.Error):
        tree = [psutil.Process(process.pid), *psutil.Process(process.pid).children(recursive=True)]
        process.send_signal(signal.SIGINT)
        _, alive = psutil.wait_procs(tree, timeout=20)
        for leftover in alive:
            with contextlib.suppress(psutil.Error):
                leftover.terminate()
        end_processes(alive, timeout_s=5)


def read_model_analyzer(out_dir: Path) -> pd.DataFrame:
    """Model Analyzer's results CSV as a table with the sweep's columns (instances, max_batch_size, ...).

    Internal helper: no lesson calls it.
    """
    raw = pd.read_csv(Path(out_dir) / RESULTS_CSV)
    variants = Path(out_dir) / "variants"
    rows = []
    for _, row in raw.iterrows():
        delay = read_config(variants / row["Model Config Path"]).dynamic_batching.max_queue_delay_microseconds
        rows.append({"variant": row["Model Config Path"], "instances": int(str(row["Instance Group"]).split(":")[0]),
                     "max_batch_size": int(row["Max Batch Size"]), "delay_us": delay,
                     "concurrency": int(row["Concurrency"]), "throughput": float(row["Throughput (infer/sec)"]),
                     "p99_ms": float(row["p99 Latency (ms)"]), "meets SLO": row["Satisfies Constraints"] == "Yes"})
    return pd.DataFrame(rows)
