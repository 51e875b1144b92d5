"""Read Prometheus text-format metrics (TorchServe's :8082/metrics, Triton's :8002/metrics)."""

from __future__ import annotations

import re
from dataclasses import dataclass

_SAMPLE = re.compile(r'^(?P<name>[a-zA-Z_:][\w:]*)(\{(?P<labels>.*)\})?\s+(?P<value>\S+)')
_LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


@dataclass(frozen=True)
class Sample:
    """One metric sample: name, labels and value."""

    name: str
    labels: dict[str, str]
    value: float


def parse_prometheus(text: str) -> list[Sample]:
    """Parse every sample line (comments skipped) of a Prometheus text exposition.

    Introduced in 05_triton_batching_and_operations.
    """
    samples = []
    for line in text.splitlines():
        match = _SAMPLE.match(line.strip())
        if match and not line.startswith("#"):
            labels = dict(_LABEL.findall(match.group("labels") or ""))
            samples.append(Sample(match.group("name"), labels, float(match.group("value"))))
    return samples


def metric_total(text: str, name: str, **labels: str) -> float:
    """Sum of the samples called `name` whose labels include `labels` (0.0 if none).

    Introduced in 01_torchserve_architecture.
    """
    return sum(s.value for s in parse_prometheus(text)
               if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()))
