"""One lifecycle for both servers: registry, parallel stop, and errors that name their cause within seconds."""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
import time
from pathlib import Path
from typing import Callable

import psutil
import pytest

from course_utils.servers import lifecycle
from course_utils.archiver import archive_model
from course_utils.servers.lifecycle import Server, address_from_env, free_space_problem, running, stop_servers


# ----- the registry and the parallel stop (no server needed) -----------------------------
class Recorder(Server):
    """A Server whose launch and stop only record what the lifecycle asked of it."""

    kind = "recorder"

    def __init__(self, work_dir: Path, events: list[str], fail: bool = False) -> None:
        self.work_dir, self.events, self.fail = Path(work_dir), events, fail

    def _launch(self) -> None:
        self.events.append(f"launch {self.work_dir.name}")
        if self.fail:
            raise RuntimeError("no luck")

    def _load_models(self) -> None:
        pass

    def _logs(self) -> list[Path]:
        return []

    def _terminate(self) -> Callable[[], None]:
        self.events.append(f"ask {self.work_dir.name}")
        return lambda: self.events.append(f"wait {self.work_dir.name}")


def test_every_stop_begins_before_any_wait_and_the_registry_is_by_identity(tmp_path):
    events: list[str] = []
    first, second = Recorder(tmp_path / "a", events).start(), Recorder(tmp_path / "b", events).start()
    with pytest.raises(RuntimeError, match="already running"):
        first.start()
    assert [s for s in running() if s in (first, second)] == [first, second]
    stop_servers([first, second])
    assert events[-4:] == ["ask a", "ask b", "wait a", "wait b"]
    assert not any(s is first or s is second for s in running())


def test_a_failed_start_is_stopped_and_forgotten(tmp_path):
    events: list[str] = []
    with pytest.raises(RuntimeError, match="no luck"):
        Recorder(tmp_path / "c", events, fail=True).start()
    assert events == ["launch c", "ask c", "wait c"] and not any(s.work_dir.name == "c" for s in running())


def test_work_dir_stops_the_servers_inside_the_folder_it_empties(tmp_path, monkeypatch):
    from course_utils.paths import work_dir

    monkeypatch.setenv("COURSE_WORK_DIR", str(tmp_path))
    events: list[str] = []
    inside = Recorder(work_dir("lesson") / "server", events).start()
    elsewhere = Recorder(tmp_path / "other" / "server", events).start()
    work_dir("lesson")
    assert "ask server" in events and not any(s is inside for s in running())
    assert any(s is elsewhere for s in running())
    elsewhere.stop()


def test_addresses_from_the_environment_are_checked(monkeypatch):
    monkeypatch.setenv("SOME_URL", "http://localhost:8080/")
    assert address_from_env("SOME_URL", "http://localhost:8080", scheme_required=True) == ("http", "localhost", 8080)
    monkeypatch.setenv("SOME_URL", "localhost:8000")
    assert address_from_env("SOME_URL", "localhost:8000", scheme_required=False) == ("http", "localhost", 8000)
    with pytest.raises(ValueError, match="set it like SOME_URL=http://localhost:8080"):
        address_from_env("SOME_URL", "http://localhost:8080", scheme_required=True)
    monkeypatch.setenv("SOME_URL", "localhost")
    with pytest.raises(ValueError, match="is not host:port"):
        address_from_env("SOME_URL", "localhost:8000", scheme_required=False)
    monkeypatch.delenv("SOME_URL")
    assert address_from_env("SOME_URL", "x", scheme_required=False) is None


def test_too_little_free_space_is_named_with_the_folder(tmp_path):
    assert free_space_problem([tmp_path], 1, "start it") == ""
    problem = free_space_problem([tmp_path / "not" / "yet"], 2**62, "start TorchServe")
    assert str(tmp_path / "not" / "yet") in problem and "to start TorchServe it needs" in problem


# ----- real servers: a dead server and a full disk are named within seconds -----------------
@pytest.fixture(scope="module")
def store(churn_files, tmp_path_factory):
    folder = tmp_path_factory.mktemp("store")
    archive_model("churn", churn_files["model"], churn_files["handler"], folder,
                  extra_files=[churn_files["base"], churn_files["labels"]])
    return folder


@pytest.fixture
def shell():
    """An IPython shell, as in a Jupyter kernel (the lifecycle adds its note to failed cells there)."""
    from IPython.core.interactiveshell import InteractiveShell

    shell = InteractiveShell.instance()
    yield shell
    shell.set_custom_exc((), None)
    InteractiveShell.clear_instance()


