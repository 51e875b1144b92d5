"""Run NVIDIA's real perf_analyzer (from the tritonclient 2.51.0 wheel) and read its CSV.

The binary sits in this environment's bin/. It needs two shared libraries that the
wheel does not bring, libb64.so.0d and libcudart.so.12 (it never touches a GPU for
CPU models): nvidia-pytriton ships both under other file names, so
`perf_analyzer_env()` links them into a folder on LD_LIBRARY_PATH.

Settings that gave stable numbers on a 2-core machine: one perf_analyzer run per
concurrency level, `--measurement-mode count_windows` with a fixed request count,
and a stability threshold of 20 %. A count window lasts at least one second, so a run
takes at least 3 s; where many runs must fit in a lesson, `window_ms` asks for time
windows of that length instead (`--measurement-mode time_windows`). Shorter windows
agree less often: lesson 12's quick mode pairs 500 ms windows with a 50 % threshold,
and its 13 runs then took 2-4 s each, against 3-14 s in 1 s count windows at 20 %.
When other work shares the cores (a test run in parallel), a level may still not
settle: it is measured once more with a wide threshold and marked `stable=False`.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
from pathlib import Path
from typing import Sequence

import pandas as pd
from .progress import progress

from .paths import work_root
from .tools import tool, tool_env

STABLE = 20        # % agreement perf_analyzer asks of 3 windows in a row
LENIENT = 100      # for a retry on a machine too busy to agree within STABLE
# The libraries perf_analyzer asks for -> the prefix of the copy inside nvidia_pytriton.libs
NEEDED_LIBRARIES = {"libb64.so.0d": "libb64-", "libcudart.so.12": "libcudart-"}


class PerfAnalyzerError(RuntimeError):
    """perf_analyzer failed; the message holds its output."""


def perf_analyzer_env() -> dict[str, str]:
    """Environment in which perf_analyzer starts: its two libraries linked onto LD_LIBRARY_PATH.

    Internal helper: no lesson calls it.
    """
    import pytriton

    libs = Path(pytriton.__file__).resolve().parent.parent / "nvidia_pytriton.libs"
    links = work_root() / ".perf_analyzer_libs"
    links.mkdir(parents=True, exist_ok=True)
    for name, prefix in NEEDED_LIBRARIES.items():
        matches = sorted(libs.glob(f"{prefix}*"))
        if not matches:
            raise FileNotFoundError(f"{prefix}* not found in {libs}; reinstall nvidia-pytriton==0.7.0")
        link = links / name
        if not link.exists():
            link.unlink(missing_ok=True)
            link.symlink_to(matches[0])
    previous = os.environ.get("LD_LIBRARY_PATH", "")
    return tool_env(LD_LIBRARY_PATH=os.pathsep.join(p for p in [str(links), previous] if p))


def perf_analyzer_command(model: str, url: str, csv_path: Path, *, concurrency: int = 1, protocol: str = "http",
                          batch_size: int = 1, shapes: Sequence[str] = (), input_data: Path | str | None = None,
                          service_kind: str = "triton", request_count: int = 500, window_ms: int | None = None,
                          stability_percentage: int = STABLE, profile_export: Path | None = None,
                          extra: Sequence[str] = ()) -> list[str]:
    """The perf_analyzer command line for one concurrency level.

    `shapes` like ["input:4"] are needed only for dynamic dims. `input_data` is "zero",
    a folder with one raw file per input named after it (one batch-1 sample), or a JSON
    file of inputs (for TorchServe: {"data": [{"TORCHSERVE_INPUT": ["file.json"]}]});
    without it perf_analyzer sends random data.
    A window holds at least `request_count` requests (and lasts at least 1 s), or, with
    `window_ms`, lasts exactly that long. perf_analyzer repeats its measurement (up to
    10 windows) until 3 in a row agree within `stability_percentage` %. With `profile_export`, it
    streams (gRPC, for a decoupled model) and writes every request's send time and each of its
    responses' arrival times to that JSON file (what genai-perf computes its LLM metrics from).

    Introduced in 03b_batching_and_model_management.
    """
    if protocol not in ("http", "grpc"):
        raise ValueError(f"protocol must be 'http' or 'grpc', got {protocol!r}")
    command = [tool("perf_analyzer"), "-m", model, "-u", url, "-i", protocol,
               "--service-kind", service_kind, "-b", str(batch_size),
               "--concurrency-range", f"{concurrency}:{concurrency}",
               *(["--measurement-mode", "count_windows", "--measurement-request-count", str(request_count)]
                 if window_ms is None else ["--measurement-mode", "time_windows", "--measurement-interval", str(window_ms)]),
               "--stability-percentage", str(stability_percentage), "--max-trials", "10",
               "-f", str(csv_path)]
    for shape in shapes:
        command += ["--shape", shape]
    if input_data is not None:
        command += ["--input-data", str(input_data)]
    if profile_export is not None:
        command += (["--streaming"] if service_kind == "triton" else []) + ["--profile-export-file", str(profile_export)]
    return command + list(extra)


def read_perf_csv(path: Path) -> pd.DataFrame:
    """perf_analyzer's CSV as a table: concurrency, throughput (infer/s) and latencies in ms.

    Internal helper: no lesson calls it.
    """
    raw = pd.read_csv(path)
    table = pd.DataFrame({"concurrency": raw["Concurrency"].astype(int),
                          "throughput": raw["Inferences/Second"].astype(float)})
    for column in ("p50", "p90", "p95", "p99"):
        table[f"{column}_ms"] = raw[f"{column} latency"] / 1000.0
    if "Avg latency" in raw:
        table["avg_ms"] = raw["Avg latency"] / 1000.0
    if "Server Queue" in raw:
        table["queue_ms"] = raw["Server Queue"] / 1000.0
        table["compute_ms"] = raw["Server Compute Infer"] / 1000.0
    return table


def _run_once(model: str, url: str, csv_path: Path, concurrency: int, env: dict[str, str], out_dir: Path,
              options: dict) -> subprocess.CompletedProcess:
    profile = csv_path.with_suffix(".json") if options.get("profile") else None   # the responses' times
    options = {**{k: v for k, v in options.items() if k != "profile"}, "profile_export": profile}
    command = perf_analyzer_command(model, url, csv_path, concurrency=concurrency, **options)
    with open(out_dir / "commands.txt", "a") as log:
        log.write(re.sub(r"(Bearer )[^\s']+", r"\1<key>", shlex.join(command)) + "\n")   # no secret in a file
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)


def run_perf_analyzer(model: str, url: str, out_dir: Path, concurrencies: Sequence[int] = (1, 4, 8),
                      label: str = "", **options) -> pd.DataFrame:
    """Run perf_analyzer once per concurrency level (with a progress bar); return one table.

    Keyword `options` go to perf_analyzer_command(); `profile=True` streams and keeps each level's
    profile export (column `profile`: its path). The commands run are kept in
    out_dir/commands.txt (a bearer key as <key>). A level whose windows never agree within 20 % is measured
    once more at 100 % and marked stable=False in the table. Raises
    PerfAnalyzerError with perf_analyzer's own output.

    Introduced in 03b_batching_and_model_management.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    env = perf_analyzer_env()
    tables = []
    for concurrency in progress(concurrencies, desc=f"perf_analyzer {label or model}"):
        csv_path = out_dir / f"{_file_stem(label or model)}_c{concurrency}.csv"
        stable = True
        result = _run_once(model, url, csv_path, concurrency, env, out_dir, options)
        if result.returncode != 0 and "Failed to obtain stable measurement" in result.stdout + result.stderr:
            stable = False  # a busy machine: measure once more, accepting a wider spread
            result = _run_once(model, url, csv_path, concurrency, env, out_dir,
                               {**options, "stability_percentage": LENIENT})
        if result.returncode != 0 or not csv_path.exists():
            output = result.stdout + result.stderr
            errors = [line for line in output.splitlines() if line.startswith("Error")]   # above its usage text
            raise PerfAnalyzerError(f"perf_analyzer exited with {result.returncode} and wrote no CSV for {model!r} at "
                                    f"concurrency {concurrency}:\n" + "\n".join(errors[:3] or [output[-3000:]]))
        table = read_perf_csv(csv_path)
        table["stable"] = stable
        if options.get("profile"):
            table["profile"] = str(csv_path.with_suffix(".json"))
        tables.append(table)
    table = pd.concat(tables, ignore_index=True)
    if label:
        table.insert(0, "setup", label)
    return table


def _file_stem(label: str) -> str:
    """A label like "TorchServe (batching 8 / 5 ms)" as a safe file name."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", label).strip("_")


def torchserve_input_data(request_body: Path, dest: Path) -> Path:
    """Write the --input-data JSON that `--service-kind torchserve` needs; return its path.

    perf_analyzer POSTs the file named in it (e.g. a JSON request body or a PNG) to
    /predictions/<model>. Introduced in 03b_batching_and_model_management.
    """
    import json

    request_body = Path(request_body).resolve()
    if not request_body.is_file():
        raise FileNotFoundError(f"{request_body} does not exist; write the request body to a file first")
    dest = Path(dest)
    dest.write_text(json.dumps({"data": [{"TORCHSERVE_INPUT": [str(request_body)]}]}))
    return dest
