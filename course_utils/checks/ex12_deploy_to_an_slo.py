"""Graders for ex12_deploy_to_an_slo, the capstone: the digit classifier deployed on TorchServe or Triton, judged
under a live load against an SLO, with hostile inputs in the load, and the learner's own alert rules.

The learner writes the deployment (a TorchServe model store with digits.mar, or a Triton model repository with a
model `digits`) and a Prometheus rules file. The grader starts the server itself with the course's safe defaults
(127.0.0.1, TorchServe's token auth, Triton's keyed control API, both tied to the kernel) and its own Prometheus
(1 s scrapes and rule evaluations, the learner's rules loaded), then:

1. checks that 50 held-out digits get the model's own answer;
2. runs CONCURRENCY clients for LOAD_S seconds, and in the middle sends every hostile input of the server's kind
   (each must get a 4xx with a message, the server's processes stay the same, and no good request fails);
3. judges the load against the SLO: p99 <= P99_SLO_MS and at least MIN_RPS answered requests per second, with
   zero errors (measured by the client, which is what a user sees);
4. reads the alerts during and after the healthy run: none may fire (or still be pending at its end);
5. injects a fault while the load goes on: the model is removed (Triton's keyed unload; TorchServe's
   management DELETE), as a bad rollout would, so every request fails; one of the learner's alerts must fire
   within FIRE_WITHIN_S seconds.

   The fault-phase clients give up after 2 s, as a user's client would. With 30 s, in one run of four here,
   they sent almost nothing after the removal: TorchServe left the requests it held at that moment unanswered.

On this course's 2-core machine, with one core kept busy by another process, the reference Triton deployment
(lesson 17's pixel_check ensemble in front of the CNN) served about 430 requests/s at p99 about 20 ms, and the
reference TorchServe deployment (lesson 02's handler with one torch thread, one worker) about 250-290 requests/s at
p99 about 30 ms; their alerts fired about 4 s (Triton: the model's series gone) and 13 s (TorchServe: 4xx with no
answered request over 10 s) after the fault. Lesson 02's handler as it is (torch's thread per core) served about
30 requests/s at p99 about 200 ms there: its threads wait for each other beside the busy process.
"""

from __future__ import annotations

import json
import subprocess
import threading
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import requests
import torch
import yaml

from ..data import digit_to_png
from ..hostile_inputs import digit_hostile_inputs, error_message
from ..loadtest import LoadResult, run_load_for
from ..machinery.grading import Fail, GradingSession, Rubric, Verdict, expect
from ..models import load_digit_cnn
from ..paths import empty_dir
from ..servers.prometheus import Prometheus, prometheus_binary
from ..servers.torchserve import TorchServe
from .live_triton import serve_for_grading

MODEL = "digits"
SERVERS = ("triton", "torchserve")
CONCURRENCY = 4          # clients of the grader's load, each sending its next request when the last is answered
LOAD_S = 12              # seconds of the healthy load; the hostile inputs go in after HOSTILE_AFTER_S
HOSTILE_AFTER_S = 3
P99_SLO_MS = 50.0        # the SLO: p99 of the good requests' latency, as the client measures it ...
MIN_RPS = 100.0          # ... at at least this many answered requests per second ...
FIRE_WITHIN_S = 30.0     # ... and after the fault, one of your alerts fires within this many seconds
ANSWERS = 50             # held-out digits whose answers must be the model's own

# check id -> points: the answer key
RUBRIC = Rubric({"12.1": 1, "12.2": 1, "12.3": 2, "12.4": 2, "12.5": 2, "12.6": 2})


def _digits() -> tuple[np.ndarray, np.ndarray]:
    """ANSWERS held-out digits as the server receives them (pixels in [0, 1], quantized as a PNG holds them)
    and the digit the model in-process names for each."""
    trained = load_digit_cnn()
    pixels = np.round(trained.data.x_test[:ANSWERS] * 255) / 255
    with torch.no_grad():
        named = trained.model(torch.from_numpy(pixels.astype(np.float32))).argmax(1).numpy()
    return pixels.astype(np.float32), named


