"""The experiment kit: what every script in ``experiments/`` shares, so that a script reads as
its scientific design, top to bottom (like a CleanRL script), and the plumbing lives here.

A script in ``experiments/`` has

- ``Args``: a dataclass of its arguments (a docstring per field), usually extending
  :class:`StepArgs` (``workers``, ``fast``) and, when it reads earlier steps' results,
  :class:`UpstreamArgs` (``results``);
- ``main(args)``: runs the experiment into ``args.out`` (whole or not at all:
  :func:`testbed.outputs.atomic_output_dir`) and returns its main table;
- ``replot(out)``: redraws its figures from the CSVs a run left in ``out``;
- at the bottom, ``if __name__ == "__main__": run_script(main, Args)``.

:mod:`testbed.reproduce` runs ``main`` and ``replot`` of every script as the steps of one
queue (:mod:`testbed.scheduler`).

The kit's modules: :mod:`~testbed.kit.args` (arguments, presets, checks, ``run_script``),
:mod:`~testbed.kit.records` (records, tables, figures, output directories),
:mod:`~testbed.kit.clones` (demonstrations, clones, learning curves),
:mod:`~testbed.kit.cells` (sweep cells) and :mod:`~testbed.kit.seeded` (clones of several
training seeds); every name is here too (``kit.X``).
"""

from __future__ import annotations

from testbed.kit.args import (
    BCArgs,
    EvalArgs,
    SeedsArgs,
    StepArgs,
    UpstreamArgs,
    check_at_least_one,
    check_distinct_positive,
    fast_preset,
    run_script,
    upstream,
)
from testbed.kit.cells import (
    clone_cell,
    clone_error_table,
    context_from,
    context_sweep,
    evaluate_in_cell,
    sweep_clones,
)
from testbed.kit.clones import (
    Driver,
    LearningCurve,
    clone_spec,
    driven_demonstrations,
    driver_demonstrations,
    driver_episode_rows,
    every_label_config,
    learning_curve,
    save_dagger_clones,
    train_clone,
    train_clones,
    validation_score,
)
from testbed.kit.records import (
    clear_output,
    clone_vs_expert,
    clones_vs_expert,
    each_clone_vs_expert,
    experiment_record,
    interval_columns,
    print_table,
    save_figure,
    save_figures,
    save_laid_out_figure,
    staged_files,
    timed,
    write_results,
)
from testbed.kit.seeded import (
    DEMO_BLOCK,
    STATISTICS,
    CloneJob,
    Recipe,
    SeededClone,
    check_train_seeds,
    clone_recipe,
    demo_seeds,
    seeded_demos,
    seeded_episodes,
    seeded_summary,
    seeds_record,
    train_seeded,
)

__all__ = [
    "BCArgs",
    "CloneJob",
    "DEMO_BLOCK",
    "EvalArgs",
    "Driver",
    "LearningCurve",
    "Recipe",
    "SeededClone",
    "STATISTICS",
    "SeedsArgs",
    "StepArgs",
    "UpstreamArgs",
    "check_at_least_one",
    "check_distinct_positive",
    "check_train_seeds",
    "clear_output",
    "clone_cell",
    "clone_error_table",
    "clone_recipe",
    "clone_spec",
    "clone_vs_expert",
    "clones_vs_expert",
    "context_from",
    "context_sweep",
    "demo_seeds",
    "driven_demonstrations",
    "driver_demonstrations",
    "driver_episode_rows",
    "each_clone_vs_expert",
    "evaluate_in_cell",
    "every_label_config",
    "experiment_record",
    "fast_preset",
    "interval_columns",
    "learning_curve",
    "print_table",
    "run_script",
    "save_dagger_clones",
    "save_figure",
    "save_figures",
    "save_laid_out_figure",
    "seeded_demos",
    "seeded_episodes",
    "seeded_summary",
    "seeds_record",
    "staged_files",
    "sweep_clones",
    "timed",
    "train_clone",
    "train_clones",
    "train_seeded",
    "upstream",
    "validation_score",
    "write_results",
]
