"""How the course's Prometheus client hands back query results (no Prometheus needed)."""

from __future__ import annotations


def test_query_results_come_sorted_by_labels_whatever_the_ports():
    """Prometheus answers series in no fixed order; a lesson prints them, so they come sorted by their labels,
    with the instance (host:port, new each run) last: the same order whichever port each server got."""
    from course_utils.servers.prometheus import _by_labels

    def up(job: str, port: int) -> dict:
        return {"metric": {"__name__": "up", "instance": f"127.0.0.1:{port}", "job": job}, "value": [0, "1"]}

    for ports in ((9001, 9002), (9002, 9001)):
        answer = [up("triton", ports[0]), up("torchserve", ports[1])]
        assert [series["metric"]["job"] for series in _by_labels(answer)] == ["torchserve", "triton"]
    assert _by_labels([1700000000.0, "2"]) == [1700000000.0, "2"]     # a scalar result is kept as it is
