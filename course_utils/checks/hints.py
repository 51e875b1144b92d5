"""Hints that more than one grader gives."""

from __future__ import annotations

import torch


def mismatch_hint(model: torch.nn.Module, verb: str) -> str:
    """Why a saved or exported copy of `model` may compute something else, for this model.

    eval() matters only for a model with dropout or batch norm, so it is named only then.
    Internal helper: no lesson calls it.
    """
    if any(type(m).__name__.startswith(("Dropout", "BatchNorm")) for m in model.modules()):
        return f"{verb} the trained model in eval() mode (it has dropout or batch norm)"
    return f"{verb} the `model` argument itself, as trained (not a new or re-initialized one)"
