"""System shared memory between a client and Triton on one machine (lesson 19).

The client writes a tensor into a POSIX shared-memory region (a file in /dev/shm, mode 0600), registers
the region with Triton once (`register_system_shared_memory`, a restricted API: it needs the control
key), and then names the region in each request instead of sending the bytes. tritonclient 2.51's own
helper, `tritonclient.utils.shared_memory`, imports `pkg_resources`, which recent setuptools no longer
ships (the course's lock has 84.2.1), so regions here are made with Python's standard
`multiprocessing.shared_memory`; the Triton calls are tritonclient's.
"""

from __future__ import annotations

import os
import secrets
from multiprocessing import shared_memory
from pathlib import Path

import numpy as np

from .paths import PACKAGE_DIR
from .triton_config import io_tensor, model_config, write_python_model

IMAGE_MEAN = PACKAGE_DIR / "triton_models" / "image_mean.py"
IMAGE_SHAPE = [1, 3, 224, 224]   # lesson 12's ResNet-sized input: 602,112 bytes of FP32
# Client regions: /dev/shm/course-client-<pid>-<random>. Not "course_", the prefix of the servers' own regions.
# If the kernel dies without close(), Python's resource tracker removes the region when it notices; a kill of
# the kernel's whole process group (a forced restart) takes the tracker with it, and the region stays.
REGION_PREFIX = "course-client-"


def write_image_mean(repository: Path, name: str = "image_mean") -> Path:
    """Write the model folder of image_mean: IMAGE [3, 224, 224] FP32 -> MEANS [3], the mean of each channel.

    Introduced in 19_shared_memory.
    """
    return write_python_model(Path(repository) / name,
                              model_config(name, backend="python", max_batch_size=8,
                                           inputs=[io_tensor("IMAGE", "TYPE_FP32", IMAGE_SHAPE[1:])],
                                           outputs=[io_tensor("MEANS", "TYPE_FP32", [3])]),
                              IMAGE_MEAN)


class SystemRegion:
    """A shared-memory region registered with Triton under `name`; a context manager that unregisters and removes it.

    `client` is a tritonclient HTTP or gRPC client; `headers` carry the control key that Triton's
    shared-memory API asks for (`server.control_headers()`, with `grpc=True` for a gRPC client). The file is
    private (mode 0600), but a registered region can be named in any inference request: on a shared machine,
    register it under a name others cannot guess.
    Introduced in 19_shared_memory.
    """

    def __init__(self, client, name: str, byte_size: int, headers: dict[str, str]) -> None:
        self.client, self.name, self.byte_size, self.headers = client, name, byte_size, headers
        self.memory = shared_memory.SharedMemory(name=f"{REGION_PREFIX}{os.getpid()}-{secrets.token_hex(6)}",
                                                 create=True, size=byte_size)
        self.key = "/" + self.memory.name   # what shm_open() and Triton call it
        self.closed = False
        try:
            client.register_system_shared_memory(name, self.key, byte_size, headers=headers)
        except BaseException:   # an interrupted kernel too: nothing stays in /dev/shm
            self._remove()
            raise

    def write(self, array: np.ndarray) -> None:
        """Copy `array` into the region (from its start). Requests that name the region read what it holds when they
        run: do not write while one is in flight."""
        if array.nbytes > self.byte_size:
            raise ValueError(f"{array.nbytes} bytes do not fit the {self.byte_size}-byte region {self.name!r}")
        np.ndarray(array.shape, array.dtype, buffer=self.memory.buf)[...] = array

    def _remove(self) -> None:
        try:
            self.memory.unlink()   # first: even if a view of the buffer keeps close() from working
        finally:
            self.memory.close()

    def close(self) -> None:
        """Unregister the region from Triton, then remove it from /dev/shm; a second call does nothing."""
        if self.closed:
            return
        self.closed = True
        try:
            self.client.unregister_system_shared_memory(self.name, headers=self.headers)
        finally:
            self._remove()

    def __enter__(self) -> "SystemRegion":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
