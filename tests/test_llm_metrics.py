"""course_utils.llm_metrics computes what genai-perf reports, from a perf_analyzer profile export."""

from __future__ import annotations

import json

import pytest

from course_utils.language_model import load_language_model
from course_utils.llm_metrics import SLO, request_metrics, summary, workload

MS = 1_000_000   # the export's timestamps are nanoseconds


def profile(tmp_path, requests):
    path = tmp_path / "profile.json"
    path.write_text(json.dumps({"experiments": [{"experiment": {"mode": "concurrency", "value": 2},
                                                 "requests": requests, "window_boundaries": []}]}))
    return path


def request(sent_ms, pieces):
    """A request sent at sent_ms whose responses (arrival ms, text) are `pieces`."""
    return {"timestamp": sent_ms * MS, "request_inputs": {},
            "response_timestamps": [t * MS for t, _ in pieces],
            "response_outputs": [{"text_output": text} for _, text in pieces]}


def test_ttft_itl_tokens_and_rates_follow_genai_perfs_definitions(tmp_path):
    tokenizer = load_language_model().tokenizer
    text = [" better", " than", " ugly", "."]
    assert len(tokenizer.encode("".join(text)).ids) == 6   # " u", "g", "ly": BPE counts tokens, not pieces
    rows = request_metrics(profile(tmp_path, [
        request(0, [(10, ""), (20, text[0]), (30, text[1]), (40, text[2]), (60, text[3])]),   # an empty first response
        request(100, [(150, " better")]),                                                     # one token
        request(200, [(300, "")]),                                                            # only an error
    ]), tokenizer)
    first, single, failed = rows.to_dict("records")
    assert first["ttft_ms"] == 20 and first["e2e_ms"] == 60 and first["output_tokens"] == 6
    assert first["itl_ms"] == pytest.approx((60 - 20) / 5) and not first["error"]
    assert single["output_tokens"] == 1 and single["itl_ms"] != single["itl_ms"]   # NaN: no gap to measure
    assert failed["error"]
    numbers = summary(rows, SLO(ttft_ms=30, itl_ms=15))
    assert numbers["requests"] == 3 and numbers["errors"] == 1
    assert numbers["output tokens/s"] == pytest.approx(7 / 0.3) and numbers["requests/s"] == pytest.approx(3 / 0.3)
    assert numbers["goodput req/s"] == pytest.approx(1 / 0.3)   # the first met the SLO; the single one's TTFT is 50 ms
    assert summary(rows, SLO(ttft_ms=60, itl_ms=15))["goodput req/s"] == pytest.approx(2 / 0.3)


def test_a_workload_is_seeded_and_asks_for_exact_lengths(tmp_path):
    first = json.loads(workload(tmp_path / "a.json", ["Flat is", "Now is"], [8, 64], count=20, seed=3).read_text())
    again = json.loads(workload(tmp_path / "b.json", ["Flat is", "Now is"], [8, 64], count=20, seed=3).read_text())
    assert first == again and len(first["data"]) == 20
    assert all(r["ignore_eos"] == [True] and r["max_tokens"][0] in (8, 64) for r in first["data"])


def test_openai_server_sent_events_are_read_as_their_text():
    from course_utils.llm_metrics import response_texts

    def event(text: str, reason: str | None = None) -> str:
        return 'data: {"choices": [{"index": 0, "text": "%s", "finish_reason": %s}]}\n\n' % (text, json.dumps(reason))

    assert response_texts([{"response": event(" better") + event(" than")}]) == [" better than"]
    assert response_texts([{"response": event("") + "data: [DONE]\n\n"}]) == [""]
    assert response_texts([{"response": 'data: {"error": {"message": "generation failed"}}\n\n'}]) == [""]
    split = event(" better")
    assert response_texts([{"response": split[:20]}, {"response": split[20:]}]) == ["", " better"]
    assert response_texts([{"response": '{"choices": [{"text": " better than ugly."}], "usage": {}}'}]) == [" better than ugly."]
    assert response_texts([{"text_output": "Triton's"}, None]) == ["Triton's", ""]


def test_an_openai_workload_holds_the_same_requests_as_bodies(tmp_path):
    import json

    from course_utils.llm_metrics import workload

    triton = json.loads(workload(tmp_path / "t.json", ["a b", "c d"], [8, 16], 6, seed=3).read_text())["data"]
    openai = json.loads(workload(tmp_path / "o.json", ["a b", "c d"], [8, 16], 6, seed=3, openai_model="zen").read_text())["data"]
    assert [(r["text_input"]["content"][0], r["max_tokens"][0]) for r in triton] == \
           [(r["payload"][0]["prompt"], r["payload"][0]["max_tokens"]) for r in openai]
    assert all(r["payload"][0]["stream"] and r["payload"][0]["ignore_eos"] and r["payload"][0]["model"] == "zen"
               for r in openai)
