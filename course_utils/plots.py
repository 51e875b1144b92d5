"""Figures for the lessons: the TorchServe architecture and measured comparisons.

Functions return a closed matplotlib Figure (created with pyplot, then
plt.close), so a notebook shows it exactly once: as the value of the cell's
last expression, not again by pyplot's automatic display.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure
from matplotlib.patches import FancyBboxPatch
from matplotlib.ticker import NullFormatter, ScalarFormatter

if TYPE_CHECKING:
    import pandas as pd


def _box(ax, x: float, y: float, w: float, h: float, text: str, color: str) -> None:
    ax.add_patch(FancyBboxPatch((x, y), w, h, boxstyle="round,pad=0.02", fc=color, ec="black", lw=1))
    ax.text(x + w / 2, y + h / 2, text, ha="center", va="center", fontsize=9)


def _arrow(ax, start: tuple[float, float], end: tuple[float, float]) -> None:
    ax.annotate("", xy=end, xytext=start, arrowprops={"arrowstyle": "->", "lw": 1.2})


def torchserve_architecture_figure() -> Figure:
    """Draw TorchServe: client, Java frontend (REST/gRPC APIs, queues), Python workers, model store.

    Introduced in 01_torchserve_architecture.
    """
    fig, ax = plt.subplots(figsize=(10, 5.5))
    plt.close(fig)
    ax.set_xlim(0, 10)
    ax.set_ylim(0, 6.2)
    ax.axis("off")
    _box(ax, 0.2, 2.6, 1.4, 1.0, "Client\n(curl, requests,\ngRPC stub)", "#e8e8e8")
    _box(ax, 2.2, 0.4, 3.6, 5.5, "", "#dbe9f6")
    ax.text(4.0, 5.6, "Frontend (Java, one process)", ha="center", fontsize=10, weight="bold")
    for i, (name, port) in enumerate([("Inference REST", "8080"), ("Management REST", "8081"),
                                      ("Metrics REST", "8082"), ("gRPC inference / mgmt", "7070 / 7071")]):
        _box(ax, 2.4, 4.6 - i * 0.8, 1.6, 0.6, f"{name}\n:{port}", "#ffffff")
    _box(ax, 4.3, 2.6, 1.3, 1.6, "per-model\njob queue\n+ batching\n(batch_size,\nmax_batch_delay)", "#fff6d5")
    _box(ax, 2.4, 0.6, 3.2, 0.8, "token auth (key_file.json) ·\nallowed_urls · logs · metrics", "#ffffff")
    _box(ax, 6.4, 0.4, 3.4, 5.5, "", "#e3f3e0")
    ax.text(8.1, 5.6, "Backend workers (Python)", ha="center", fontsize=10, weight="bold")
    for i in range(3):
        _box(ax, 6.6, 4.3 - i * 1.2, 3.0, 0.9, f"worker {i + 1}: handler\ninitialize → preprocess →\ninference → postprocess", "#ffffff")
    _box(ax, 6.6, 0.6, 3.0, 0.7, "model store: *.mar files", "#f4e1f0")
    _arrow(ax, (1.6, 3.1), (2.4, 3.1))
    _arrow(ax, (4.0, 4.9), (4.3, 3.9))
    for y in (4.75, 3.55, 2.35):
        _arrow(ax, (5.6, 3.4), (6.6, y))
    _arrow(ax, (8.1, 1.3), (8.1, 2.1))
    ax.set_title("TorchServe: one frontend, one Python worker process per model worker")
    fig.tight_layout()
    return fig


def plot_throughput_vs_latency(table, title: str, latency: str = "p99_ms", log_scale: bool = False) -> Figure:
    """Throughput against latency, one line per `setup`, points labelled with concurrency.

    `table` is what perf_analyzer.run_perf_analyzer() returns (several setups concatenated).
    Up and to the left is better. `log_scale` puts both axes on a log scale (for
    setups that differ by orders of magnitude). Introduced in 03b_batching_and_model_management.
    """
    fig, ax = plt.subplots(figsize=(7, 4.5))
    plt.close(fig)
    for setup, rows in table.groupby("setup", sort=False):
        ax.plot(rows[latency], rows["throughput"], marker="o", label=setup)
        for _, row in rows.iterrows():
            ax.annotate(f"c={row['concurrency']}", (row[latency], row["throughput"]),
                        textcoords="offset points", xytext=(4, 4), fontsize=8)
    ax.set_xlabel(f"{latency.replace('_ms', '')} latency (ms)")
    ax.set_ylabel("inferences / second")
    if log_scale:
        ax.set_xscale("log")
        ax.set_yscale("log")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_timings(table, title: str) -> Figure:
    """Grouped bars of median latency (p90 as a whisker) per runtime, one group per batch size.

    `table` has columns runtime, batch, median_ms, p90_ms. Introduced in 06_onnx_and_tensorrt.
    """
    batches = sorted(table["batch"].unique())
    runtimes = list(dict.fromkeys(table["runtime"]))
    fig, axes = plt.subplots(1, len(batches), figsize=(5 * len(batches), 4))
    plt.close(fig)
    for ax, batch in zip(np.atleast_1d(axes), batches):
        rows = table[table["batch"] == batch].set_index("runtime").loc[runtimes]
        ax.bar(runtimes, rows["median_ms"], yerr=[np.zeros(len(rows)), rows["p90_ms"] - rows["median_ms"]],
               color="#4c72b0", capsize=4)
        ax.set_title(f"batch {batch}")
        ax.set_ylabel("ms per call (median, whisker = p90)")
        ax.tick_params(axis="x", rotation=20)
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_quantization(table, title: str) -> Figure:
    """Size, latency and accuracy per quantization method, side by side.

    `table` has columns method, size_kb, latency_b1_ms, latency_b64_ms, accuracy.
    Introduced in 07_quantization.
    """
    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    plt.close(fig)
    methods = list(table["method"])
    colors = ["#888888" if m.startswith("fp32") else "#4c72b0" for m in methods]
    for ax, column, label in zip(axes, ["size_kb", "latency_b64_ms", "accuracy"],
                                 ["model size (KiB)", "median ms per batch of 64", "held-out accuracy"]):
        ax.barh(methods, table[column], color=colors)
        ax.set_xlabel(label)
        ax.invert_yaxis()
    axes[2].set_xlim(max(0.0, float(table["accuracy"].min()) - 0.05), 1.0)
    for ax in axes[1:]:
        ax.set_yticklabels([])
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_variant_latencies(records: Sequence, title: str) -> Figure:
    """Latency distribution of each variant's successful requests (a router's records), as box plots.

    Introduced in 09_ab_testing.
    """
    names = list(dict.fromkeys(r.label for r in records))
    latencies = [[r.latency_ms for r in records if r.ok and r.label == name] for name in names]
    fig, ax = plt.subplots(figsize=(6, 3.5))
    plt.close(fig)
    ax.boxplot(latencies, showfliers=False)
    ax.set_xticks(range(1, len(names) + 1), names)
    ax.set_ylabel("latency (ms), successful requests")
    ax.set_title(title)
    ax.grid(alpha=0.3, axis="y")
    fig.tight_layout()
    return fig


def plot_power_curve(users: Sequence[int], power: Sequence[float], false_positive: Sequence[float],
                     planned: int, title: str) -> Figure:
    """Measured power and false-positive rate against users per variant, with the planned size marked.

    Introduced in 09_ab_testing.
    """
    fig, ax = plt.subplots(figsize=(7, 4))
    plt.close(fig)
    ax.plot(users, power, marker="o", label="power: B truly better, test says so")
    ax.plot(users, false_positive, marker="s", label="false positives: A/A, test says different")
    ax.axvline(planned, color="gray", linestyle="--", label=f"planned size ({planned} per variant)")
    ax.axhline(0.8, color="#4c72b0", alpha=0.3)
    ax.axhline(0.05, color="#dd8452", alpha=0.3)
    ax.set_xlabel("users per variant")
    ax.set_ylabel("share of simulated experiments")
    ax.set_ylim(0, 1)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_serving_share(measured, targets: dict[str, float], title: str) -> Figure:
    """Share of in-process throughput kept when served, against the model's compute per sample.

    `measured` has columns configuration, ms per sample and share; `targets` draws a dashed line
    per configuration name (e.g. {"Triton with batching": 0.8}). Introduced in 12_serving_share.
    """
    fig, ax = plt.subplots(figsize=(7.5, 4.5))
    plt.close(fig)
    colors = {}
    for configuration, rows in measured.sort_values("ms per sample").groupby("configuration", sort=True):
        line, = ax.plot(rows["ms per sample"], rows["share"], marker="o", label=configuration)
        colors[configuration] = line.get_color()
    for configuration, level in targets.items():
        ax.axhline(level, linestyle="--", linewidth=1, color=colors.get(configuration, "grey"),
                   label=f"target for {configuration}: {level}")
    ax.set_xscale("log")
    ax.set_ylim(0, max(1.1, 1.05 * measured["share"].max()))   # a share above 1 stays in view
    ax.set_xlabel("model compute per sample, ms (in-process, one thread, log scale)")
    ax.set_ylabel("served / in-process samples per second")
    ax.set_title(title)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    return fig


def plot_lines(series: dict[str, Sequence[float]], xlabel: str, ylabel: str, title: str,
               x: Sequence[float] | None = None, log_y: bool = False) -> Figure:
    """One line per named series (e.g. a training loss per step, a time per generated token).

    `x` gives the x values shared by all series (default 1, 2, 3, ...). Introduced in 13_language_model.
    """
    fig, ax = plt.subplots(figsize=(7, 4))
    plt.close(fig)
    for name, values in series.items():
        ax.plot(x if x is not None else range(1, len(values) + 1), values, label=name, marker="o" if x else None)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if log_y:
        ax.set_yscale("log")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    if len(series) > 1:
        ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_llm_metrics(table, title: str) -> Figure:
    """TTFT, ITL, output tokens/s and goodput against concurrency, one line per `setup`.

    `table` is what llm_metrics.llm_table() returns. Introduced in 15_continuous_batching.
    """
    panels = [("TTFT p50 ms", "time to first token, p50 (ms)", True), ("ITL p50 ms", "inter-token latency, p50 (ms)", False),
              ("output tokens/s", "output tokens / second", False), ("goodput req/s", "goodput (requests/s within the SLO)", False)]
    fig, axes = plt.subplots(1, 4, figsize=(18, 4))
    plt.close(fig)
    for ax, (column, label, log_scale) in zip(axes, panels):
        for setup, rows in table.groupby("setup", sort=False):
            ax.plot(rows["concurrency"], rows[column], marker="o", label=setup)
        ax.set_xlabel("concurrency")
        ax.set_ylabel(label)
        ax.set_xscale("log", base=2)
        if log_scale:
            ax.set_yscale("log")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_cascade(table, title: str) -> Figure:
    """Accuracy against time per request: the cascade's thresholds as one line, other setups as stars.

    `table` has columns setup ("cascade <threshold>" for the cascade's rows), "ms per request" and
    accuracy. Introduced in 17_bls_cascade.
    """
    fig, ax = plt.subplots(figsize=(7, 4))
    plt.close(fig)
    cascade = table[table["setup"].str.startswith("cascade")]
    others = table[~table["setup"].str.startswith("cascade")]
    ax.plot(cascade["ms per request"], cascade["accuracy"], marker="o", label="cascade, by threshold")
    for index, (setup, ms, accuracy) in enumerate(zip(cascade["setup"], cascade["ms per request"], cascade["accuracy"])):
        ax.annotate(setup.removeprefix("cascade "), (ms, accuracy), textcoords="offset points",
                    xytext=(4, 6 if index % 2 else -12), fontsize=8)
    for setup, ms, accuracy in zip(others["setup"], others["ms per request"], others["accuracy"]):
        ax.plot([ms], [accuracy], marker="*", markersize=12, linestyle="none", label=setup)
    ax.set_xlabel("time per request at concurrency 1 (ms, 1 / requests per second)")
    ax.set_ylabel("accuracy on the held-out digits")
    ax.legend(fontsize=8, loc="lower right")
    ax.grid(alpha=0.3)
    ax.set_title(title)
    fig.tight_layout()
    return fig


def plot_frontier(table: "pd.DataFrame", frontier_rows: "pd.DataFrame", slo_ms: float, chosen: "pd.Series | None",
                  title: str, latency: str = "p99_ms") -> Figure:
    """Every measurement of a sweep (one marker a setup), the latency-throughput frontier, the SLO and the pick.

    `table` is tuning.sweep()'s; `frontier_rows` tuning.latency_frontier()'s; `chosen` the row picked (or None).
    Up and to the left is better; only points left of the SLO line are allowed.
    Introduced in 21_tuning_to_an_slo.
    """
    fig, ax = plt.subplots(figsize=(7.5, 4.5))
    plt.close(fig)
    markers = "osD^vP*X"
    for index, (setup, rows) in enumerate(table.groupby("setup", sort=False)):
        ax.plot(rows[latency], rows["throughput"], marker=markers[index % len(markers)], linestyle=":",
                alpha=0.8, label=setup)
    ordered = frontier_rows.sort_values(latency)
    ax.step(ordered[latency], ordered["throughput"], where="post", color="black", linewidth=1.5, label="frontier")
    ax.axvline(slo_ms, color="red", linestyle="--", label=f"SLO: {latency.removesuffix('_ms')} <= {slo_ms:g} ms")
    if chosen is not None:
        ax.plot([chosen[latency]], [chosen["throughput"]], marker="*", markersize=18, color="gold",
                markeredgecolor="black", linestyle="none", label=f"chosen: {chosen['setup']} at c={chosen['concurrency']}")
    ax.set_xscale("log")
    ax.xaxis.set_major_formatter(ScalarFormatter())
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xticks([tick for tick in (0.5, 1, 2, 5, 10, 20, 50, 100, 200, 500)
                   if table[latency].min() / 2 <= tick <= table[latency].max() * 2])
    ax.set_xlabel(f"{latency.removesuffix('_ms')} latency (ms, log scale)")
    ax.set_ylabel("inferences / second")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7, loc="upper left")
    ax.set_title(title)
    fig.tight_layout()
    return fig


def plot_timeline(panels: "dict[str, pd.DataFrame]", phases: dict[str, tuple[float, float]], title: str) -> Figure:
    """Panels of Prometheus range queries over one run (seconds on x), the phases of the run shaded.

    `panels` maps a panel's y label to a table from Prometheus.range_frame() (one line per column);
    `phases` maps a phase's name to its (start, end) in the same seconds.
    Introduced in 22_watching_servers.
    """
    fig, axes = plt.subplots(len(panels), 1, figsize=(8, 2.1 * len(panels)), sharex=True, squeeze=False)
    plt.close(fig)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for ax, (ylabel, frame) in zip(axes[:, 0], panels.items()):
        for column in frame.columns:
            ax.plot(frame.index, frame[column], marker=".", markersize=3, label=str(column))
        for index, (name, (start, end)) in enumerate(phases.items()):
            ax.axvspan(start, end, color=colors[(index + 3) % len(colors)], alpha=0.12,
                       label=name if ax is axes[0, 0] else None)
        ax.set_ylabel(ylabel, fontsize=8)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="upper left", ncol=4)
    axes[-1, 0].set_xlabel("seconds since the run started (Prometheus samples, one a second)")
    axes[0, 0].set_title(title)
    fig.tight_layout()
    return fig
