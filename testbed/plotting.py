"""Figures from summaries. Tables in, matplotlib ``Figure`` out: no statistics, no file I/O."""

from __future__ import annotations

from typing import Sequence

import pandas as pd


def _figure(n_panels: int, width_per_panel: float = 4.0, height: float = 3.4):
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt.subplots(1, n_panels, figsize=(width_per_panel * n_panels, height), squeeze=False)


def plot_summary(
    summary: pd.DataFrame,
    *,
    metrics: Sequence[tuple[str, str]] = (("return", "Episode return"), ("crashed", "Crash rate")),
    title: str | None = None,
):
    """Bar chart per metric with 95% CI error bars, one bar per policy.

    Args:
        summary: a :func:`testbed.metrics.summarize` table (``<m>``, ``<m>_ci_low``,
            ``<m>_ci_high`` columns).
        metrics: (column, axis label) pairs, one panel each.
        title: figure title.

    Returns:
        The matplotlib Figure.
    """
    fig, axes = _figure(len(metrics))
    policies = [str(p) for p in summary["policy"]]
    colors = [f"C{i}" for i in range(len(policies))]
    for ax, (column, label) in zip(axes[0], metrics):
        mean = summary[column].to_numpy(dtype=float)
        err = [mean - summary[f"{column}_ci_low"].to_numpy(float), summary[f"{column}_ci_high"].to_numpy(float) - mean]
        ax.bar(range(len(policies)), mean, yerr=err, capsize=4, color=colors)
        ax.set_xticks(range(len(policies)), policies, rotation=20, ha="right", fontsize=8)
        ax.set_ylabel(label)
        ax.grid(axis="y", alpha=0.3)
        if column == "crashed":
            ax.set_ylim(0, 1.05)
    n = int(summary["n_episodes"].max())
    fig.suptitle(title or f"Mean with 95% bootstrap CI over {n} paired episodes", fontsize=10)
    fig.tight_layout()
    return fig


def plot_training_log(log: pd.DataFrame, *, title: str = "BC training"):
    """Loss and action accuracy per epoch (train and validation)."""
    fig, axes = _figure(2)
    ax_loss, ax_acc = axes[0]
    ax_loss.plot(log["epoch"], log["train/loss"], label="train")
    ax_loss.plot(log["epoch"], log["val/loss"], label="validation")
    ax_loss.set_xlabel("epoch")
    ax_loss.set_ylabel("BC loss")
    ax_acc.plot(log["epoch"], log["train/accuracy"], label="train")
    ax_acc.plot(log["epoch"], log["val/accuracy"], label="validation")
    ax_acc.set_xlabel("epoch")
    ax_acc.set_ylabel("action accuracy")
    for ax in (ax_loss, ax_acc):
        ax.legend()
        ax.grid(alpha=0.3)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig
