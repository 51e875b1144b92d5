"""Free ports on 127.0.0.1 and waiting for something to become true."""

from __future__ import annotations

import socket
import time
from typing import Callable, TypeVar

T = TypeVar("T")

LOCALHOST = "127.0.0.1"


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that nothing listens on right now.

    Internal helper: no lesson calls it.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOCALHOST, 0))
        return sock.getsockname()[1]


def free_ports(count: int) -> list[int]:
    """Return `count` distinct free ports on 127.0.0.1.

    Introduced in 09_ab_testing.
    """
    ports: set[int] = set()
    while len(ports) < count:
        ports.add(free_port())
    return sorted(ports)


def port_is_free(port: int) -> bool:
    """True when nothing listens on 127.0.0.1:port.

    Internal helper: no lesson calls it.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.2)
        return sock.connect_ex((LOCALHOST, port)) != 0


def wait_until(condition: Callable[[], T | None], timeout_s: float, what: str,
               interval_s: float = 0.25, on_timeout: Callable[[], str] | None = None) -> T:
    """Call `condition` until it returns something truthy, and return that.

    Raises TimeoutError naming `what` after `timeout_s`; `on_timeout` may add
    details to the message (for example the tail of a server log).

    Internal helper: no lesson calls it.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            details = on_timeout() if on_timeout else ""
            raise TimeoutError(f"Timed out after {timeout_s:.0f} s waiting for {what}.\n{details}".rstrip())
        time.sleep(interval_s)
