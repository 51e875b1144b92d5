"""Lesson 19's system shared memory against a real Triton: the region's life, and every misuse answered with its
reason and the status lesson 19 teaches, for that request only (the control key guards registration; the
server serves on)."""

from __future__ import annotations

import os
import stat

import numpy as np
import pytest

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def triton(tmp_path_factory):
    from course_utils.servers.triton import TritonServer
    from course_utils.shared_memory import write_image_mean

    folder = tmp_path_factory.mktemp("shm")
    write_image_mean(folder / "repo")
    with TritonServer(folder / "repo", folder / "server", models=["image_mean"]) as server:
        yield server


def test_a_region_serves_requests_and_leaves_nothing_behind(triton):
    import tritonclient.grpc as grpcclient
    import tritonclient.http as httpclient

    from course_utils.shared_memory import IMAGE_SHAPE, SystemRegion

    image = np.random.default_rng(1).random(IMAGE_SHAPE, dtype=np.float32)
    expected = image.mean(axis=(2, 3), dtype=np.float64).astype(np.float32)
    for client, module in [(httpclient.InferenceServerClient(triton.http_url), httpclient),
                           (grpcclient.InferenceServerClient(triton.grpc_url), grpcclient)]:
        headers = triton.control_headers(grpc=module is grpcclient)
        with SystemRegion(client, "image", image.nbytes, headers=headers) as region:
            path = f"/dev/shm{region.key}"
            assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
            region.write(image)
            tensor = module.InferInput("IMAGE", IMAGE_SHAPE, "FP32")
            tensor.set_shared_memory("image", image.nbytes)
            assert np.allclose(client.infer("image_mean", [tensor]).as_numpy("MEANS"), expected, atol=1e-6)
        assert not os.path.exists(path)
        status = client.get_system_shared_memory_status(headers=headers)
        assert not (status if module is httpclient else list(status.regions))


def test_every_misuse_is_refused_with_its_reason_and_the_server_serves_on(triton):
    import tritonclient.http as httpclient
    from tritonclient.utils import InferenceServerException

    from course_utils.shared_memory import IMAGE_SHAPE, SystemRegion

    client = httpclient.InferenceServerClient(triton.http_url)
    image = np.full(IMAGE_SHAPE, 0.5, dtype=np.float32)

    def refused(action, status: str) -> str:
        with pytest.raises(InferenceServerException) as error:
            action()
        assert error.value.status() == status, (status, error.value.status(), error.value.message())
        return error.value.message()

    def request(name: str, byte_size: int, offset: int = 0):
        tensor = httpclient.InferInput("IMAGE", IMAGE_SHAPE, "FP32")
        tensor.set_shared_memory(name, byte_size, offset)
        return client.infer("image_mean", [tensor])

    pids = triton.pids()
    with SystemRegion(client, "image", image.nbytes, headers=triton.control_headers()) as region:
        region.write(image)
        assert "restricted" in refused(lambda: client.register_system_shared_memory("x", region.key, 1024), "403")
        assert "restricted" in refused(lambda: client.unregister_system_shared_memory("image"), "403")
        assert "Unable to open" in refused(lambda: client.register_system_shared_memory(
            "ghost", "/course-client-none", 1024, headers=triton.control_headers()), "500")   # as lesson 19 says
        assert "nowhere" in refused(lambda: request("nowhere", image.nbytes), "404")
        assert "Expected 602112, got 1024" in refused(lambda: request("image", 1024), "400")
        assert "Invalid offset" in refused(lambda: request("image", image.nbytes, offset=4096), "400")
        assert refused(lambda: request("image", image.nbytes * 2), "400")
        region.write(np.full(IMAGE_SHAPE, np.nan, dtype=np.float32))   # the model's own check
        assert "NaN" in refused(lambda: request("image", image.nbytes), "400")
        region.write(image)
        assert np.allclose(request("image", image.nbytes).as_numpy("MEANS"), 0.5)
        with pytest.raises(ValueError):
            region.write(np.zeros(image.size + 1, dtype=np.float32))
    assert triton.pids() == pids


def test_a_region_is_removed_even_when_a_view_of_it_is_kept_and_closed_twice(triton):
    import tritonclient.http as httpclient

    from course_utils.shared_memory import SystemRegion

    client = httpclient.InferenceServerClient(triton.http_url)
    region = SystemRegion(client, "kept", 4096, headers=triton.control_headers())
    view = np.frombuffer(region.memory.buf, dtype=np.float32)   # a view the learner kept
    with pytest.raises(BufferError):
        region.close()   # the view keeps the mapping open ...
    assert not os.path.exists(f"/dev/shm{region.key}")   # ... but the file is gone, and Triton let go of it
    assert not client.get_system_shared_memory_status(headers=triton.control_headers())
    del view
    region.close()   # a second close does nothing (and unregisters no other region of that name)