@pytest.mark.slow
def test_a_dead_torchserve_is_named_below_the_failed_cell_within_seconds(store, tmp_path, shell, capsys):
    from course_utils.servers.torchserve import TorchServe

    with TorchServe(store, tmp_path / "dead") as server:
        shell.user_ns["server"] = server
        psutil.Process(server.process.pid).kill()   # java dies: an out-of-memory kill, a crash
        began = time.monotonic()
        shell.run_cell("import requests\nrequests.get(f'{server.inference_url}/ping', timeout=5)")
        seconds = time.monotonic() - began
        shown = capsys.readouterr()
        assert "ConnectionError" in shown.out + shown.err
        assert "Probable cause: TorchServe (started in" in shown.err and "is no longer running" in shown.err
        assert seconds < 5, f"{seconds:.1f} s"
        with pytest.raises(RuntimeError, match="no longer running"):
            server.wait_model_ready("churn", timeout_s=60)
    assert time.monotonic() - began < 30


@pytest.mark.slow
def test_a_dead_tritonserver_is_named_below_the_failed_cell(tmp_path, shell, capsys):
    from course_utils.pipelines import write_pipeline_steps
    from course_utils.models import load_digit_cnn
    from course_utils.servers.triton import TritonServer

    write_pipeline_steps(tmp_path / "repo", load_digit_cnn().model)
    with TritonServer(tmp_path / "repo", tmp_path / "triton", models=["preprocess"]) as server:
        shell.user_ns["client"] = server.http_client()
        server.process.kill()
        server.process.wait()
        shell.run_cell("client.is_server_live()")
        shown = capsys.readouterr()
        assert "Probable cause: Triton (started in" in shown.err and "exited with code -9" in shown.err


@pytest.fixture
def small_disk(tmp_path):
    """A 80 MiB tmpfs (root only: where mounting is not allowed, the test is skipped)."""
    mount = tmp_path / "disk"
    mount.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=80m", "tmpfs", str(mount)],
                                           capture_output=True).returncode != 0:
        pytest.skip("needs permission to mount a small tmpfs (root)")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


def fill(disk: Path, leave_bytes: int) -> None:
    """Fill `disk` until only `leave_bytes` are free."""
    with open(disk / "filler", "wb", buffering=0) as filler:
        with pytest.raises(OSError):
            while True:
                filler.write(b"\0" * 2**20)
    size = (disk / "filler").stat().st_size
    os.truncate(disk / "filler", max(0, size - leave_bytes))


@pytest.mark.slow
def test_a_full_disk_is_named_at_once_not_after_the_startup_timeout(store, small_disk, tmp_path):
    from course_utils.servers.torchserve import TorchServe
    from course_utils.servers.triton import TritonServer

    local_store = shutil.copytree(store, small_disk / "store")
    fill(small_disk, 16 * 1024)
    began = time.monotonic()
    with pytest.raises(OSError) as raised:
        TorchServe(local_store, small_disk / "ts", models=["churn.mar"]).start()
    assert raised.value.errno == errno.ENOSPC and f"the disk of {small_disk / 'ts'} has" in str(raised.value)
    assert "Free some space" in str(raised.value)
    (tmp_path / "repo").mkdir()
    with pytest.raises(OSError, match="to start Triton it needs 64 MiB"):
        TritonServer(tmp_path / "repo", small_disk / "triton").start()
    assert time.monotonic() - began < 5


@pytest.mark.slow
def test_a_disk_that_fills_while_serving_is_named(store, small_disk):
    from course_utils.servers.torchserve import TorchServe

    with TorchServe(store, small_disk / "ts", models=["churn.mar"]) as server:
        assert server.problem() == ""
        fill(small_disk, 0)
        problem = server.problem()
        assert "has 0.0 MiB free; to run TorchServe it needs 1 MiB" in problem, problem
        with pytest.raises(OSError) as raised:
            server.check()
        assert raised.value.errno == errno.ENOSPC
        (small_disk / "filler").unlink()
    assert not lifecycle.running() or all(s is not server for s in lifecycle.running())


@pytest.mark.slow
def test_a_torchserve_port_held_by_another_server_is_named_and_the_other_is_untouched(store, tmp_path, monkeypatch):
    import course_utils.servers.torchserve as torchserve

    with torchserve.TorchServe(store, tmp_path / "first", models=["churn.mar"]) as first:
        taken = list(first.ports.values())
        monkeypatch.setattr(torchserve, "free_ports", lambda count: taken[:count])
        began = time.monotonic()
        with pytest.raises(RuntimeError) as raised:
            torchserve.TorchServe(store, tmp_path / "second", models=["churn.mar"]).start()
        assert time.monotonic() - began < 30, f"{time.monotonic() - began:.1f} s"
        assert "Address already in use" in str(raised.value) or "address" in str(raised.value).lower(), raised.value
        assert first.problem() == "" and first.wait_model_ready("churn", timeout_s=10)
