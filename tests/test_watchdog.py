"""No server outlives the kernel that started it, even after `kill -9` of the kernel."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from course_utils.archiver import archive_model
from course_utils.models import load_digit_cnn
from course_utils.pipelines import write_pipeline_steps
from conftest import alive


KERNEL = """
import json, sys, time
from course_utils.servers.torchserve import TorchServe
from course_utils.servers.triton import TritonServer
store, repo, work = sys.argv[1:4]
ts = TorchServe(store, work + "/ts", models=["churn.mar"]).start()
triton = TritonServer(repo, work + "/triton", models=["preprocess"]).start()
print(json.dumps({"pids": ts.pids() + triton.pids(), "shm": [str(r) for r in triton.shm_regions()],
                  "tmp": str(ts.tmp_dir)}), flush=True)
if sys.argv[4] == "exit":
    sys.exit(0)   # a normal end: the atexit hooks stop both servers
time.sleep(600)
"""


@pytest.mark.parametrize("how", [signal.SIGKILL, signal.SIGTERM, None],
                         ids=["kill -9", "SIGTERM (Jupyter's restart)", "normal exit"])
@pytest.mark.slow
def test_a_killed_kernel_leaves_no_server_behind_within_seconds(how, churn_files, tmp_path):
    store = tmp_path / "store"
    archive_model("churn", churn_files["model"], churn_files["handler"], store,
                  extra_files=[churn_files["base"], churn_files["labels"]])
    write_pipeline_steps(tmp_path / "repo", load_digit_cnn().model)
    kernel = subprocess.Popen([sys.executable, "-c", KERNEL, str(store), str(tmp_path / "repo"), str(tmp_path),
                               "exit" if how is None else "wait"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True, cwd=Path(__file__).resolve().parents[1])
    try:
        started = json.loads(kernel.stdout.readline())
    except json.JSONDecodeError:
        kernel.kill()
        raise
    assert len(alive(started["pids"])) >= 4 and started["shm"], started   # java, worker, tritonserver, stub
    killed = time.monotonic()
    if how is not None:
        os.kill(kernel.pid, how)
    kernel.wait()
    errors = kernel.stderr.read()
    assert "Traceback" not in errors, errors
    def leftovers() -> list:
        return [*alive(started["pids"]), *[r for r in [*started["shm"], started["tmp"]] if Path(r).exists()]]

    while leftovers() and time.monotonic() - killed < 30:
        time.sleep(0.2)
    seconds = time.monotonic() - killed
    name = how.name if how else "a normal exit"
    assert not leftovers(), f"left {seconds:.1f} s after {name}: {leftovers()}"
    assert seconds < 10, f"servers took {seconds:.1f} s to go"
    print(f"\nno server process left {seconds:.1f} s after {name} of the kernel")


def test_the_same_lesson_in_a_second_kernel_stops_at_once_naming_the_first(tmp_path, monkeypatch):
    from course_utils.paths import work_dir

    monkeypatch.setenv("COURSE_WORK_DIR", str(tmp_path))
    first = subprocess.Popen([sys.executable, "-c", "import time; from course_utils.paths import work_dir; "
                              "work_dir('02_handlers'); print('ready', flush=True); time.sleep(60)"],
                             stdout=subprocess.PIPE, text=True, cwd=Path(__file__).resolve().parents[1])
    try:
        assert first.stdout.readline().strip() == "ready"
        (tmp_path / "02_handlers" / "answer.txt").write_text("the first kernel's file")
        with pytest.raises(RuntimeError, match=rf"in use by another running kernel \(pid {first.pid}\)"):
            work_dir("02_handlers")
        assert (tmp_path / "02_handlers" / "answer.txt").exists(), "the first kernel's folder was touched"
    finally:
        first.kill()
        first.wait()
    assert work_dir("02_handlers").is_dir(), "once the first kernel is gone, the folder is free"


@pytest.mark.slow
def test_rerunning_work_dir_stops_this_kernels_server_in_that_folder_first(churn_files, tmp_path, monkeypatch):
    from course_utils.paths import work_dir
    from course_utils.servers.torchserve import TorchServe

    monkeypatch.setenv("COURSE_WORK_DIR", str(tmp_path / "work"))
    work = work_dir("03_archiving")
    archive_model("churn", churn_files["model"], churn_files["handler"], work / "store",
                  extra_files=[churn_files["base"], churn_files["labels"]])
    server = TorchServe(work / "store", work / "server", models=["churn.mar"]).start()
    pids = server.pids()
    assert work_dir("03_archiving") == work
    assert not alive(pids) and server.process is None, "the rerun must stop the server before emptying its folder"
    assert sorted(p.name for p in work.iterdir()) == [".kernel"]


def test_a_registry_left_by_a_dead_kernel_is_swept_without_touching_other_processes(tmp_path, monkeypatch):
    from course_utils.servers import watchdog
    from course_utils.paths import short_temp_dir

    monkeypatch.setattr(watchdog.tempfile, "gettempdir", lambda: str(tmp_path))
    bystander = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], start_new_session=True)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    leftover, not_ours = short_temp_dir("ts-"), tmp_path / "someone_elses_folder"
    not_ours.mkdir()
    registry = watchdog.registry_path(dead.pid)
    registry.write_text(json.dumps({str(bystander.pid): {"shm_prefix": "", "tmp_dir": str(leftover)},
                                    "1": {"shm_prefix": "../etc", "tmp_dir": str(not_ours)}}))
    try:
        assert watchdog.sweep_orphans() == [registry]
        assert not registry.exists() and not leftover.exists()
        assert not_ours.exists(), "only the course's own short temp folders are ever removed"
        assert bystander.poll() is None, "a process group that holds no server is never killed"
    finally:
        bystander.kill()
        bystander.wait()
        shutil.rmtree(leftover, ignore_errors=True)


@pytest.mark.slow
def test_a_graceful_jupyter_restart_with_three_servers_leaves_nothing_behind(churn_files, tmp_path):
    """Kernel > Restart Kernel, as JupyterLab does it: two TorchServe servers and a Triton, as in lesson 09."""
    from jupyter_client.manager import KernelManager

    store = tmp_path / "store"
    archive_model("churn", churn_files["model"], churn_files["handler"], store,
                  extra_files=[churn_files["base"], churn_files["labels"]])
    write_pipeline_steps(tmp_path / "repo", load_digit_cnn().model)
    code = (f"import json\nfrom course_utils.servers.torchserve import TorchServe\nfrom course_utils.servers.triton import TritonServer\n"
            f"work = {str(tmp_path)!r}\n"
            f"servers = [TorchServe({str(store)!r}, work + '/a', models=['churn.mar']).start(),\n"
            f"           TorchServe({str(store)!r}, work + '/b', models=['churn.mar']).start(),\n"
            f"           TritonServer({str(tmp_path / 'repo')!r}, work + '/t', models=['preprocess']).start()]\n"
            "print(json.dumps({'pids': [p for s in servers for p in s.pids()], 'shm': [str(r) for r in "
            "servers[2].shm_regions()], 'tmp': [str(s.tmp_dir) for s in servers[:2]]}))")
    manager = KernelManager(kernel_name="python3")
    manager.start_kernel(cwd=str(Path(__file__).resolve().parents[1]))
    client = manager.client()
    client.start_channels()
    printed: list[str] = []
    try:
        client.wait_for_ready(timeout=60)
        reply = client.execute_interactive(code, timeout=300, output_hook=lambda message: printed.append(
            message["content"].get("text", "")) if message["msg_type"] == "stream" else None)
        assert reply["content"]["status"] == "ok", reply["content"]
        started = json.loads("".join(printed).strip().splitlines()[-1])
        assert len(alive(started["pids"])) >= 6, started   # 2 x (java, worker), tritonserver, stub
        began = time.monotonic()
        manager.restart_kernel(now=False)   # shutdown_request; SIGTERM if the kernel is not gone after 2.5 s

        def leftovers() -> list:
            return [*alive(started["pids"]), *[r for r in [*started["shm"], *started["tmp"]] if Path(r).exists()]]

        while leftovers() and time.monotonic() - began < 30:
            time.sleep(0.2)
        seconds = time.monotonic() - began
        assert not leftovers(), f"left {seconds:.1f} s after the restart: {leftovers()}"
        assert seconds < 10, f"servers took {seconds:.1f} s to go"
        client.wait_for_ready(timeout=60)   # and the restarted kernel works
        print(f"\na graceful restart with three servers: nothing left {seconds:.1f} s after Restart Kernel")
    finally:
        client.stop_channels()
        manager.shutdown_kernel(now=True)
