"""A third server in one small module, as a new server of the course would be written.

Python's own `http.server` stands in for it: a real process on a free 127.0.0.1 port. Everything
else (kernel-tied lifetime and the watchdog, port ownership in readiness, describe(), log_tail(),
errors that name their cause) comes from `course_utils.servers.lifecycle.Server`.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Callable

from course_utils.servers.lifecycle import Server, ask_to_stop
from course_utils.servers.ports import LOCALHOST, free_ports


class FileServer(Server):
    """`python -m http.server` on 127.0.0.1, serving `work_dir`."""

    kind = "file server"
    main_address = "http"
    process_markers = ("-m http.server",)

    def __init__(self, work_dir: Path, port: int | None = None) -> None:
        self.work_dir = Path(work_dir).resolve()
        self.port = port
        self.addresses: dict[str, str] = {}

    def command(self) -> list[str]:
        return [sys.executable, "-m", "http.server", str(self.port), "--bind", LOCALHOST,
                "--directory", str(self.work_dir)]

    def _launch(self) -> None:
        self.port = self.port or free_ports(1)[0]
        self.addresses = {"http": f"http://{LOCALHOST}:{self.port}"}
        with open(self.work_dir / "server.log", "ab") as log:
            self.process = subprocess.Popen(self.command(), stdout=log, stderr=subprocess.STDOUT,
                                            start_new_session=True, umask=0o077)
        self._guard(os.getpgid(self.process.pid))
        self._wait_until_answers(f"{self.addresses['http']}/", self.port, 30, f"the file server on port {self.port}")

    def _terminate(self) -> Callable[[], None]:
        process, self.process = self.process, None
        return (lambda: None) if process is None else ask_to_stop(process, grace_s=5)

    def _load_models(self) -> None:
        pass

    def _process_alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def _exit_code(self) -> int | None:
        return None if self.process is None else self.process.poll()

    def _logs(self) -> list[Path]:
        return [self.work_dir / "server.log"]

    def _launch_description(self) -> str:
        return "ran: " + shlex.join(self.command()).replace(str(self.work_dir), "<server dir>")
