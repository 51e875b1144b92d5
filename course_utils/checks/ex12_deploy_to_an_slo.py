"""Graders for ex12_deploy_to_an_slo, the capstone: the digit classifier deployed on TorchServe or Triton, judged
under a live load against an SLO, with hostile inputs in the load, and the learner's own alert rules.

The learner writes the deployment (a TorchServe model store with digits.mar, or a Triton model repository with a
model `digits`) and a Prometheus rules file. The grader starts the server itself with the course's safe defaults
(127.0.0.1, TorchServe's token auth, Triton's keyed control API, both tied to the kernel) and its own Prometheus
(1 s scrapes and rule evaluations, the learner's rules loaded once promtool accepts them), then:

1. checks that 50 held-out digits get the model's own answer;
2. runs CONCURRENCY closed-loop clients for LOAD_S seconds (at most CONCURRENCY requests in flight), and during it
   sends every hostile input of the server's kind, twice (at HOSTILE_AT_S): each must get a 4xx with a message,
   and the server's processes stay the same;
3. judges the load against the SLO: p99 <= P99_SLO_MS and at least MIN_RPS answered requests per second, with
   zero errors, as the client measures them (what a user sees). A run that misses is measured once more, without
   the hostile inputs, and the second run is judged: a busy moment of the machine is not the deployment's fault;
4. reads the alerts every second during the load and once more 3 s after it: none may fire, and none may still
   be pending at the end;
5. injects a fault while requests go on: the model `digits` is removed (Triton's keyed unload; TorchServe's
   management DELETE), as a bad rollout would, so every request fails; an alert that was quiet before must fire
   within FIRE_WITHIN_S seconds.

On this course's 2-core machine, with one core kept busy by another process, the reference Triton deployment
(lesson 17's pixel_check ensemble in front of the CNN) served about 430 requests/s at p99 about 20 ms, and the
reference TorchServe deployment (lesson 02's handler with one torch thread, one worker) about 250-290 requests/s at
p99 about 30 ms; their alerts fired about 4 s (Triton: the model's series gone) and 13 s (TorchServe: 4xx with no
answered request over 10 s) after the fault. Lesson 02's handler as it is (torch's thread per core) served about
30 requests/s at p99 about 200 ms there: its threads wait for each other beside the busy process. In a clean
clone's full `make test`, with the other test worker running a lesson, the TorchServe reference's p99 reached
56 ms: the SLO's 100 ms leaves room for a busy laptop, and a batch delay still misses its throughput by far.
"""

from __future__ import annotations

import json
import os
import subprocess
import threading
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import requests
import torch
import yaml

from ..archiver import archive_contents
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
LOAD_S = 12              # seconds of the healthy load
HOSTILE_AT_S = (3, 7)    # the hostile inputs go in twice, as bad input keeps coming: a counter that first appears
                         # with a value (TorchServe's Requests4XX) shows an increase only from its second round
P99_SLO_MS = 100.0       # the SLO: p99 of the good requests' latency, as the client measures it ...
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
    """One digit as the bytes of a PNG file (what a TorchServe client sends)."""
    return digit_to_png(pixels, folder / f"digit_{index:02d}.png").read_bytes()


