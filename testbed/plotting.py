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


LABEL_CHARS = 60
"""Longest policy label drawn as it is; a longer one (a clone or model under a deep directory)
keeps its kind and the end of its path (:func:`short_label`), so the panels keep their width
(every committed figure's labels are shorter)."""


def short_label(label: str, limit: int = LABEL_CHARS) -> str:
    """``label`` if it has at most ``limit`` characters, else its kind (``clone:``,
    ``expert:sb3:``) and as much of the end as fits, after an ellipsis:
    ``clone:…/highway-fast/clone``."""
    if len(label) <= limit:
        return label
    head, sep, path = label.rpartition(":")
    prefix = f"{head}{sep}…" if len(head) + 2 < limit else "…"
    tail = path[-(limit - len(prefix)) :]  # without a kind, rpartition leaves the whole label in path
    if "/" in tail[1:]:
        tail = tail[tail.index("/", 1) :]  # from a whole path component
    return prefix + tail


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
    policies = [short_label(str(p)) for p in summary["policy"]]
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


def _expert_clone_bars(
    ax, table: pd.DataFrame, metric: str, ylabel: str, *, labels: Sequence[str], tick_fontsize: float | None = None
) -> None:
    """One panel: the expert's and the clone's ``metric`` side by side per row of ``table``
    (``expert_<metric>``/``clone_<metric>`` with ``_ci_low``/``_ci_high``; a role whose column
    is missing is left out), 95% CI error bars."""
    x = np.arange(len(table))
    for k, (role, offset) in enumerate((("expert", -0.2), ("clone", 0.2))):
        column = f"{role}_{metric}"
        if column not in table:
            continue
        v = table[column].to_numpy(dtype=float)
        err = np.vstack([v - table[f"{column}_ci_low"], table[f"{column}_ci_high"] - v])
        ax.bar(x + offset, v, width=0.4, yerr=err, capsize=3, label=role, color=f"C{k}")
    ax.set_xticks(x, labels, **({} if tick_fontsize is None else {"fontsize": tick_fontsize}))
    ax.set_ylabel(ylabel)
    ax.grid(axis="y", alpha=0.3)


def plot_experts_and_clones(cells: pd.DataFrame, *, labels: Sequence[str], title: str = ""):
    """Return and crash rate of each expert and of its BC clone (``experiments/experts.py``).

    Args:
        cells: one row per (expert, scenario) with ``expert_<m>``/``clone_<m>`` and their CI
            columns for ``m`` in return, crashed (the expert's may be missing: a human).
        labels: x tick label per row.
        title: figure title.
    """
    fig, axes = _figure(2, width_per_panel=max(8, 1.4 * len(cells) + 3) / 2, height=4.2)
    for ax, metric, name in zip(axes[0], ("return", "crashed"), ("return", "crash rate")):
        _expert_clone_bars(ax, cells, metric, name, labels=labels, tick_fontsize=7)
        ax.legend()
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return fig


def plot_sensors(summary: pd.DataFrame, *, title: str = ""):
    """Per sensor: return and crash rate of the expert and of the clone that sees through it,
    and the bare ``env.step`` time (``experiments/sensors.py``).

    Args:
        summary: one row per sensor: ``sensor``, ``env_step_ms`` [ms] and ``expert_<m>``/
            ``clone_<m>`` with their CI columns for ``m`` in return, crashed.
        title: figure title.
    """
    fig, axes = _figure(3, height=3.8)
    for ax, metric, name in zip(axes[0][:2], ("return", "crashed"), ("return", "crash rate")):
        _expert_clone_bars(ax, summary, metric, name, labels=summary["sensor"])
        ax.legend(fontsize=8)
    x = np.arange(len(summary))
    step_ax = axes[0][2]
    step_ax.bar(x, summary["env_step_ms"], color="C2")
    step_ax.set_xticks(x, summary["sensor"])
    step_ax.set_ylabel("env.step [ms]")
    step_ax.grid(axis="y", alpha=0.3)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return fig


