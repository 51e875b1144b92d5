"""Graders for ex01_custom_handler: a churn handler that reads CSV lines.

The learner's handler file is archived with the reference churn model and served
by a real TorchServe (batch_size 4), then probed with good and bad requests.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import requests
import torch

from ..archiver import archive_model, handler_file, save_torchscript, write_index_to_name
from ..data import CHURN_CLASSES
from ..hostile_inputs import error_message
from ..machinery.grading import Fail, GradingSession, Rubric, Verdict, expect
from ..models import load_churn_model
from ..paths import empty_dir
from ..servers.torchserve import ModelSettings, TorchServe, last_worker_error

MODEL = "churn_csv"
GOOD_ROWS = {"24,80.5,2,12": [24, 80.5, 2, 12], " 3 , 110 , 5 , 1 \n": [3, 110, 5, 1], "60,20,0,24": [60, 20, 0, 24]}

# check id -> points: the answer key
RUBRIC = Rubric({"1.1": 2, "1.2": 1, "1.3": 2, "1.4": 2, "1.5": 1,
                 "1.6": 1, "1.7": 1, "1.8": 2, "1.9": 1})


def _message_of(response: requests.Response) -> str:
    """The error message of an answer, on one line and shortened (for a hint)."""
    return " ".join(error_message(response).split())[:200]


def _reference_answers(model: torch.nn.Module) -> dict[str, dict]:
    """The answer the reference handler gives for each good CSV row: prediction, class_name, probabilities."""
    answers = {}
    with torch.inference_mode():
        for text, row in GOOD_ROWS.items():
            probabilities = torch.softmax(model(torch.tensor([row], dtype=torch.float32))[0], dim=0)
            prediction = int(probabilities.argmax())
            answers[text] = {"prediction": prediction, "class_name": CHURN_CLASSES[str(prediction)],
                             "probabilities": [float(p) for p in probabilities]}
    return answers


def _differences(got: object, wanted: dict) -> str:
    """What differs between a handler's answer and the reference answer ("" when it matches)."""
    if not isinstance(got, dict) or set(got) != set(wanted):
        keys = sorted(got) if isinstance(got, dict) else type(got).__name__
        return f"the answer must be a dict with exactly {sorted(wanted)}, got {keys}"
    wrong = [f"{key}={got[key]!r} (expected {wanted[key]!r})" for key in ("prediction", "class_name")
             if got[key] != wanted[key]]
    probabilities = got["probabilities"]
    if (not isinstance(probabilities, list) or len(probabilities) != len(wanted["probabilities"])
            or any(not isinstance(p, (int, float)) or abs(p - q) > 1e-3
                   for p, q in zip(probabilities, wanted["probabilities"]))):
        expected = [round(p, 4) for p in wanted["probabilities"]]
        wrong.append(f"probabilities={probabilities!r} (expected {expected}, the softmax of the model's output)")
    return "; ".join(wrong)