def _png(pixels: np.ndarray, folder: Path, index: int) -> bytes:
    return digit_to_png(pixels, folder / f"digit_{index:02d}.png").read_bytes()


def _v2_body(pixels: np.ndarray, datatype: str = "FP32", shape: list[int] | None = None) -> dict[str, Any]:
    """A KServe v2 JSON request for the model `digits`: one input__0 tensor."""
    shape = shape or [1, *pixels.shape]
    return {"inputs": [{"name": "input__0", "shape": shape, "datatype": datatype,
                        "data": np.asarray(pixels).ravel().tolist()}]}


def _nan_body(pixels: np.ndarray) -> dict[str, Any]:
    """A digit with one NaN pixel, sent as binary tensor data (JSON cannot hold NaN)."""
    raw = pixels.copy()
    raw[0, 3, 3] = np.nan
    header = json.dumps({"inputs": [{"name": "input__0", "shape": [1, 1, 8, 8], "datatype": "FP32",
                                     "parameters": {"binary_data_size": raw.nbytes}}]}).encode()
    return {"data": header + raw.tobytes(), "headers": {"Inference-Header-Content-Length": str(len(header)),
                                                         "Content-Type": "application/octet-stream"}}


def triton_hostile_inputs(pixels: np.ndarray) -> dict[str, dict[str, Any]]:
    """Name -> keyword arguments for requests.post to /v2/models/digits/infer: bad requests for a digit model.

    Triton itself refuses a wrong shape, datatype or name; pixel values outside [0, 1] (a
    client that forgot to scale 0-255 pixels, a negative value, a NaN) reach the model, which must refuse them.
    Broken JSON is left out: Triton 2.51 answers it with HTTP 500, whatever the deployment.
    Internal helper: no lesson calls it.
    """
    return {
        "pixels 0-255 (not scaled to [0, 1])": {"json": _v2_body(pixels * 255)},
        "a negative pixel": {"json": _v2_body(pixels - 0.5)},
        "a NaN pixel": _nan_body(pixels),
        "28x28 image (wrong shape)": {"json": _v2_body(np.zeros((1, 28, 28), np.float32))},
        "INT64 pixels (wrong datatype)": {"json": _v2_body(np.zeros((1, 8, 8), np.int64), datatype="INT64")},
        "input named 'image'": {"json": {"inputs": [{**_v2_body(pixels)["inputs"][0], "name": "image"}]}},
    }


class _Deployment:
    """What the grader needs of either server: how to send a digit, how to send a hostile body, who serves."""

    def __init__(self, kind: str, server: Any, work: Path) -> None:
        self.kind, self.server = kind, server
        self.pixels, self.named = _digits()
        if kind == "torchserve":
            self.url = f"{server.inference_url}/predictions/{MODEL}"
            self.headers = server.headers("inference")
            folder = empty_dir(work / "pngs")
            self.bodies = [{"data": _png(p, folder, i)} for i, p in enumerate(self.pixels)]
            self.hostile = digit_hostile_inputs()
        else:
            self.url = f"http://{server.http_url}/v2/models/{MODEL}/infer"
            self.headers = {}
            self.bodies = [{"json": _v2_body(p)} for p in self.pixels]
            self.hostile = triton_hostile_inputs(self.pixels[0])
        self._next = 0
        self._lock = threading.Lock()

    def post(self, session: requests.Session | Any, body: dict[str, Any], timeout_s: float = 30) -> requests.Response:
        headers = {**self.headers, **body.get("headers", {})}
        return session.post(self.url, timeout=timeout_s, headers=headers,
                            **{key: value for key, value in body.items() if key != "headers"})

    def send_next(self, session: requests.Session, timeout_s: float = 30) -> requests.Response:
        """One good request: the next digit in turn."""
        with self._lock:
            body = self.bodies[self._next % len(self.bodies)]
            self._next += 1
        return self.post(session, body, timeout_s)

    def answer(self, response: requests.Response) -> int | None:
        """The digit an answer names (None when it names none)."""
        try:
            body = response.json()
            if self.kind == "torchserve":
                return int(body["predictions"][0]["class_id"])
            logits = next(o for o in body["outputs"] if o["name"] == "output__0")["data"]
            return int(np.argmax(logits))
        except (ValueError, KeyError, IndexError, TypeError, StopIteration):
            return None

    def remove_model(self) -> None:
        """The fault: the model goes away, as a bad rollout would remove it."""
        if self.kind == "torchserve":
            answer = requests.delete(f"{self.server.management_url}/models/{MODEL}",
                                     headers=self.server.headers("management"), timeout=30)
            answer.raise_for_status()
        else:
            self.server.unload(MODEL)


