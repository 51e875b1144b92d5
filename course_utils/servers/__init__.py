"""The servers the course runs, each tied to the kernel that started it.

Lessons import the server they use from its own module:

    from course_utils.servers.torchserve import TorchServe
    from course_utils.servers.triton import TritonServer

What is here, one concern a module:

* `lifecycle`: `Server`, the base every server builds on: start and stop, readiness that
  proves the answering process is the server's own, `check()`/`problem()` errors that name
  their cause, `describe()` and `log_tail()`, and the registry of this kernel's servers;
* `watchdog`: the separate process that stops a kernel's servers when the kernel dies;
* `ports`: free ports on 127.0.0.1, and waiting for something to become true;
* `torchserve` and `torchserve_external`: TorchServe launched here, and the half that uses
  one running elsewhere (TORCHSERVE_URL, the GPU docker stack);
* `triton`, `triton_external` and `triton_serving_copy`: tritonserver launched here, the
  half that uses one running elsewhere (TRITON_URL), and the serving copy the CPU-only
  embedded server reads.

A new server is one module here: a `Server` subclass that says how to launch it
(`_launch`, `_terminate`), which process and logs are its own and which address proves it
ready; lifetime, port ownership, the watchdog, `describe()` and `log_tail()` come from the
base. CONTRIBUTING.md walks through it.
"""
