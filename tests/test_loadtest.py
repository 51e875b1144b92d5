"""The load generator counts failures by kind and never aborts on them."""

from course_utils.loadtest import run_load
from course_utils.servers.ports import free_port


def test_a_dead_server_is_counted_as_connection_errors_not_raised():
    url = f"http://127.0.0.1:{free_port()}/predictions/churn"   # nothing listens here
    result = run_load(lambda session: session.post(url, json=[1, 2, 3, 4], timeout=2), requests_total=12,
                      concurrency=3, warmup=1, progress=False)
    assert result.failures == {"ConnectionError": 12} and result.latencies_ms == []
    assert result.summary()["errors"] == 12 and result.throughput == 0.0


def test_error_statuses_are_counted_by_code():
    class Answer:
        def __init__(self, code: int) -> None:
            self.status_code = code

    codes = iter([200, 503, 200, 400, 503, 200])
    result = run_load(lambda session: Answer(next(codes)), requests_total=6, concurrency=1, warmup=0, progress=False)
    assert result.failures == {503: 2, 400: 1} and len(result.latencies_ms) == 3