def grade(handler: Path, work: Path, show: bool = True) -> list[Verdict]:
    """Archive `handler` with the churn model, serve it and run every check; stop the server.

    Introduced in ex01_custom_handler.
    """
    handler = Path(handler)
    work = empty_dir(work)
    trained = load_churn_model()
    expected = _reference_answers(trained.model)
    grading = GradingSession()

    def serves() -> None:
        if grading.server is not None:
            return
        expect(handler.is_file(), f"{handler} does not exist: run the %%writefile cell first")
        model_file = save_torchscript(trained.model, work / "churn.pt")
        labels = write_index_to_name(CHURN_CLASSES, work)
        archive_model(MODEL, model_file, handler, work / "store", extra_files=[handler_file("batch_safe"), labels])
        server = TorchServe(work / "store", work / "server", models=[f"{MODEL}.mar"], startup_timeout_s=60,
                            settings={MODEL: ModelSettings(batch_size=4, max_batch_delay_ms=300)})
        try:
            grading.serve(server)
        except (TimeoutError, RuntimeError) as err:
            raise Fail("the worker never became READY: your handler fails at import or initialize. "
                       "Run it with run_handler_locally() to see the traceback. "
                       + str(err).splitlines()[0]) from None

    def post(body: bytes) -> requests.Response:
        server = grading.server
        return requests.post(f"{server.inference_url}/predictions/{MODEL}", data=body, timeout=30,
                             headers={**server.headers("inference"), "Content-Type": "text/csv"})

    def answer_for(text: str) -> dict:
        response = post(text.encode())
        if response.status_code in (500, 503):   # 500: parse_row raised; 503: another method raised
            error = last_worker_error(grading.server) or "see logs/model_log.log"
            raise Fail(f"expected HTTP 200 for {text.strip()!r}, got {response.status_code}: your handler raised "
                       f"{error}; run it with run_handler_locally() to see the traceback")
        expect(response.status_code == 200, f"expected HTTP 200 for {text.strip()!r}, got {response.status_code}: "
               f"{_message_of(response)}; parse_row must return a float tensor of shape (4,)")
        return response.json()

    def valid_row() -> None:
        problem = _differences(answer_for("24,80.5,2,12"), expected["24,80.5,2,12"])
        expect(not problem, f"for '24,80.5,2,12': {problem}. describe() returns prediction (the argmax), class_name "
               "(self.mapping[str(prediction)]) and both probabilities; read the columns in the order "
               "tenure_months,monthly_charges,support_calls,contract_months")

    def tolerant_rows() -> None:
        for text, wanted in expected.items():
            problem = _differences(answer_for(text), wanted)
            if problem:
                clean = ",".join(part.strip() for part in text.strip().split(","))
                cause = ("strip spaces and the newline" if not _differences(answer_for(clean), wanted) else
                         "the same row without spaces is wrong too: check the column order and describe()")
                raise Fail(f"for {text!r}: {problem}; {cause}")

    def rejected(body: bytes, must_mention: tuple[str, ...], hint: str) -> None:
        response = post(body)
        expect(response.status_code == 400,
               f"expected HTTP 400 for {body[:40]!r}, got {response.status_code}: {hint}")
        message = _message_of(response)
        missing = [word for word in must_mention if word.lower() not in message.lower()]
        expect(not missing, f"the 400 message {message!r} should mention {missing} so the client knows what to fix")

    def mixed_batch() -> None:
        bodies = [b"24,80.5,2,12", b"1,2,3", b"60,20,0,24", b"a,b,c,d"]
        with ThreadPoolExecutor(len(bodies)) as pool:
            codes = [r.status_code for r in pool.map(post, bodies)]
        expect(codes == [200, 400, 200, 400], f"4 requests sent together (2 good, 2 bad) got {codes}, expected "
               "[200, 400, 200, 400]: raise BadRequest for bad rows instead of failing the batch")

    def worker_survives() -> None:
        server = grading.server
        description = server.management_get(f"models/{MODEL}").json()[0]
        workers = description["workers"]
        expect(len(workers) == 1 and workers[0]["status"] == "READY",
               f"after the bad requests the worker is {[w['status'] for w in workers]}, expected one READY worker")
        answer_for("24,80.5,2,12")

    def serves_and_predicts() -> None:
        serves()
        valid_row()

    checks = [
        RUBRIC.check("1.1", "the handler loads and a valid CSV row gets HTTP 200 with the model's prediction",
                     serves_and_predicts),
        RUBRIC.check("1.2", "spaces and a trailing newline are tolerated", tolerant_rows, ("1.1",)),
        RUBRIC.check("1.3", "a row with 3 values gets HTTP 400 that names the expected count 4",
                     lambda: rejected(b"1,2,3", ("4",), "check the number of fields"), ("1.1",)),
        RUBRIC.check("1.4", "a non-numeric value gets HTTP 400 that names the column",
                     lambda: rejected(b"24,lots,2,12", ("monthly_charges",), "convert with float() and catch ValueError"),
                     ("1.1",)),
        RUBRIC.check("1.5", "an empty body gets HTTP 400", lambda: rejected(b"", (), "reject empty input"), ("1.1",)),
        RUBRIC.check("1.6", "nan/inf values get HTTP 400 that names the column",
                     lambda: rejected(b"24,nan,2,inf", ("monthly_charges",), "float('nan') parses: check math.isfinite"),
                     ("1.1",)),
        RUBRIC.check("1.7", "bytes that are not UTF-8 text get HTTP 400",
                     lambda: rejected(b"\xff\xfe\x00bad", (), "decode bytes with .decode('utf-8') and catch UnicodeDecodeError"),
                     ("1.1",)),
        RUBRIC.check("1.8", "in one batch, good rows get 200 while bad rows get 400", mixed_batch, ("1.1",)),
        RUBRIC.check("1.9", "the same worker is still READY and predicting afterwards", worker_survives, ("1.1",)),
    ]
    return grading.run(checks, show=show)