def plot_leaderboard(ranking: pd.DataFrame, *, title: str = ""):
    """Normalized score per policy with its 95% CI, best at the top.

    Args:
        ranking: :attr:`testbed.leaderboard.Leaderboard.ranking` (``policy``, ``n_scenarios``,
            ``normalized_score`` with ``_ci_low``/``_ci_high``), best first.
        title: figure title.
    """
    r = ranking.iloc[::-1]
    fig, axes = _figure(1, width_per_panel=8, height=0.45 * len(r) + 1.5)
    ax = axes[0][0]
    v = r["normalized_score"].to_numpy(dtype=float)
    ax.barh(range(len(r)), v, xerr=[v - r["normalized_score_ci_low"], r["normalized_score_ci_high"] - v], capsize=3)
    ax.set_yticks(range(len(r)), [f"{p[-45:]} ({n} sc.)" for p, n in zip(r["policy"], r["n_scenarios"])], fontsize=8)
    ax.axvline(0, color="k", lw=0.8)
    ax.axvline(1, color="k", lw=0.8, ls="--")
    ax.set_xlabel("normalized score: (policy - random) / (expert - random), mean over scenarios")
    ax.set_title(title, fontsize=9)
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    return fig


def _row_labels(frame: pd.DataFrame) -> list[str]:
    return [f"{t}, {s}" for t, s in zip(frame["teacher"], frame["sensor"])]


def plot_realizability(curve: pd.DataFrame, decomposition: pd.DataFrame, *, title: str = ""):
    """Learning curves (validation accuracy vs demonstration episodes, one line per teacher x
    sensor row) and the decomposition of each row's ``eps_on`` into realizability, estimation
    and shift bars (``experiments/realizability.py``).

    Args:
        curve: ``teacher``, ``sensor``, ``n_episodes``, ``val_accuracy`` with its CI columns.
        decomposition: one row per teacher x sensor: ``realizability_gap``, ``estimation_gap``,
            ``shift`` with CI columns, and ``eps_on``.
        title: figure title.
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    fig, (ax, bars) = plt.subplots(1, 2, figsize=(11, 4.2))
    for i, (label, g) in enumerate(curve.assign(row=_row_labels(curve)).groupby("row", sort=False)):
        g = g.sort_values("n_episodes")
        err = [g["val_accuracy"] - g["val_accuracy_ci_low"], g["val_accuracy_ci_high"] - g["val_accuracy"]]
        ax.errorbar(g["n_episodes"], g["val_accuracy"], yerr=err, marker="o", capsize=3, color=f"C{i}", label=label)
    ax.set_xscale("log")
    sizes = sorted(set(curve["n_episodes"]))
    ax.set_xticks(sizes, [str(n) for n in sizes])
    ax.minorticks_off()
    ax.set_xlabel("demonstration episodes")
    ax.set_ylabel("validation accuracy on the teacher's states")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title("learning curves (95% Clopper-Pearson)", fontsize=9)

    terms = (("realizability_gap", "realizability (1 - acc_sat)"), ("estimation_gap", "estimation"), ("shift", "shift"))
    x = np.arange(len(decomposition))
    width = 0.8 / len(terms)
    for k, (col, name) in enumerate(terms):
        v = decomposition[col].to_numpy(dtype=float)
        bar_err = np.vstack([v - decomposition[f"{col}_ci_low"], decomposition[f"{col}_ci_high"] - v])
        bars.bar(x + (k - 1) * width, v, width=width, yerr=bar_err, capsize=3, color=f"C{k + 4}", label=name)
    bars.scatter(
        x, decomposition["eps_on"], marker="_", s=400, color="k", zorder=3, label="eps_on (their sum, roughly)"
    )
    bars.set_xticks(x, [lbl.replace(", ", "\n") for lbl in _row_labels(decomposition)], fontsize=8)
    bars.axhline(0, color="k", lw=0.8)
    top = max(decomposition["eps_on"].max(), *(decomposition[f"{c}_ci_high"].max() for c, _ in terms))
    bars.set_ylim(top=1.45 * top)  # room for the legend above the bars
    bars.set_ylabel("disagreement with the teacher")
    bars.grid(axis="y", alpha=0.3)
    bars.legend(fontsize=7)
    bars.set_title("decomposition of the closed-loop clone's eps_on (95% CIs)", fontsize=9)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def plot_shift_bins(bins: pd.DataFrame, *, title: str = ""):
    """On- vs off-policy disagreement per bin of decision steps, one panel per teacher x sensor
    row (:func:`testbed.drift.step_bins` columns with ``teacher`` and ``sensor``)."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    groups = list(bins.assign(row=_row_labels(bins)).groupby("row", sort=False))
    fig, axes = plt.subplots(1, len(groups), figsize=(3.6 * len(groups), 3.4), sharey=True, squeeze=False)
    for ax, (label, g) in zip(axes[0], groups):
        mid = (g["step_lo"] + g["step_hi"]) / 2
        for k, (col, name) in enumerate(
            (("eps_on", "eps_on(t): clone's states"), ("eps_off", "eps_off(t): teacher's"))
        ):
            ax.plot(mid, g[col], marker="o", color=f"C{k}", label=name)
            ax.fill_between(mid, g[f"{col}_ci_low"], g[f"{col}_ci_high"], color=f"C{k}", alpha=0.2)
        ax.set_title(label, fontsize=9)
        ax.set_xlabel("decision step (bin centre)")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("disagreement with the teacher")
    axes[0][0].legend(fontsize=7)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return fig