def _v2_body(pixels: np.ndarray, datatype: str = "FP32") -> dict[str, Any]:
    """A KServe v2 JSON request for the model `digits`: one input__0 tensor, a batch of one."""
    return {"inputs": [{"name": "input__0", "shape": [1, *pixels.shape], "datatype": datatype,
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

    def post(self, session: Any, body: dict[str, Any], timeout_s: float = 30) -> requests.Response:
        """Send one request body (keyword arguments for requests.post, with headers of its own) with `session`."""
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
    """Start the server `kind` on the learner's folder for the grading session; a Fail says what is missing."""
    for variable in ("TORCHSERVE_URL", "TRITON_URL"):
        expect(not os.environ.get(variable), f"{variable} is set: the grader starts a server of its own (its fault "
               f"removes the model), so unset it for grading (`%env {variable}=` in a cell) and run the cell again")
    if kind == "torchserve":
        mars = sorted(p.name for p in folder.glob("*.mar"))
        expect(f"{MODEL}.mar" in mars, f"the model store holds {mars}, not {MODEL}.mar: archive the model as "
               f"`torch-model-archiver --model-name {MODEL} ... --export-path <folder>`")
        name = archive_contents(folder / f"{MODEL}.mar")[1].get("model", {}).get("modelName")
        expect(name == MODEL, f"{MODEL}.mar holds a model named {name!r}: archive it with --model-name {MODEL}")
        try:
            # The management API's register and delete on (token-protected): the fault removes the model
            return grading.serve(TorchServe(folder, work / "server", models=[f"{MODEL}.mar"], enable_model_api=True))
        except (RuntimeError, TimeoutError) as error:
            raise Fail(f"TorchServe could not serve {MODEL}.mar: {' '.join(str(error).split())[:300]}") from None
    expect((folder / MODEL / "config.pbtxt").is_file(), f"there is no {MODEL}/config.pbtxt in the model repository "
           f"{folder}: write the model Triton serves as `{MODEL}` there (its steps beside it)")
    # Triton's latency summaries on, as in lesson 22: an alert may read the p99 from nv_inference_request_summary_us
    return serve_for_grading(grading, folder, work, MODEL, extra_args=["--metrics-config=summary_latencies=true"])


def _read_rules(text: Any, path: Path) -> list[dict[str, Any]]:
    """Write the learner's rules to `path`, have promtool check them; return the alerting rules (Fail if none)."""
    expect(isinstance(text, str) and text.strip(), "return your alert rules as a string: Prometheus' rules YAML "
           "(groups: - name: ... rules: - alert: ...)")
    path.write_text(text)
    result = subprocess.run([prometheus_binary("promtool"), "check", "rules", str(path)],
                            capture_output=True, text=True, timeout=60)
    reason = (result.stderr.strip() or result.stdout.strip()).replace(str(path), "rules.yml")
    expect(result.returncode == 0, f"promtool check rules refuses them: {reason[:400]}")
    try:
        documents = [d for d in yaml.safe_load_all(text) if d is not None]
    except yaml.YAMLError as error:
        raise Fail(f"the rules are not YAML: {' '.join(str(error).split())[:200]}") from None
    expect(len(documents) == 1 and isinstance(documents[0], dict) and isinstance(documents[0].get("groups"), list),
           f"the rules file holds {len(documents)} YAML documents: Prometheus reads one, a map with `groups:`")
    alerts = [rule for group in documents[0]["groups"] if isinstance(group, dict)
              for rule in group.get("rules") or [] if isinstance(rule, dict) and "alert" in rule]
    expect(alerts, "the rules hold no alerting rule (`- alert: <Name>` with `expr:`): recording rules never page")
    return alerts


def _active(prometheus: Prometheus) -> list[dict[str, Any]]:
    """The alerts pending or firing now: name, state and labels (without alertname)."""
    return [{"name": a["name"], "state": a["state"], "labels": {k: v for k, v in a["labels"].items()
                                                               if k != "alertname"}}
            for a in prometheus.alerts()]


def _key(alert: dict[str, Any]) -> tuple:
    return alert["name"], tuple(sorted(alert["labels"].items()))


def _rules_now(prometheus: Prometheus, rules: list[dict[str, Any]]) -> tuple[str, str]:
    """What each alerting rule's expression returns now and each alert's state, and the advice that follows."""
    active = {a["name"]: a["state"] for a in _active(prometheus)}
    parts, advice = [], ""
    for rule in rules:
        try:
            values = [round(float(s["value"][1]), 3) for s in prometheus.query(str(rule["expr"]))]
        except Exception as error:   # noqa: BLE001 - a scalar, a string or a refused query: say so, go on
            values = [f"error: {error}"]
        state = active.get(rule["alert"], "inactive")
        parts.append(f"{rule['alert']}: {state}, its expr returns " + (f"{values}" if values else "no series"))
        if state == "pending":
            advice = (f"{rule['alert']} is pending: its expression is true, but its `for:` ({rule.get('for', '0s')}) "
                      "or its window is too long to fire in time")
    return "; ".join(parts), advice


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
    report = measured if measured is not None else {}

    def kind() -> str:
        """The server deploy() named ("" before it ran)."""
        return found.get("kind", "")

    def serves() -> None:
        folder = empty_dir(work / "yours" / "deployment")   # deploy() may write beside it, in yours/
        server = deploy(folder)
        server = server.strip().lower() if isinstance(server, str) else server
        expect(server in SERVERS, f"deploy() returned {server!r}: return the server that serves your deployment, "
               f"one of {SERVERS}")
        found["kind"] = server
        started = _start_server(server, folder, work, grading)
        found["deployment"] = _Deployment(server, started, work)
        try:
            found["rules"] = _read_rules(alert_rules(), work / "rules.yml")
        except Fail as problem:   # judged by 12.5 and 12.6: the deployment is graded without them
            found["rules_problem"] = str(problem)
        except Exception as error:   # noqa: BLE001 - the learner's alert_rules() raised
            found["rules_problem"] = f"alert_rules() raised {type(error).__name__}: {error}"
        rule_files = [work / "rules.yml"] if "rules" in found else []
        found["prometheus"] = prometheus = grading.serve(Prometheus(
            work / "prometheus", targets={server: started.metrics_url}, rule_files=rule_files, use_external=False))
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

    def send_hostile(deployment: _Deployment) -> dict[str, tuple[int | str, str]]:
        """Each hostile input once: name -> (HTTP status, or the client's error, and the message)."""
        answers = {}
        with requests.Session() as session:
            for name, body in deployment.hostile.items():
                try:
                    response = deployment.post(session, body, timeout_s=10)
                    answers[name] = (response.status_code, error_message(response))
                except requests.RequestException as error:
                    answers[name] = (type(error).__name__, "no answer (did the server or a worker crash?)")
        return answers

    def healthy_run() -> None:
        """The load, the hostile inputs in its middle, the alerts read every second; kept for 12.3-12.5."""
        deployment, prometheus = found["deployment"], found["prometheus"]
        found["pids_before"] = sorted(deployment.server.pids())
        outcome: dict[str, LoadResult] = {}
        loader = threading.Thread(target=lambda: outcome.update(
            load=run_load_for(deployment.send_next, LOAD_S, CONCURRENCY, label=kind())))
        seen: list[dict[str, Any]] = []
        loader.start()
        try:
            start = time.monotonic()
            while loader.is_alive():
                rounds = found.setdefault("refused", [])
                if len(rounds) < len(HOSTILE_AT_S) and time.monotonic() - start > HOSTILE_AT_S[len(rounds)]:
                    rounds.append(send_hostile(deployment))
                seen += [a for a in _active(prometheus) if a["state"] == "firing"]
                time.sleep(1)
        finally:
            loader.join()
            found["load"] = outcome.get("load")
        time.sleep(3)   # more scrapes and rule evaluations after the load
        found.update(firing=seen, at_end=_active(prometheus), pids_after=sorted(deployment.server.pids()))

    def ran() -> None:
        if "load" not in found:
            healthy_run()

    def hostile_refused() -> None:
        ran()
        expect(len(found.get("refused", [])) == len(HOSTILE_AT_S), "the load ended before the hostile inputs were sent")
        for name, (status, message) in [item for answers in found["refused"] for item in answers.items()]:
            expect(isinstance(status, int) and 400 <= status < 500,
                   f"hostile input '{name}' got {status} ({message[:120]!r}); it must get a 4xx that says what was "
                   "wrong: " + ("refuse it in the handler (lesson 02's BatchSafeHandler: BadRequest is a 4xx for that "
                                "request only)" if kind() == "torchserve" else
                                "check the pixels before the model (lesson 17's pixel_check step in an ensemble "
                                "answers a value outside [0, 1] with a 400)"))
            expect(message.strip(), f"hostile input '{name}' got HTTP {status} with no message: say what was wrong "
                   "and what is expected")
        expect(found["pids_after"] == found["pids_before"],
               f"the server's processes changed during the load (PIDs {found['pids_before']} -> "
               f"{found['pids_after']}): a hostile input killed a worker")

    def slo_advice() -> str:
        batch = ("look for a batch delay: a batcher that waits for a full batch holds every request that long when "
                 f"fewer than a batch are in flight (the grader's {CONCURRENCY} clients never have more than "
                 f"{CONCURRENCY} requests out)")
        if kind() == "torchserve":
            return (f"{batch}; TorchServe's maxBatchDelay is 100 ms unless model-config.yaml sets it. And look for "
                    "threads that fight over the cores: one torch thread per worker (torch.set_num_threads(1) in "
                    "the handler's initialize, lesson 12)")
        return (f"{batch}; Triton's max_queue_delay_microseconds. And look for instances that fight over the "
                "cores (instance_group count, lesson 21)")

    def meets_slo() -> None:
        ran()
        load = found["load"]
        if load.failures or load.percentile(99) > P99_SLO_MS or load.throughput < MIN_RPS:
            found["first_run"] = load.summary()   # measured once more, without the hostile inputs
            load = run_load_for(found["deployment"].send_next, LOAD_S, CONCURRENCY, label=kind())
        p99, rps = load.percentile(99), load.throughput
        runs = " (the second of two runs)" if "first_run" in found else ""
        report.update(server=kind(), p99_ms=round(p99, 1), requests_per_s=round(rps),
                      errors=sum(load.failures.values()), measured_twice="first_run" in found)
        expect(not load.failures, f"{sum(load.failures.values())} of the load's good requests failed "
               f"({load.failures}); the SLO allows none")
        expect(rps >= MIN_RPS, f"{rps:.0f} requests/s answered by {CONCURRENCY} clients (p99 {p99:.1f} ms){runs}; "
               f"the SLO needs at least {MIN_RPS:.0f}: {slo_advice()}")
        expect(p99 <= P99_SLO_MS, f"p99 {p99:.1f} ms at {rps:.0f} requests/s{runs}; the SLO is "
               f"{P99_SLO_MS:g} ms: {slo_advice()}")

    def silent_while_healthy() -> None:
        expect("rules" in found, found.get("rules_problem", ""))
        ran()
        fired = {a["name"]: a["labels"] for a in found["firing"]}
        expect(not fired, f"alerts fired while the deployment met its SLO: {fired}. Alert on what hurts users (no "
               "answers, server errors, a slow p99), not on hostile requests that were rightly refused with a 4xx")
        pending = {a["name"]: a["labels"] for a in found["at_end"]}
        expect(not pending, f"alerts were pending at the end of a healthy run and would fire if it went on: "
               f"{pending}. Alert on what hurts users, not on refused bad input or on traffic itself")

    def fires_on_fault() -> None:
        expect("rules" in found, found.get("rules_problem", ""))
        ran()
        deployment, prometheus = found["deployment"], found["prometheus"]
        quiet_before = {_key(a) for a in found["firing"] + found["at_end"]}   # an always-on alert does not count
        stop = threading.Event()
        # two clients with a short timeout, as a user's client has: TorchServe never answers a request that was
        # queued when its model was removed
        sender = threading.Thread(target=run_load_for, args=(lambda session: deployment.send_next(session, 2),
                                                             FIRE_WITHIN_S + 60, 2), kwargs={"stop": stop})
        sender.start()
        try:
            time.sleep(1)
            deployment.remove_model()
            removed = time.monotonic()
            fired: list[dict[str, Any]] = []
            while not fired and time.monotonic() - removed < FIRE_WITHIN_S:
                time.sleep(0.5)
                fired = [a for a in _active(prometheus) if a["state"] == "firing" and _key(a) not in quiet_before]
            after = time.monotonic() - removed
        finally:
            stop.set()
            sender.join()
        if fired:
            report.update(fired=sorted({a["name"] for a in fired}), fired_after_s=round(after, 1))
            return
        now, advice = _rules_now(prometheus, found["rules"])
        server_advice = ("Triton does not count requests for a model it does not have: alert on the model's series "
                         "disappearing (lesson 22's TritonModelGone), not on nv_inference_request_failure"
                         if kind() == "triton" else
                         "TorchServe answers a removed model with 404: alert on requests that get no answer from "
                         "the model (Requests4XX rising while ts_inference_requests_total stands still), not on "
                         "5xx only")
        raise Fail(f"no alert fired within {FIRE_WITHIN_S:g} s of the model's removal, while every request failed "
                   f"({now}). {advice or server_advice}")

    checks = [RUBRIC.check("12.1", "the deployment starts on the server deploy() names", serves),
              RUBRIC.check("12.2", f"{ANSWERS} held-out digits get the model's own answers", answers_right, ("12.1",)),
              RUBRIC.check("12.3", "every hostile input, sent during the load, gets a 4xx with a message, and no "
                           "process dies", hostile_refused, ("12.2",)),
              RUBRIC.check("12.4", f"{CONCURRENCY} clients for {LOAD_S} s: p99 <= {P99_SLO_MS:g} ms at >= "
                           f"{MIN_RPS:g} requests/s, zero errors", meets_slo, ("12.2",)),
              RUBRIC.check("12.5", "your alert rules load, and none fires (or is pending) while the SLO is met",
                           silent_while_healthy, ("12.2",)),
              RUBRIC.check("12.6", f"an alert fires within {FIRE_WITHIN_S:g} s of the model's removal",
                           fires_on_fault, ("12.2",))]
    return grading.run(checks, show=show)
