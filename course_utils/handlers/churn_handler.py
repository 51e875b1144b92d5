"""TorchServe handler for the churn MLP: JSON in, class and probabilities out.

Accepted request bodies (Content-Type: application/json):
    [24, 80.5, 2, 12]
    {"data": [24, 80.5, 2, 12]}
    {"tenure_months": 24, "monthly_charges": 80.5, "support_calls": 2, "contract_months": 12}
Answer: {"prediction": 1, "class_name": "churns", "probabilities": [0.31, 0.69]}

Introduced in 02_handlers.
"""

from __future__ import annotations

import math

import torch

from batch_safe import BadRequest, BatchSafeHandler, json_body, short_repr

FEATURES = ["tenure_months", "monthly_charges", "support_calls", "contract_months"]
EXAMPLE = '{"data": [24, 80.5, 2, 12]}'


def finite_number(name: str, value: object) -> float:
    """`value` as a float, or BadRequest: not a number, NaN, +-Infinity, or too large for float32."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise BadRequest(f"{name} must be a number, got {short_repr(value)}; example: {EXAMPLE}")
    try:
        number = float(value)
    except OverflowError:   # an integer such as 10**400
        number = math.inf
    if not math.isfinite(number) or abs(number) > 3.4e38:
        raise BadRequest(f"{name} must be a finite number within float32 range, got {short_repr(value)}; "
                         f"example: {EXAMPLE}")
    return number


class ChurnHandler(BatchSafeHandler):
    """Validates one customer's 4 features and predicts stays/churns."""

    def parse_row(self, row: dict) -> torch.Tensor:
        body = json_body(row)
        if isinstance(body, dict):
            body = body["data"] if "data" in body else self._from_named(body)
        if not isinstance(body, list):
            raise BadRequest(f"expected a JSON list of {len(FEATURES)} numbers ({', '.join(FEATURES)}), "
                             f"got {type(body).__name__}; example: {EXAMPLE}")
        if len(body) != len(FEATURES):
            raise BadRequest(f"expected {len(FEATURES)} numbers ({', '.join(FEATURES)}), got {len(body)}; "
                             f"example: {EXAMPLE}")
        return torch.tensor([finite_number(name, value) for name, value in zip(FEATURES, body)],
                            dtype=torch.float32)

    @staticmethod
    def _from_named(body: dict) -> list:
        missing = [name for name in FEATURES if name not in body]
        if missing:
            raise BadRequest(f"missing feature(s) {missing}; send all of {FEATURES} or {EXAMPLE}")
        return [body[name] for name in FEATURES]

    def describe(self, probabilities: torch.Tensor) -> dict:
        prediction = int(probabilities.argmax())
        names = self.mapping or {}
        return {
            "prediction": prediction,
            "class_name": names.get(str(prediction), str(prediction)),
            "probabilities": [round(float(p), 4) for p in probabilities],
        }
