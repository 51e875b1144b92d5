"""The course's two reference models, trained in seconds on the CPU, and their shipped weights.

* ChurnMLP: 4 raw customer features -> 2 logits (stays / churns). It carries the
  training set's mean and std as buffers, so a server can send raw numbers.
* DigitCNN: a 1x8x8 digit image -> 10 logits.
* ResNet18Sized: ResNet-18's layers with random weights, a compute-heavy stand-in (lesson 12).

Lessons serve the weights the course ships (load_churn_model, load_digit_cnn): the same seed
trains slightly different weights on CPUs whose math libraries take other vector code paths
(AVX2, AVX-512), so a model a learner serves is a file, as it is in production.
`python -m course_utils train-models` regenerates the files with train_churn_model and
train_digit_cnn.
"""

from __future__ import annotations

import random
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import torch
from torch import nn

from .data import Split, load_digits_split, make_churn_data


def set_seed(seed: int = 0) -> None:
    """Seed Python, NumPy and PyTorch so that training is repeatable.

    Internal helper: no lesson calls it.
    """
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


@contextmanager
def single_thread() -> Iterator[None]:
    """Run the block with one intra-op thread (bit-identical float sums on any machine).

    Introduced in 06_onnx_and_tensorrt.
    """
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


class ChurnMLP(nn.Module):
    """Standardize 4 raw features with stored statistics, then a 2-layer MLP."""

    def __init__(self, mean: torch.Tensor | None = None, std: torch.Tensor | None = None, hidden: int = 32):
        super().__init__()
        self.register_buffer("mean", torch.zeros(4) if mean is None else mean.float())
        self.register_buffer("std", torch.ones(4) if std is None else std.float())
        self.net = nn.Sequential(nn.Linear(4, hidden), nn.ReLU(), nn.Linear(hidden, 2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net((x - self.mean) / self.std)


class DigitCNN(nn.Module):
    """Two 3x3 convolutions, one max-pool and a small classifier for 8x8 digits."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(),
            nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(),
            nn.MaxPool2d(2),
        )
        self.classifier = nn.Sequential(nn.Flatten(), nn.Linear(32 * 4 * 4, 64), nn.ReLU(), nn.Linear(64, 10))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


class DigitLinear(nn.Module):
    """Softmax regression on the 64 pixels of an 8x8 digit: 650 parameters, the cheap model of a cascade."""

    def __init__(self) -> None:
        super().__init__()
        self.classifier = nn.Sequential(nn.Flatten(), nn.Linear(64, 10))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(x)


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with batch norm and a shortcut: ResNet-18's building block."""

    def __init__(self, channels_in: int, channels_out: int, stride: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(channels_in, channels_out, 3, stride, 1, bias=False), nn.BatchNorm2d(channels_out), nn.ReLU(),
            nn.Conv2d(channels_out, channels_out, 3, 1, 1, bias=False), nn.BatchNorm2d(channels_out))
        self.shortcut = nn.Identity() if stride == 1 and channels_in == channels_out else nn.Sequential(
            nn.Conv2d(channels_in, channels_out, 1, stride, bias=False), nn.BatchNorm2d(channels_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.body(x) + self.shortcut(x))


class ResNet18Sized(nn.Module):
    """ResNet-18's layers (11.7 M parameters, 1.8 GFLOPs per 3x224x224 image) with random weights.

    A stand-in for a compute-heavy model: nothing is downloaded, and serving cost depends on the
    layers, not on what the weights learned. Build it with `torch.manual_seed(...)` set for
    repeatable outputs.
    """

    def __init__(self, classes: int = 1000) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 64, 7, 2, 3, bias=False), nn.BatchNorm2d(64), nn.ReLU(),
                                  nn.MaxPool2d(3, 2, 1))
        blocks, channels = [], 64
        for width, stride in [(64, 1), (64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2), (512, 1)]:
            blocks.append(BasicBlock(channels, width, stride))
            channels = width
        self.blocks = nn.Sequential(*blocks)
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(512, classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.blocks(self.stem(x)))


@dataclass
class Trained:
    """A trained model with its data and held-out accuracy."""

    model: nn.Module
    data: Split
    test_accuracy: float


def accuracy(model: nn.Module, x: np.ndarray, y: np.ndarray) -> float:
    """Fraction of rows of `x` that `model` classifies as `y`.

    Introduced in 00_setup.
    """
    model.eval()
    with torch.inference_mode():
        predictions = model(torch.from_numpy(x)).argmax(dim=1).numpy()
    return float((predictions == y).mean())


def _fit(model: nn.Module, data: Split, epochs: int, lr: float, batch_size: int, seed: int) -> None:
    set_seed(seed)
    x, y = torch.from_numpy(data.x_train), torch.from_numpy(data.y_train)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    loss_fn = nn.CrossEntropyLoss()
    generator = torch.Generator().manual_seed(seed)
    model.train()
    for _ in range(epochs):
        for batch in torch.randperm(len(x), generator=generator).split(batch_size):
            optimizer.zero_grad()
            loss_fn(model(x[batch]), y[batch]).backward()
            optimizer.step()
    model.eval()


def train_churn_model(seed: int = 0, epochs: int = 30) -> Trained:
    """Train the churn MLP on make_churn_data(); about a second on one CPU core.

    Lessons load the weights this made (load_churn_model); lesson 00 trains it to show why.
    Introduced in 00_setup.
    """
    data = make_churn_data(seed=seed)
    with single_thread():
        set_seed(seed)
        x = torch.from_numpy(data.x_train)
        model = ChurnMLP(mean=x.mean(dim=0), std=x.std(dim=0))
        _fit(model, data, epochs=epochs, lr=1e-2, batch_size=64, seed=seed)
        return Trained(model, data, accuracy(model, data.x_test, data.y_test))


def _train_on_digits(make_model: Callable[[], nn.Module], seed: int, epochs: int, lr: float) -> Trained:
    """Seed, build and fit a digit model on one thread, with batches of 32; evaluate it on the held-out split."""
    data = load_digits_split(seed=seed)
    with single_thread():
        set_seed(seed)
        model = make_model()
        _fit(model, data, epochs=epochs, lr=lr, batch_size=32, seed=seed)
        return Trained(model, data, accuracy(model, data.x_test, data.y_test))


def train_digit_cnn(seed: int = 0, epochs: int = 12) -> Trained:
    """Train the digit CNN on scikit-learn's digits; a few seconds on one CPU core.

    Lessons load the weights this made (load_digit_cnn). Internal helper: no lesson calls it.
    """
    return _train_on_digits(DigitCNN, seed, epochs, lr=3e-3)


def train_digit_linear(seed: int = 0, epochs: int = 30) -> Trained:
    """Train the softmax-regression digit model on scikit-learn's digits; about a second on one CPU core.

    Lessons load the weights this made (load_digit_linear). Internal helper: no lesson calls it.
    """
    return _train_on_digits(DigitLinear, seed, epochs, lr=1e-2)


WEIGHTS_DIR = Path(__file__).parent / "weights"


def weights_file(name: str, seed: int, epochs: int) -> Path:
    """The shipped weights of one trained model: course_utils/weights/<name>_seed<S>_epochs<E>.pt.

    Internal helper: no lesson calls it.
    """
    return WEIGHTS_DIR / f"{name}_seed{seed}_epochs{epochs}.pt"


def _load_weights(model: nn.Module, name: str, seed: int, epochs: int, trainer: str) -> nn.Module:
    path = weights_file(name, seed, epochs)
    if not path.is_file():
        shipped = ", ".join(sorted(p.stem for p in WEIGHTS_DIR.glob(f"{name}_*.pt")))
        raise ValueError(f"the course ships no {name} weights for seed={seed}, epochs={epochs} (it ships: {shipped}); "
                         f"train that model yourself with {trainer}(seed={seed}, epochs={epochs})")
    # weights_only=True: unpickle tensors only, never code (a .pt file can carry code otherwise).
    model.load_state_dict(torch.load(path, weights_only=True))
    return model.eval()


def load_churn_model(seed: int = 0, epochs: int = 30) -> Trained:
    """The churn MLP that train_churn_model(seed, epochs) trained, loaded from the weights the course ships.

    The same on every machine to the last bit, unlike a model trained on the learner's CPU.

    Introduced in 00_setup.
    """
    data = make_churn_data(seed=seed)
    model = _load_weights(ChurnMLP(), "churn", seed, epochs, "train_churn_model")
    return Trained(model, data, accuracy(model, data.x_test, data.y_test))


def load_digit_cnn(seed: int = 0, epochs: int = 12) -> Trained:
    """The digit CNN that train_digit_cnn(seed, epochs) trained, loaded from the weights the course ships.

    Introduced in 00_setup.
    """
    data = load_digits_split(seed=seed)
    model = _load_weights(DigitCNN(), "digits", seed, epochs, "train_digit_cnn")
    return Trained(model, data, accuracy(model, data.x_test, data.y_test))


def load_digit_linear(seed: int = 0, epochs: int = 30) -> Trained:
    """The softmax-regression digit model that train_digit_linear(seed, epochs) trained, from the shipped weights.

    Introduced in 17_bls_cascade.
    """
    data = load_digits_split(seed=seed)
    model = _load_weights(DigitLinear(), "digits_linear", seed, epochs, "train_digit_linear")
    return Trained(model, data, accuracy(model, data.x_test, data.y_test))
