"""The servers package: one signature per operation, and a third server that is one small module."""

from __future__ import annotations

import inspect
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from conftest import alive
from course_utils.servers.lifecycle import Server, running
from course_utils.servers.torchserve import TorchServe
from course_utils.servers.triton import TritonServer
from third_server import FileServer

TESTS = Path(__file__).resolve().parent


def public_methods(cls: type) -> dict[str, inspect.Signature]:
    return {name: inspect.signature(member) for name, member in inspect.getmembers(cls, inspect.isfunction)
            if not name.startswith("_")}


def test_the_same_operation_has_the_same_signature_on_every_server():
    torchserve, triton = public_methods(TorchServe), public_methods(TritonServer)
    differ = {name: (str(torchserve[name]), str(triton[name])) for name in torchserve.keys() & triton.keys()
              if torchserve[name] != triton[name]}
    assert not differ, differ
    for shared in ("start", "stop", "begin_stop", "check", "problem", "describe", "log_tail"):
        assert shared in torchserve and shared in triton, shared
    for cls in (TorchServe, TritonServer):   # what every server shows is written once, in the base
        assert "describe" not in vars(cls) and "log_tail" not in vars(cls), cls


def test_a_third_server_gets_readiness_describe_logs_and_the_registry_from_the_base(tmp_path):
    (tmp_path / "hello.txt").write_text("hi")
    with FileServer(tmp_path) as server:
        assert server in running()
        assert requests.get(f"{server.addresses['http']}/hello.txt", timeout=5).text == "hi"
        assert server.describe().startswith("ran: ") and "--bind 127.0.0.1" in server.describe()
        assert '"GET /hello.txt HTTP/1.1" 200' in server.log_tail(grep="hello.txt")
        assert server.problem() == ""
    assert server not in running() and server.process is None


def test_a_third_server_whose_port_is_taken_is_named_within_seconds(tmp_path):
    for name in ("first", "second"):
        (tmp_path / name).mkdir()
    with FileServer(tmp_path / "first") as first:
        began = time.monotonic()
        with pytest.raises(RuntimeError) as raised:
            FileServer(tmp_path / "second", port=first.port).start()
        assert time.monotonic() - began < 10, f"{time.monotonic() - began:.1f} s"
        assert "file server" in str(raised.value) and "no longer running" in str(raised.value), raised.value
        assert "Address already in use" in str(raised.value), "the log tail names the cause"
        assert first.problem() == "", "the server that holds the port is untouched"


KERNEL = """
import json, sys, time
sys.path.insert(0, sys.argv[1])
from third_server import FileServer
server = FileServer(sys.argv[2]).start()
print(json.dumps({"pid": server.process.pid}), flush=True)
time.sleep(600)
"""


def test_a_killed_kernel_leaves_no_third_server_behind(tmp_path):
    kernel = subprocess.Popen([sys.executable, "-c", KERNEL, str(TESTS), str(tmp_path)], stdout=subprocess.PIPE,
                              text=True, cwd=TESTS.parent)
    pid = json.loads(kernel.stdout.readline())["pid"]
    assert alive([pid])
    os.kill(kernel.pid, signal.SIGKILL)
    kernel.wait()
    began = time.monotonic()
    while alive([pid]) and time.monotonic() - began < 15:
        time.sleep(0.2)
    assert not alive([pid]), "the watchdog stops the server of a killed kernel, from the markers it registered"
