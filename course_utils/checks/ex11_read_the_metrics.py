"""Graders for ex11_read_the_metrics: PromQL for a Triton model's success rate, error ratio, mean queue time,
batch size and p99, judged against a live Triton and a real Prometheus.

The grader serves two copies of a small faulty model (triton_models/faulty_identity.py: it fails every request of
a batch that holds a negative value, and Triton counts those failures), the graded one and a neighbour under
another load. Its own Prometheus scrapes them every second. The load has two phases: 4 s of one client, then 8 s
of 5 clients with one row per request, 1 with two rows (so inferences differ from requests), 2 with negative
values, and 2 on the neighbour. Then each learner's query runs for the graded model over WINDOW and for the
neighbour over OTHER_WINDOW (a model name or window written into the query fails), at the same instant as the
reference queries, over the same samples; the numbers must agree within TOLERANCE. Each query must return one
number (a series or a scalar); a wrong one is told what its number looks like (a counter read without rate(),
microseconds, a ratio upside down, inferences for requests, every model summed).
"""

from __future__ import annotations

import re
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable

import requests

from ..loadtest import run_load_for
from ..machinery.grading import GradingSession, Rubric, Verdict, expect
from ..paths import PACKAGE_DIR, empty_dir
from ..servers.prometheus import Prometheus
from ..servers.triton import TritonServer
from ..triton_config import io_tensor, model_config, write_python_model

MODEL = "graded_digits"     # the model the queries are asked about
NEIGHBOUR = "neighbour"     # another copy of it, under a lighter load
WINDOW = "6s"               # the window the grader passes to the queries for MODEL
OTHER_WINDOW = "5s"         # and for NEIGHBOUR
QUIET_S = 4                 # seconds of a light load first (1 client, no errors)
LOAD_S = 8                  # seconds of the measured load; the queries run just after it
TOLERANCE = 0.02            # relative: learner's number against the reference's, same instant, same samples

# check id -> points: the answer key
RUBRIC = Rubric({"11.1": 2, "11.2": 2, "11.3": 2, "11.4": 2, "11.5": 2})


def _reference_queries(model: str, window: str) -> dict[str, str]:
    """The answer key: one PromQL query per question, for `model` over `window`."""
    ok = f'sum(rate(nv_inference_request_success{{model="{model}"}}[{window}]))'
    failed = f'sum(rate(nv_inference_request_failure{{model="{model}"}}[{window}]))'
    return {
        "success_rate": ok,
        "error_ratio": f"{failed} / ({ok} + {failed})",
        "mean_queue_ms": f'sum(rate(nv_inference_queue_duration_us{{model="{model}"}}[{window}])) / {ok} / 1000',
        "batch_size": (f'sum(rate(nv_inference_count{{model="{model}"}}[{window}])) '
                       f'/ sum(rate(nv_inference_exec_count{{model="{model}"}}[{window}]))'),
        "p99_ms": f'max(nv_inference_request_summary_us{{model="{model}", quantile="0.99"}}) / 1000',
    }


def _close(got: float, want: float) -> bool:
    return abs(got - want) <= TOLERANCE * max(abs(want), 1e-9)


def _looks_like(question: str, got: float, truth: dict[str, float]) -> str:
    """What a wrong number for the graded model resembles, as a hint (empty when it resembles nothing known)."""
    want = truth[question]
    if _close(got, truth[f"{question} (all models)"]) and not _close(got, want):
        return (f"it equals the number for every model together: select the model with a label matcher, "
                f'{{model="{MODEL}"}} (the function gets it as `model`)')
    if question != "p99_ms" and _close(got, truth[f"{question} (totals)"]):
        return ("it is the same for the totals since the server started: a counter is a total; read its "
                "rate(...[window]) to see the last window only")
    if question in ("mean_queue_ms", "p99_ms") and _close(got, want * 1000):
        return "it is 1000x the answer: Triton's durations are microseconds (_us); divide by 1000 for ms"
    if question == "success_rate" and _close(got, truth["inferences per second"]):
        return ("it counts inferences, not requests: a request of 2 rows is 2 in nv_inference_count; count "
                "requests with nv_inference_request_success")
    if question == "batch_size" and _close(got * want, 1):
        return "it is the inverse: inferences per execution is rate(nv_inference_count) / rate(nv_inference_exec_count)"
    if question == "batch_size" and _close(got, truth["requests per execution"]):
        return ("it counts requests per execution; the batch size counts inferences (rows): a request of 2 rows "
                "is 2 in nv_inference_count")
    if question == "error_ratio" and _close(got, truth["failures per success"]):
        return "it divides failures by successes: divide by all requests (success + failure)"
    if question == "mean_queue_ms" and _close(got, truth["queue ms per second"]):
        return "it is queue time per second, not per request: divide by the rate of successful requests"
    return ""


