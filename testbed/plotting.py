"""Figures from summaries. Tables in, matplotlib ``Figure`` out: no statistics, no file I/O."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
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
    fit = "accuracy" if "train/accuracy" in log else "action_mae"  # action_mae: continuous actions
    ax_acc.plot(log["epoch"], log[f"train/{fit}"], label="train")
    ax_acc.plot(log["epoch"], log[f"val/{fit}"], label="validation")
    ax_acc.set_xlabel("epoch")
    ax_acc.set_ylabel("action accuracy" if fit == "accuracy" else "mean abs. action error")
    for ax in (ax_loss, ax_acc):
        ax.legend()
        ax.grid(alpha=0.3)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def plot_binned_curve(
    bins: pd.DataFrame,
    *,
    metrics: Sequence[tuple[str, str]],
    title: str = "",
):
    """Means with 95% CI bands over consecutive blocks of training steps, one panel per metric.

    Args:
        bins: one row per block: ``timesteps_from``, ``timesteps_to`` and, per metric ``m``,
            ``m``, ``m_ci_low``, ``m_ci_high`` (e.g. ``experiments/rl_expert.training_bins``).
        metrics: (column, axis label) pairs.
        title: figure title.
    """
    fig, axes = _figure(len(metrics))
    x = (bins["timesteps_from"].to_numpy(float) + bins["timesteps_to"].to_numpy(float)) / 2
    for ax, (column, label) in zip(axes[0], metrics):
        ax.plot(x, bins[column], marker="o")
        ax.fill_between(x, bins[f"{column}_ci_low"], bins[f"{column}_ci_high"], alpha=0.2)
        ax.set_xlabel("environment steps")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        if column == "crashed":
            ax.set_ylim(0, 1.05)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return fig


def plot_drift(curves: dict[str, pd.DataFrame], survival: pd.DataFrame, summary: pd.DataFrame, *, title: str = ""):
    """Four panels: twin position error by step, on-policy disagreement by step, survival,
    and eps_on vs eps_off per policy.

    Args:
        curves: ``{"position": df, "disagreement": df}`` where each df has columns ``policy``,
            ``step``, ``mean``, ``ci_low``, ``ci_high`` (from :func:`testbed.drift.step_curve`).
        survival: Kaplan-Meier table with ``policy``, ``step``, ``survival``, ``ci_low``,
            ``ci_high``.
        summary: :func:`testbed.drift.summarize_drift` table.
    """
    fig, axes = _figure(4, width_per_panel=3.8)
    ax_pos, ax_eps, ax_surv, ax_bar = axes[0]
    policies = list(dict.fromkeys(summary["policy"]))
    colors = {p: f"C{i}" for i, p in enumerate([*policies, *sorted(set(survival["policy"]) - set(policies))])}
    for ax, key, label in (
        (ax_pos, "position", "twin position error [m]"),
        (ax_eps, "disagreement", "on-policy disagreement"),
    ):
        df = curves[key]
        for policy, g in df.groupby("policy", sort=False):
            ax.plot(g["step"], g["mean"], color=colors[policy], label=policy)
            ax.fill_between(g["step"], g["ci_low"], g["ci_high"], color=colors[policy], alpha=0.2)
        ax.set_xlabel("decision step")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    for policy, g in survival.groupby("policy", sort=False):
        ax_surv.step(g["step"], g["survival"], where="post", color=colors[policy], label=policy)
        ax_surv.fill_between(g["step"], g["ci_low"], g["ci_high"], step="post", color=colors[policy], alpha=0.15)
    ax_surv.set_xlabel("decision step")
    ax_surv.set_ylabel("fraction without a crash")
    ax_surv.set_ylim(0, 1.02)
    ax_surv.grid(alpha=0.3)
    ax_surv.legend(fontsize=7)
    width = 0.38
    x = np.arange(len(policies))
    for offset, column, name in (
        (-width / 2, "eps_off", "eps_off (expert's states)"),
        (width / 2, "eps_on", "eps_on (own states)"),
    ):
        mean = summary[column].to_numpy(float)
        err = [mean - summary[f"{column}_ci_low"].to_numpy(float), summary[f"{column}_ci_high"].to_numpy(float) - mean]
        ax_bar.bar(x + offset, mean, width, yerr=err, capsize=3, label=name)
    ax_bar.set_xticks(x, policies, rotation=20, ha="right", fontsize=7)
    ax_bar.set_ylabel("disagreement with expert")
    ax_bar.legend(fontsize=7)
    ax_bar.grid(axis="y", alpha=0.3)
    fig.suptitle(title or "Compounding error: means with 95% CIs over episodes", fontsize=10)
    fig.tight_layout()
    return fig


def plot_matrix(
    panels: dict[str, np.ndarray],
    *,
    rows: Sequence[str],
    columns: Sequence[str],
    column_notes: Sequence[str] | None = None,
    title: str = "",
    row_label: str = "",
    column_label: str = "",
):
    """Heatmaps of (rows x columns) matrices, one panel per entry, each cell annotated.

    Args:
        panels: panel title -> array of shape (len(rows), len(columns)).
        rows: row names (top to bottom).
        columns: column names (left to right).
        column_notes: optional second line under each column name (e.g. a reference value).
        title: figure title.
        row_label: y-axis label.
        column_label: x-axis label.
    """
    fig, axes = _figure(len(panels), width_per_panel=1.3 * len(columns) + 2.0, height=1.0 * len(rows) + 2.4)
    ticks = [f"{c}\n{n}" for c, n in zip(columns, column_notes)] if column_notes else list(columns)
    for ax, (name, values) in zip(axes[0], panels.items()):
        image = ax.imshow(values, cmap="viridis", aspect="auto")
        fig.colorbar(image, ax=ax, shrink=0.8)
        for (i, j), v in np.ndenumerate(values):
            ax.text(
                j, i, f"{v:.2f}", ha="center", va="center", color="w" if v < np.nanmean(values) else "k", fontsize=8
            )
        ax.set_xticks(range(len(columns)), ticks, fontsize=7)
        ax.set_yticks(range(len(rows)), rows)
        ax.set_title(name)
        ax.set_xlabel(column_label)
        ax.set_ylabel(row_label)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def plot_aggregates(scores: pd.DataFrame, profiles: pd.DataFrame, *, order: Sequence[str], title: str = ""):
    """Aggregate scores across scenarios (rliable's two standard panels): the interquartile
    mean per policy with its 95% CI, and the performance profiles with their bands.

    Args:
        scores: :attr:`testbed.aggregate.Aggregates.scores` (``iqm`` with ``_ci_low``/``_ci_high``).
        profiles: :attr:`testbed.aggregate.Aggregates.profiles` (``tau``, ``fraction`` with CI).
        order: policies top to bottom (the leaderboard's ranking).
        title: figure title.
    """
    fig, axes = _figure(2, width_per_panel=5.0, height=0.4 * len(order) + 2.2)
    left, right = axes[0]
    colors = {p: f"C{i}" for i, p in enumerate(order)}
    rows = scores.set_index("policy").loc[[p for p in order if p in set(scores["policy"])]].iloc[::-1]
    v = rows["iqm"].to_numpy(dtype=float)
    err = [v - rows["iqm_ci_low"].to_numpy(dtype=float), rows["iqm_ci_high"].to_numpy(dtype=float) - v]
    left.barh(range(len(rows)), v, xerr=err, capsize=3, color=[colors[p] for p in rows.index])
    left.set_yticks(range(len(rows)), [p[-40:] for p in rows.index], fontsize=7)
    left.axvline(0, color="k", lw=0.8)
    left.axvline(1, color="k", lw=0.8, ls="--")
    left.set_xlabel("IQM of normalized score (95% CI)")
    for policy in rows.index[::-1]:
        p = profiles[profiles["policy"] == policy].sort_values("tau")
        right.plot(p["tau"], p["fraction"], color=colors[policy], lw=1.2, label=policy[-40:])
        right.fill_between(p["tau"], p["fraction_ci_low"], p["fraction_ci_high"], color=colors[policy], alpha=0.2)
    right.set_xlabel("normalized score tau")
    right.set_ylabel("fraction of runs with score > tau")
    right.legend(fontsize=6, loc="upper right")
    right.grid(alpha=0.3)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return fig
