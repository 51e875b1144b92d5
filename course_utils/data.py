"""The course's two data sets, generated or shipped locally: nothing is downloaded.

* churn: a tabular data set of 4 customer features and a yes/no churn label,
  drawn from a documented random process with a fixed seed (make_churn_data).
* digits: scikit-learn's 8x8 handwritten digits (1797 images shipped inside the
  scikit-learn package), split with a fixed seed, plus PNG files of test digits
  so that lessons can send real image requests.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

CHURN_FEATURES = ["tenure_months", "monthly_charges", "support_calls", "contract_months"]
CHURN_CLASSES = {"0": "stays", "1": "churns"}
DIGIT_CLASSES = {str(i): name for i, name in enumerate(
    ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"])}
DIGIT_PNG_SCALE = 4  # each 8x8 digit is saved as a 32x32 PNG (nearest-neighbour upscale)


@dataclass(frozen=True)
class Split:
    """Train and held-out test arrays of one data set."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray


def make_churn_data(n: int = 4000, seed: int = 0, test_fraction: float = 0.25) -> Split:
    """Generate the churn data set: 4 float features per customer, label 1 = churns.

    The process (fixed seed, so every learner gets the same numbers):
      tenure_months   ~ Uniform(1, 72)
      monthly_charges ~ Normal(70, 20), clipped to [20, 120]
      support_calls   ~ Poisson(1.5)
      contract_months ~ one of {1, 12, 24} with probabilities {0.5, 0.3, 0.2}
      churn logit = 0.5 - 0.06*tenure + 0.04*(charges-70) + 0.7*calls - 0.09*contract
      label ~ Bernoulli(sigmoid(logit))

    Introduced in 00_setup.
    """
    if n < 10 or not 0 < test_fraction < 1:
        raise ValueError(f"need n >= 10 and 0 < test_fraction < 1, got n={n}, test_fraction={test_fraction}")
    rng = np.random.default_rng(seed)
    tenure = rng.uniform(1, 72, n)
    charges = np.clip(rng.normal(70, 20, n), 20, 120)
    calls = rng.poisson(1.5, n).astype(float)
    contract = rng.choice([1.0, 12.0, 24.0], size=n, p=[0.5, 0.3, 0.2])
    logit = 0.5 - 0.06 * tenure + 0.04 * (charges - 70) + 0.7 * calls - 0.09 * contract
    labels = (rng.uniform(size=n) < 1 / (1 + np.exp(-logit))).astype(np.int64)
    features = np.stack([tenure, charges, calls, contract], axis=1).round(2).astype(np.float32)
    n_test = int(n * test_fraction)
    return Split(features[n_test:], labels[n_test:], features[:n_test], labels[:n_test])


def load_digits_split(seed: int = 0, test_fraction: float = 0.2) -> Split:
    """Load scikit-learn's digits as float32 images of shape (N, 1, 8, 8) in [0, 1].

    The raw pixel values 0..16 are divided by 16. The split is stratified and seeded.

    Introduced in 00_setup.
    """
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    images = (digits.images / 16.0).astype(np.float32)[:, None, :, :]
    x_train, x_test, y_train, y_test = train_test_split(
        images, digits.target.astype(np.int64), test_size=test_fraction,
        random_state=seed, stratify=digits.target)
    return Split(x_train, y_train, x_test, y_test)


def digit_to_png(image: np.ndarray, path: Path, scale: int = DIGIT_PNG_SCALE) -> Path:
    """Save one digit image (values in [0, 1], shape (8, 8) or (1, 8, 8)) as a grayscale PNG.

    Internal helper: no lesson calls it.
    """
    from PIL import Image

    pixels = np.asarray(image, dtype=np.float32).reshape(8, 8)
    gray = np.clip(np.round(pixels * 255), 0, 255).astype(np.uint8)
    big = np.kron(gray, np.ones((scale, scale), dtype=np.uint8))
    path = Path(path)
    Image.fromarray(big).save(path)  # 2-D uint8 -> grayscale "L"
    return path


def write_digit_pngs(folder: Path, count: int = 10, seed: int = 0) -> list[tuple[Path, int]]:
    """Write the first `count` held-out digits as PNG files; return (path, true label) pairs.

    Introduced in 00_setup.
    """
    split = load_digits_split(seed=seed)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for i in range(min(count, len(split.x_test))):
        label = int(split.y_test[i])
        written.append((digit_to_png(split.x_test[i], folder / f"digit_{i:02d}_label{label}.png"), label))
    return written