def _one_number(result: list) -> float:
    """The number of an instant query's result: one series, or a scalar (Prometheus answers [time, "value"])."""
    if len(result) == 2 and isinstance(result[0], (int, float)):
        return float(result[1])
    expect(len(result) == 1, f"the query returned {len(result)} series; one number is needed: aggregate with sum(...) "
           "(or max(...) for the summary's quantile)" if result else
           "the query returned no data: check each metric's name and labels (lesson 22's metrics table), and that "
           "both sides of `/` or `+` carry the same labels (sum(...) each side, or ignoring(reason))")
    return float(result[0]["value"][1])


def grade(success_rate: Callable[[str, str], str], error_ratio: Callable[[str, str], str],
          mean_queue_ms: Callable[[str, str], str], batch_size: Callable[[str, str], str],
          p99_ms: Callable[[str], str], work: Path, show: bool = True) -> list[Verdict]:
    """Serve the model under a known load, scrape it, and compare each query's number with the reference's.

    Each function runs twice: for the graded model over WINDOW, and for the neighbour over OTHER_WINDOW (a
    query with the model's name or the window written in fails the second). Introduced in ex11_read_the_metrics.
    """
    work = empty_dir(work)
    grading = GradingSession()
    functions = {"success_rate": success_rate, "error_ratio": error_ratio, "mean_queue_ms": mean_queue_ms,
                 "batch_size": batch_size, "p99_ms": lambda model, window: p99_ms(model)}

    def measured() -> dict[str, dict[str, float]]:
        """Start both servers, run the load, and keep the reference numbers (once, for every check)."""
        if "truth" not in grading.found and "failed" not in grading.found:
            try:
                grading.found["truth"] = _serve_and_load(grading, work)
            except Exception as error:   # one start, one verdict: the other checks do not start it again
                grading.found["failed"] = error
        if "failed" in grading.found:
            raise grading.found["failed"]
        return grading.found["truth"]

    def number(promql: str, at: float) -> float:
        try:
            return _one_number(grading.found["prometheus"].query(promql, at=at))
        except ValueError as error:
            expect(False, str(error)[:300])

    def judge(question: str, unit: str) -> Callable[[], None]:
        def check() -> None:
            queries = {case: functions[question](*case) for case in ((MODEL, WINDOW), (NEIGHBOUR, OTHER_WINDOW))}
            expect(all(isinstance(q, str) and q.strip() for q in queries.values()), "return the PromQL query as a string")
            truth = measured()   # after the answer exists: an unfinished one fails before any server starts
            got = number(queries[(MODEL, WINDOW)], truth["at"])
            want = truth[MODEL][question]
            hint = _looks_like(question, got, truth[MODEL])
            expect(_close(got, want), f"your query gives {got:.4g} {unit} for {MODEL!r}, the answer is {want:.4g}"
                   + (f": {hint}" if hint else ""))
            got = number(queries[(NEIGHBOUR, OTHER_WINDOW)], truth["at"])
            want = truth[NEIGHBOUR][question]
            expect(_close(got, want), f"right for {MODEL!r} over {WINDOW}, but {got:.4g} for {NEIGHBOUR!r} over "
                   f"{OTHER_WINDOW}, where the answer is {want:.4g}: build the query from the function's `model` "
                   "and `window` arguments, not from fixed text")
        return check

    checks = [RUBRIC.check("11.1", "success_rate: successful requests per second", judge("success_rate", "requests/s")),
              RUBRIC.check("11.2", "error_ratio: the share of requests that failed", judge("error_ratio", "")),
              RUBRIC.check("11.3", "mean_queue_ms: mean queue time per request, in ms", judge("mean_queue_ms", "ms")),
              RUBRIC.check("11.4", "batch_size: inferences per model execution", judge("batch_size", "")),
              RUBRIC.check("11.5", "p99_ms: Triton's own p99 latency, in ms", judge("p99_ms", "ms"))]
    return grading.run(checks, show=show)