def _start_server(kind: str, folder: Path, work: Path, grading: GradingSession) -> Any:
    if kind == "torchserve":
        mars = sorted(p.name for p in folder.glob("*.mar"))
        expect(f"{MODEL}.mar" in mars, f"the model store holds {mars}, not {MODEL}.mar: archive the model as "
               f"`torch-model-archiver --model-name {MODEL} ... --export-path <folder>`")
        try:
            # The management API's register and delete on (token-protected): the fault removes the model
            return grading.serve(TorchServe(folder, work / "server", models=[f"{MODEL}.mar"], enable_model_api=True))
        except (RuntimeError, TimeoutError) as error:
            raise Fail(f"TorchServe could not serve {MODEL}.mar: {' '.join(str(error).split())[:300]}") from None
    expect((folder / MODEL / "config.pbtxt").is_file(), f"there is no {MODEL}/config.pbtxt in the model repository "
           f"{folder}: write the model Triton serves as `{MODEL}` there (its steps beside it)")
    # Triton's latency summaries on, as in lesson 22: an alert may read the p99 from nv_inference_request_summary_us
    return serve_for_grading(grading, folder, work, MODEL, extra_args=["--metrics-config=summary_latencies=true"])


def _check_rules(text: Any, path: Path) -> list[dict[str, Any]]:
    expect(isinstance(text, str) and text.strip(), "return your alert rules as a string: Prometheus' rules YAML "
           "(groups: - name: ... rules: - alert: ...)")
    path.write_text(text)
    result = subprocess.run([prometheus_binary("promtool"), "check", "rules", str(path)],
                            capture_output=True, text=True, timeout=60)
    reason = (result.stderr.strip() or result.stdout.strip()).replace(str(path), "rules.yml")
    expect(result.returncode == 0, f"promtool check rules refuses them: {reason[:400]}")
    alerts = [rule for group in yaml.safe_load(text).get("groups") or [] for rule in group.get("rules") or []
              if "alert" in rule]
    expect(alerts, "the rules hold no alerting rule (`- alert: <Name>` with `expr:`): recording rules never page")
    return alerts


def _rules_now(prometheus: Prometheus, rules: list[dict[str, Any]]) -> str:
    """What each alerting rule's expression returns now, and each alert's state: why one did not fire."""
    active = {a["name"]: a["state"] for a in _active(prometheus)}
    parts = []
    for rule in rules:
        try:
            values = [round(float(s["value"][1]), 3) for s in prometheus.query(rule["expr"])]
        except (ValueError, KeyError) as error:
            values = [f"error: {error}"]
        parts.append(f"{rule['alert']}: {active.get(rule['alert'], 'inactive')}, its expr returns "
                     + (f"{values}" if values else "no series"))
    return "; ".join(parts)


def _active(prometheus: Prometheus) -> list[dict[str, Any]]:
    return [{"name": a["name"], "state": a["state"], "labels": {k: v for k, v in a["labels"].items()
                                                               if k != "alertname"}}
            for a in prometheus.alerts()]