def plot_data_scaling(summary: pd.DataFrame, cells: pd.DataFrame, *, sizes: Sequence[int], title: str = ""):
    """Return, crash rate, validation accuracy and normalized score against the number of
    demonstration episodes: each clone as a dot, the mean over training seeds with its 95% CI,
    and the baselines (``summary`` rows whose policy is not ``bc``) as dashed lines.

    Args:
        summary: rows ``policy == "bc"`` per ``n_demo_episodes`` and one per baseline, each
            metric with CI columns.
        cells: one row per clone (``n_demo_episodes`` and the metrics).
        sizes: the data sizes (x ticks).
        title: figure title.
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    bc = summary[summary["policy"] == "bc"]
    refs = summary[summary["policy"] != "bc"].set_index("policy")
    fig, axes = plt.subplots(2, 2, figsize=(9, 6.5))
    panels = (
        ("return", "closed-loop return"),
        ("crash_rate", "crash rate"),
        ("val_accuracy", "validation action accuracy"),
        ("normalized_score", "normalized score"),
    )
    for ax, (col, label) in zip(axes.flat, panels):
        ax.scatter(cells["n_demo_episodes"], cells[col], s=8, alpha=0.35, color="C0")
        ax.errorbar(
            bc["n_demo_episodes"],
            bc[col],
            yerr=[bc[col] - bc[f"{col}_ci_low"], bc[f"{col}_ci_high"] - bc[col]],
            marker="o",
            capsize=3,
            color="C0",
            label="BC (mean over seeds, 95% CI)",
        )
        if col != "val_accuracy":
            for i, (policy, row) in enumerate(refs.iterrows()):
                ax.axhline(row[col], ls="--", lw=1, color=f"C{i + 1}", label=policy)
        ax.set_xscale("log")
        ax.xaxis.set_minor_locator(matplotlib.ticker.NullLocator())
        ax.set_xticks(list(sizes), [str(n) for n in sizes])
        ax.set_xlabel("demonstration episodes")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3, which="both")
    axes.flat[0].legend(fontsize=7)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return fig


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def _errorbar(ax, x, frame: pd.DataFrame, column: str, **kwargs) -> None:
    """``frame[column]`` at ``x`` with its ``_ci_low``/``_ci_high`` columns as error bars."""
    y = frame[column]
    ax.errorbar(x, y, yerr=[y - frame[f"{column}_ci_low"], frame[f"{column}_ci_high"] - y], **kwargs)


def plot_methods_by_budget(methods: pd.DataFrame, *, order: Sequence[str], budgets: Sequence[int], title: str = ""):
    """Return, crash rate, eps_on (dashed: eps_off) and the same-step shift of each method
    against its training-label budget, with 95% CIs; the expert's return and crash rate dotted.

    Args:
        methods: one row per method and budget (``method``, ``budget``, the four columns with
            their intervals, ``eps_off``), and one row with ``method == "expert"``.
        order: the methods drawn (colour ``C<i>``).
        budgets: the x ticks [training labels].
        title: figure title.
    """
    import matplotlib.ticker

    plt = _pyplot()
    m = methods[methods["method"].isin(order)]
    expert = methods[methods["method"] == "expert"].iloc[0]
    fig, axes = plt.subplots(2, 2, figsize=(10, 7))
    panels = (
        ("return", "closed-loop return"),
        ("crash_rate", "crash rate"),
        ("eps_on", "eps_on (dashed: eps_off)"),
        ("shift", "eps_on(t) - eps_off(t), same seed and step"),
    )
    for ax, (col, label) in zip(axes.flat, panels):
        for i, (name, g) in enumerate(m.groupby("method", sort=False)):
            x = g["budget"] * (1 + 0.04 * (i - 1))  # side by side
            _errorbar(ax, x, g, col, marker="o", capsize=3, color=f"C{i}", label=name)
            if col == "eps_on":
                _errorbar(ax, x, g, "eps_off", marker="s", ls="--", capsize=3, color=f"C{i}")
        if col in ("return", "crash_rate"):
            ax.axhline(expert[col], color="k", ls=":", lw=1, label="expert")
        if col == "shift":
            ax.axhline(0, color="k", lw=0.8)
        ax.set_xscale("log")
        ax.xaxis.set_minor_locator(matplotlib.ticker.NullLocator())
        ax.set_xticks(list(budgets), [str(b) for b in budgets])
        ax.set_xlabel("training labels")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    axes.flat[0].legend(fontsize=8)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return fig


def plot_step_errors(steps: pd.DataFrame, *, order: Sequence[str], budget: int):
    """eps_on(t) (solid, with its band) and eps_off(t) (dashed) per method at one budget.

    Args:
        steps: rows of :func:`testbed.drift.step_error_rows` by ``method`` and ``budget``.
        order: the methods drawn.
        budget: the budget drawn [training labels].
    """
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.5, 4))
    for i, name in enumerate(order):
        for kind, ls in (("eps_on", "-"), ("eps_off", "--")):
            g = steps[(steps["method"] == name) & (steps["budget"] == budget) & (steps["kind"] == kind)]
            ax.plot(g["step"], g["error"], ls=ls, color=f"C{i}", label=f"{name} {kind}")
            if kind == "eps_on":
                ax.fill_between(g["step"], g["error_ci_low"], g["error_ci_high"], color=f"C{i}", alpha=0.15)
    ax.set_xlabel("decision step t")
    ax.set_ylabel("disagreement with the expert at step t")
    ax.set_title(f"Own states (solid) vs the expert's (dashed) at {budget} training labels", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, ncol=3)
    fig.tight_layout()
    return fig


def plot_open_vs_closed(clones: pd.DataFrame, *, order: Sequence[str], budgets: Sequence[int]):
    """Each clone's validation accuracy against its closed-loop return and crash rate
    (colour: budget, marker: method).

    Args:
        clones: one row per clone: ``method``, ``budget``, ``val_accuracy``, ``return``,
            ``crash_rate``.
        order: the methods drawn (markers o, ^, s).
        budgets: the budgets drawn (colour ``C<j>``).
    """
    plt = _pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.6))
    for ax, col in zip(axes, ("return", "crash_rate")):
        for j, b in enumerate(budgets):
            for marker, name in zip("o^sDv", order):
                g = clones[(clones["budget"] == b) & (clones["method"] == name)]
                label = f"{name}, {b}" if col == "return" else None
                ax.scatter(g["val_accuracy"], g[col], marker=marker, color=f"C{j}", s=18, label=label)
        ax.set_xlabel("validation action accuracy (open loop, common set)")
        ax.set_ylabel(f"closed-loop {col.replace('_', ' ')}")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=6, ncol=len(budgets))
    fig.suptitle(
        "Open vs closed loop per clone (colour: training labels; within-budget correlations: open_vs_closed.csv)",
        fontsize=8,
    )
    fig.tight_layout()
    return fig


def plot_horizon_costs(costs: pd.DataFrame, fits: pd.DataFrame, *, variants: Sequence[str], groups: Sequence[str]):
    """Mean cost per episode against the horizon T (95% CIs) with the fit ``a T + b T^2``, one
    panel per variant, one colour per policy group.

    Args:
        costs: ``variant``, ``group``, ``T``, ``cost`` with its interval.
        fits: ``variant``, ``group``, ``a``, ``b`` (:func:`testbed.drift.horizon_fit_ci`).
        variants: the panels; ``groups``: the groups drawn (colour ``C<i>``).
    """
    plt = _pyplot()
    fits = fits.set_index(["variant", "group"])
    fig, axes = plt.subplots(1, len(variants), figsize=(10, 3.8))
    grid = np.linspace(0, costs["T"].max(), 100)
    for ax, variant in zip(axes, variants):
        for i, g in enumerate(groups):
            c = costs[(costs["variant"] == variant) & (costs["group"] == g)]
            if c.empty:
                continue
            _errorbar(ax, c["T"], c, "cost", marker="o", ls="", capsize=3, color=f"C{i}", label=g)
            f = fits.loc[(variant, g)]
            ax.plot(grid, f["a"] * grid + f["b"] * grid**2, color=f"C{i}", lw=1)
        ax.set_title(f"{variant}: collisions per episode, fit aT + bT^2", fontsize=9)
        ax.set_xlabel("horizon T [decisions]")
        ax.set_ylabel("cost C(T)")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    return fig


def plot_hazard_and_shift(
    hazard: pd.DataFrame, errors: pd.DataFrame, *, variants: Sequence[str], groups: Sequence[str]
):
    """Per variant (columns): the binned collision hazard (top) and the same-step error
    difference eps_on(t) - eps_off(t) (bottom) of each policy group, with 95% CIs.

    Args:
        hazard: ``variant``, ``group``, ``step_lo``, ``step_hi``, ``hazard`` with its interval
            (:func:`testbed.drift.hazard_curve`).
        errors: ``variant``, ``group``, ``step_lo``, ``step_hi``, ``shift`` with its interval
            (:func:`testbed.drift.binned_error_rows`); a group without rows (the expert) is
            left out of the bottom row.
        variants: the columns; ``groups``: the groups drawn (colour ``C<i>``).
    """
    plt = _pyplot()
    fig, axes = plt.subplots(2, len(variants), figsize=(10, 6.5), sharex=True)
    for col, variant in enumerate(variants):
        for i, g in enumerate(groups):
            h = hazard[(hazard["variant"] == variant) & (hazard["group"] == g)]
            e = errors[(errors["variant"] == variant) & (errors["group"] == g)]
            if not h.empty:
                mid = (h["step_lo"] + h["step_hi"]) / 2
                _errorbar(axes[0, col], mid, h, "hazard", marker="o", capsize=2, color=f"C{i}", label=g)
            if not e.empty:
                emid = (e["step_lo"] + e["step_hi"]) / 2
                axes[1, col].plot(emid, e["shift"], marker="o", color=f"C{i}")
                axes[1, col].fill_between(emid, e["shift_ci_low"], e["shift_ci_high"], color=f"C{i}", alpha=0.15)
        axes[0, col].set_title(f"{variant}: collision hazard per step (every horizon's episodes)", fontsize=9)
        axes[1, col].set_title("eps_on(t) - eps_off(t), same seed and step", fontsize=9)
        axes[1, col].axhline(0, color="k", lw=0.8)
        axes[1, col].set_xlabel("decision step t")
        for ax in axes[:, col]:
            ax.grid(alpha=0.3)
    axes[0, 0].legend(fontsize=7)
    fig.tight_layout()
    return fig


def plot_value_gaps(errors: pd.DataFrame, gaps: pd.DataFrame, *, variant: str, groups: Sequence[str]):
    """The 0/1 disagreement and the cost-weighted error side by side, per decision bin and
    group of ``variant``, with 95% CIs: eps_on(t), the share of steps whose action differs from
    the expert's (left); ``costly``, the share whose action loses value by the scorer's action
    values (middle); ``value_gap``, the mean value lost per step (right).

    Args:
        errors: ``variant``, ``group``, ``step_lo``, ``step_hi``, ``eps_on`` with its interval
            (:func:`testbed.drift.binned_error_rows`).
        gaps: ``variant``, ``group``, ``step_lo``, ``step_hi``, ``costly`` and ``value_gap`` with
            their intervals (:func:`testbed.drift.value_gap_table`).
        variant: the variant drawn; ``groups``: the groups (colour ``C<i>``, as the other figures).
    """
    plt = _pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.8), sharex=True)
    panels = (
        (errors, "eps_on", "eps_on(t): action differs from the expert's"),
        (gaps, "costly", "share of steps that lose value"),
        (gaps, "value_gap", "value lost per step (scorer's units)"),
    )
    for ax, (frame, column, title) in zip(axes, panels):
        for i, g in enumerate(groups):
            rows = frame[(frame["variant"] == variant) & (frame["group"] == g)].dropna(subset=[column])
            if not rows.empty:
                mid = (rows["step_lo"] + rows["step_hi"]) / 2
                _errorbar(ax, mid, rows, column, marker="o", capsize=2, color=f"C{i}", label=g)
        ax.set_title(f"{variant}: {title}", fontsize=9)
        ax.set_xlabel("decision step t")
        ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3)
    axes[-1].legend(fontsize=7)
    fig.tight_layout()
    return fig


def plot_recoverability(
    table: pd.DataFrame, *, takeovers: Sequence[str], handover_times: Sequence[int], window: int, title: str = ""
):
    """Handover against the expert's own windows against the clone keeping the wheel, per
    handover time t, with 95% CIs: crash rate and return in the window (top), and the
    handover's paired differences to the expert's own windows (bottom).

    Args:
        table: ``takeover``, ``group`` (``handover``, ``expert-own``, ``clone-keeps``), ``t``,
            and ``crash_rate``, ``return``, ``crash_diff``, ``return_diff`` with their
            intervals (``experiments/recoverability.py``).
        takeovers: the experts that take over (colour ``C<i>``); the clone's own rows are
            drawn once, grey.
        handover_times: the x ticks; ``window``: decisions per window (axis label).
        title: figure title.
    """
    plt = _pyplot()
    fig, axes = plt.subplots(2, 2, figsize=(10, 7))
    labels = {
        "crash_rate": f"crash rate in the window of {window} decisions",
        "return": "return in the window",
        "crash_diff": "crash rate - expert-own (paired by seed)",
        "return_diff": "return - expert-own (paired by seed)",
    }
    styles = {"handover": ("o", "-"), "expert-own": ("s", "--"), "clone-keeps": ("^", ":")}
    lines = [(e, g) for e in takeovers for g in styles]
    for ax, col in zip(axes.flat, labels):
        for i, (expert, group) in enumerate(lines):
            rows = table[(table["takeover"] == expert) & (table["group"] == group)].sort_values("t")
            diff = col.endswith("diff")
            if rows.empty or (diff and group == "expert-own"):  # 0 by definition
                continue
            if group == "clone-keeps" and expert != takeovers[0] and not diff:
                continue  # the clone's own rows are the same for every takeover expert
            color = "0.4" if group == "clone-keeps" and not diff else f"C{list(takeovers).index(expert)}"
            label = group if group == "clone-keeps" else f"{group}: {expert}"
            y = rows[col]
            err = [y - rows[f"{col}_ci_low"], rows[f"{col}_ci_high"] - y]
            x = rows["t"] + 0.25 * (i - len(lines) / 2)  # side by side
            marker, ls = styles[group]
            ax.errorbar(x, y, yerr=err, marker=marker, ls=ls, capsize=3, color=color, label=label)
        if col.endswith("diff"):
            ax.axhline(0, color="k", lw=0.8)
        ax.set_xticks(list(handover_times))
        ax.set_xlabel("handover time t [decisions the clone drove]")
        ax.set_ylabel(labels[col], fontsize=8)
        ax.grid(alpha=0.3)
    axes.flat[0].legend(fontsize=7)
    fig.suptitle(title, fontsize=9)
    return fig


def plot_hazard_ratio_and_density(
    ratios: pd.DataFrame,
    density: pd.DataFrame,
    fits: pd.DataFrame,
    *,
    variants: Sequence[str],
    groups: Sequence[str],
    reference: str = "expert",
):
    """Per variant (columns): the hazard ratio of each group to ``reference`` per bin on a log
    scale with its 95% interval (top; the legend gives the trend, the slope of the log ratio per
    100 decisions, with its interval), and the mean number of vehicles near the ego per bin
    (bottom), every group. Tables with a ``reference`` column are filtered to ``reference``.

    Args:
        ratios: ``variant``, ``group``, ``step_lo``, ``step_hi``, ``hazard_ratio`` with its
            interval (:func:`testbed.hazard.hazard_ratios`; NaN bins are not drawn).
        density: ``variant``, ``group``, ``step_lo``, ``step_hi``, ``nearby``, ``nearby_min``,
            ``nearby_max`` (:func:`testbed.hazard.density_rows`).
        fits: ``variant``, ``group``, ``hr_trend`` with its interval
            (:func:`testbed.hazard.hazard_trends`).
        variants: the columns; ``groups``: the groups (colour ``C<i>``, as the other figures).
    """
    plt = _pyplot()
    import matplotlib.ticker

    fig, axes = plt.subplots(2, len(variants), figsize=(10, 6.5), sharex=True)
    if "reference" in ratios:
        ratios = ratios[ratios["reference"] == reference]
    if "reference" in fits:
        fits = fits[fits["reference"] == reference]
    trends = fits.set_index(["variant", "group"])
    for col, variant in enumerate(variants):
        for i, g in enumerate(groups):
            r = ratios[(ratios["variant"] == variant) & (ratios["group"] == g)].dropna(subset=["hazard_ratio"])
            d = density[(density["variant"] == variant) & (density["group"] == g)]
            if not r.empty:
                label = g
                if (
                    (variant, g) in trends.index
                    and "hr_trend" in trends
                    and pd.notna(trends.loc[(variant, g), "hr_trend"])
                ):
                    f = trends.loc[(variant, g)]
                    label += (
                        f" (trend {f['hr_trend']:+.2f} [{f['hr_trend_ci_low']:+.2f}, {f['hr_trend_ci_high']:+.2f}])"
                    )
                mid = (r["step_lo"] + r["step_hi"]) / 2 + (i - len(groups) / 2) * 0.6  # spread the bars
                _errorbar(axes[0, col], mid, r, "hazard_ratio", marker="o", capsize=2, color=f"C{i}", label=label)
            if not d.empty:
                dmid = (d["step_lo"] + d["step_hi"]) / 2
                axes[1, col].plot(dmid, d["nearby"], marker=".", color=f"C{i}", label=g)
                axes[1, col].fill_between(dmid, d["nearby_min"], d["nearby_max"], color=f"C{i}", alpha=0.08)
        axes[0, col].set_yscale("log")
        axes[0, col].yaxis.set_major_formatter(matplotlib.ticker.FormatStrFormatter("%g"))
        axes[0, col].yaxis.set_minor_formatter(matplotlib.ticker.FormatStrFormatter("%g"))
        axes[0, col].axhline(1, color="k", lw=0.8)
        axes[0, col].set_title(f"{variant}: hazard ratio to {reference} (per vehicle-step)", fontsize=9)
        if axes[0, col].get_legend_handles_labels()[0]:
            axes[0, col].legend(fontsize=6, title="log-ratio slope per 100 decisions", title_fontsize=6)
        axes[1, col].set_title("vehicles near the ego: mean (line), episodes' range (band)", fontsize=9)
        axes[1, col].set_xlabel("decision step t")
        for ax in axes[:, col]:
            ax.grid(alpha=0.3, which="both")
    axes[1, 0].legend(fontsize=7)
    fig.tight_layout()
    return fig