def _write_model(repository: Path, name: str) -> None:
    """The grader's model: FP32 [4] in and out, batches of up to 8, faulty on negative values."""
    config = model_config(name, backend="python", max_batch_size=8, inputs=[io_tensor("INPUT", "TYPE_FP32", [4])],
                          outputs=[io_tensor("OUTPUT", "TYPE_FP32", [4])], dynamic_batching={})
    write_python_model(repository / name, config, PACKAGE_DIR / "triton_models" / "faulty_identity.py")


def _serve_and_load(grading: GradingSession, work: Path) -> dict[str, float]:
    """Start Triton and Prometheus, send the load, and compute the reference numbers at one instant."""
    repository = work / "model_repository"
    for name in (MODEL, NEIGHBOUR):
        _write_model(repository, name)
    triton = grading.serve(TritonServer(repository, work / "triton", models=[MODEL, NEIGHBOUR],
                                        extra_args=["--metrics-config=summary_latencies=true"]))
    prometheus = grading.serve(Prometheus(work / "prometheus", targets={"triton": triton.metrics_url},
                                          use_external=False))   # always its own, scraping this Triton
    grading.found["prometheus"] = prometheus

    def send(model_name: str, value: float, rows: int = 1) -> Callable[[requests.Session], requests.Response]:
        url = f"http://{triton.http_url}/v2/models/{model_name}/infer"
        body = {"inputs": [{"name": "INPUT", "shape": [rows, 4], "datatype": "FP32", "data": [value] * 4 * rows}]}
        return lambda session: session.post(url, json=body, timeout=10)

    prometheus.wait_for_targets()
    # first a quiet phase (1 client, no errors), then the measured one; the windows see only the second
    run_load_for(send(MODEL, 1.0), QUIET_S, 1)
    with ThreadPoolExecutor(max_workers=4) as pool:
        loads = [pool.submit(run_load_for, send(MODEL, 1.0), LOAD_S, 5),
                 pool.submit(run_load_for, send(MODEL, 1.0, rows=2), LOAD_S, 1),
                 pool.submit(run_load_for, send(MODEL, -1.0), LOAD_S, 2),
                 pool.submit(run_load_for, send(NEIGHBOUR, 1.0), LOAD_S, 2)]
        for load in loads:
            load.result()
    time.sleep(1.5)   # a scrape after the last request
    at = time.time()

    def number(promql: str) -> float:
        result = prometheus.query(promql, at=at)
        return float(result[0]["value"][1]) if result else float("nan")

    truth: dict = {"at": at}
    for model, window in ((MODEL, WINDOW), (NEIGHBOUR, OTHER_WINDOW)):
        truth[model] = {question: number(promql) for question, promql in _reference_queries(model, window).items()}
    graded = truth[MODEL]
    for question, promql in _reference_queries(MODEL, WINDOW).items():
        everything = promql.replace(f'model="{MODEL}", ', "").replace(f'{{model="{MODEL}"}}', "")
        graded[f"{question} (all models)"] = number(everything)
        graded[f"{question} (totals)"] = number(re.sub(r"rate\((.*?)\[\w+\]\)", r"(\1)", promql))
    rate = lambda metric: f'sum(rate({metric}{{model="{MODEL}"}}[{WINDOW}]))'   # noqa: E731
    graded["failures per success"] = number(f"{rate('nv_inference_request_failure')} / {rate('nv_inference_request_success')}")
    graded["queue ms per second"] = number(f"{rate('nv_inference_queue_duration_us')} / 1000")
    graded["inferences per second"] = number(rate("nv_inference_count"))
    graded["requests per execution"] = number(f"{rate('nv_inference_request_success')} / {rate('nv_inference_exec_count')}")
    return truth