def grade(deploy: Callable[[Path], str], alert_rules: Callable[[], str], work: Path, show: bool = True,
          measured: dict[str, Any] | None = None) -> list[Verdict]:
    """deploy(folder) writes a deployment and names its server; it serves the model's answers, refuses hostile
    input and meets the SLO under a live load, and the alert_rules() stay silent while it does and fire when the
    model is removed. What was measured (p99, requests/s, which alert fired and when) goes into `measured`.

    Introduced in ex12_deploy_to_an_slo.
    """
    work = empty_dir(work)
    grading = GradingSession()
    found = grading.found
    kind = lambda: found.get("kind", "")   # noqa: E731 - the server deploy() named
    report = measured if measured is not None else {}

    def serves() -> None:
        folder = empty_dir(work / "deployment")
        server = deploy(folder)
        expect(server in SERVERS, f"deploy() returned {server!r}: return the server that serves your deployment, "
               f"one of {SERVERS}")
        found["kind"] = server
        found["rules"] = _check_rules(alert_rules(), work / "rules.yml")
        started = _start_server(server, folder, work, grading)
        found["deployment"] = deployment = _Deployment(server, started, work)
        targets = {server: started.metrics_url}
        found["prometheus"] = prometheus = grading.serve(
            Prometheus(work / "prometheus", targets=targets, rule_files=[work / "rules.yml"], use_external=False))
        prometheus.wait_for_targets()

    def answers_right() -> None:
        deployment = found["deployment"]
        with requests.Session() as session:
            for index, body in enumerate(deployment.bodies):
                response = deployment.post(session, body)
                expect(response.status_code == 200, f"a held-out digit got HTTP {response.status_code}: "
                       f"{error_message(response)[:200]}")
                got, want = deployment.answer(response), int(deployment.named[index])
                expect(got == want, f"digit {index} was answered {got}, the model in-process says {want}: "
                       + ("the answer must be the handler's JSON {\"predictions\": [{\"class_id\": ...}, ...]}, best "
                          "first" if kind() == "torchserve" else
                          "output__0 must be the model's 10 logits for input__0 [1, 1, 8, 8] (pixels in [0, 1])"))

    def load_with_hostile_inputs() -> None:
        deployment, prometheus = found["deployment"], found["prometheus"]
        pids_before = sorted(deployment.server.pids())
        outcome: dict[str, LoadResult] = {}
        loader = threading.Thread(target=lambda: outcome.update(
            load=run_load_for(deployment.send_next, LOAD_S, CONCURRENCY, label=kind())))
        loader.start()
        seen: list[dict[str, Any]] = []
        start = time.monotonic()
        refused: dict[str, requests.Response] = {}
        while loader.is_alive():
            if not refused and time.monotonic() - start > HOSTILE_AFTER_S:
                with requests.Session() as session:
                    refused = {name: deployment.post(session, body) for name, body in deployment.hostile.items()}
            seen += [a for a in _active(prometheus) if a["state"] == "firing"]
            time.sleep(1)
        loader.join()
        time.sleep(3)   # two more scrapes and rule evaluations after the load
        found.update(load=outcome["load"], firing=seen, at_end=_active(prometheus),
                     pids_after=sorted(deployment.server.pids()), pids_before=pids_before, refused=refused)

    def hostile_refused() -> None:
        if "load" not in found:
            load_with_hostile_inputs()
        for name, response in found["refused"].items():
            expect(400 <= response.status_code < 500,
                   f"hostile input '{name}' got HTTP {response.status_code} ({error_message(response)[:120]!r}); "
                   "it must get a 4xx that says what was wrong: "
                   + ("refuse it in the handler (lesson 02's BatchSafeHandler: BadRequest is a 4xx for that "
                      "request only)" if kind() == "torchserve" else
                      "check the pixels before the model (lesson 17's pixel_check step in an ensemble answers "
                      "a value outside [0, 1] with a 400)"))
            expect(error_message(response).strip(), f"hostile input '{name}' got HTTP {response.status_code} with "
                   "an empty body: say what was wrong and what is expected")
        expect(found["pids_after"] == found["pids_before"],
               f"the server's processes changed during the load (PIDs {found['pids_before']} -> "
               f"{found['pids_after']}): a hostile input killed a worker")
        failures = found["load"].failures
        expect(not failures, f"good requests failed while the hostile inputs were sent: {failures}")

    def meets_slo() -> None:
        if "load" not in found:
            load_with_hostile_inputs()
        load = found["load"]
        expect(not load.failures, f"{sum(load.failures.values())} of the load's requests failed ({load.failures}); "
               "the SLO allows none")
        p99, rps = load.percentile(99), load.throughput
        report.update(server=kind(), p99_ms=round(p99, 1), requests_per_s=round(rps),
                      errors=sum(load.failures.values()))
        advice = ("look for a batch delay (a batcher that waits for a full batch holds every request that long when "
                  f"fewer than a batch are in flight: TorchServe's maxBatchDelay, 100 ms unless set; Triton's "
                  "max_queue_delay_microseconds), and for threads that fight over the cores (one torch thread per "
                  "worker or instance: torch.set_num_threads(1) in a handler's initialize, lesson 12)")
        expect(rps >= MIN_RPS, f"{rps:.0f} requests/s answered by {CONCURRENCY} clients (p99 {p99:.1f} ms); the SLO "
               f"needs at least {MIN_RPS:.0f}: {advice}")
        expect(p99 <= P99_SLO_MS, f"p99 {p99:.1f} ms at {rps:.0f} requests/s; the SLO is {P99_SLO_MS:g} ms: {advice}")

    def silent_while_healthy() -> None:
        if "load" not in found:
            load_with_hostile_inputs()
        fired = {a["name"]: a["labels"] for a in found["firing"]}
        expect(not fired, f"alerts fired while the deployment met its SLO: {fired}. Alert on what hurts users (no "
               "answers, server errors, a slow p99), not on hostile requests that were rightly refused with a 4xx")
        pending = {a["name"]: a["labels"] for a in found["at_end"]}
        expect(not pending, f"alerts were pending at the end of a healthy run and would fire if it went on: "
               f"{pending}. Alert on what hurts users, not on refused bad input or on traffic itself")

    def fires_on_fault() -> None:
        deployment, prometheus = found["deployment"], found["prometheus"]
        stop = threading.Event()

        def keep_sending() -> None:
            with requests.Session() as session:
                while not stop.is_set():
                    try:   # a short timeout, as a user's client has: TorchServe never answers a request that
                        deployment.send_next(session, timeout_s=2)   # was queued when its model was removed
                    except requests.RequestException:
                        time.sleep(0.05)

        senders = [threading.Thread(target=keep_sending) for _ in range(2)]
        for sender in senders:
            sender.start()
        try:
            time.sleep(1)
            deployment.remove_model()
            removed = time.monotonic()
            fired: list[dict[str, Any]] = []
            while not fired and time.monotonic() - removed < FIRE_WITHIN_S:
                time.sleep(0.5)
                fired = [a for a in _active(prometheus) if a["state"] == "firing"]
            after = time.monotonic() - removed
        finally:
            stop.set()
            for sender in senders:
                sender.join()
        expect(fired, f"no alert fired within {FIRE_WITHIN_S:g} s of the model's removal, while every request "
               f"failed ({_rules_now(prometheus, found['rules'])}). "
               + ("Triton does not count requests for a model it does not have: alert on the model's series "
                  "disappearing (lesson 22's TritonModelGone), not on nv_inference_request_failure"
                  if kind() == "triton" else
                  "TorchServe answers a removed model with 404: alert on requests that get no answer from the model "
                  "(Requests4XX rising while ts_inference_requests_total stands still), not on 5xx only")
               + "; and keep windows and `for:` short enough to fire within the limit")
        report.update(fired=sorted({a["name"] for a in fired}), fired_after_s=round(after, 1))

    checks = [RUBRIC.check("12.1", "the deployment starts on the server deploy() names, and Prometheus loads your "
                           "alert rules", serves),
              RUBRIC.check("12.2", f"{ANSWERS} held-out digits get the model's own answers", answers_right, ("12.1",)),
              RUBRIC.check("12.3", "every hostile input gets a 4xx with a message, during the load, and nothing else "
                           "fails", hostile_refused, ("12.2",)),
              RUBRIC.check("12.4", f"{CONCURRENCY} clients for {LOAD_S} s: p99 <= {P99_SLO_MS:g} ms at >= "
                           f"{MIN_RPS:g} requests/s, zero errors", meets_slo, ("12.2",)),
              RUBRIC.check("12.5", "no alert fires (or is pending) while the SLO is met", silent_while_healthy,
                           ("12.2",)),
              RUBRIC.check("12.6", f"an alert fires within {FIRE_WITHIN_S:g} s of the model's removal",
                           fires_on_fault, ("12.5",))]
    return grading.run(checks, show=show)
