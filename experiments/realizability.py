"""Realizability decomposition: why a BC clone falls short of its teacher, teacher by teacher.

The claim under test (README, expert zoo): a policy that is a function of the observation is
realisable by a clone, one that reads the simulator is not. For every row (a teacher and the
sensor its clone observes) the clone's disagreement with the teacher on its own states splits
into three terms, all in disagreement-rate units:

(a) **realizability**: ``1 - acc_sat``, where ``acc_sat`` is the best validation accuracy any
    clone reaches on the teacher's states from this observation; a learning curve of
    validation accuracy against demonstration episodes (10, 30, 100, 300 by default), every
    clone scored on ONE fixed validation set of the teacher's own episodes (demonstration
    seeds at ``val_offset``, which no training set reaches). If the curve has not saturated
    (the gain between its two largest sizes is still detectable) this term is an upper bound.
(b) **estimation**: ``acc_sat - acc(n_actual)``, the accuracy the clone that drives (trained
    on ``n_actual`` = 100 episodes) lacks for want of data.
(c) **covariate shift**: ``eps_on - eps_off`` at the same decision step: on the sealed test
    seeds the clone drives with the teacher labelling its states (``eps_on(t)``), and the clone
    is run offline on the teacher's own recorded observations of the same seeds (``eps_off(t)``,
    no second rollout); both are pooled over the (seed, step) pairs that both runs reached, so
    that a clone that crashes early is compared with the teacher at the same steps only.

Since ``eps_off`` estimates ``1 - acc(n_actual)`` on test seeds, the three terms add up to the
clone's ``eps_on`` up to sampling noise and the step weighting. Closed loop: teacher and clone
return and crash rate on the same test seeds.

Teachers. ``scripted`` and ``planner`` are privileged experts (they read the simulator);
``realizable`` is the scripted row's own closed-loop clone (BC on 100 scripted episodes,
train seed 0) driving with its argmax and labelling with its argmax: by construction a
function of the observation, so its clones have no realizability gap in the limit. The
planner costs ~50 ms per decision (~1.7 s per episode on 2 workers), so its row uses fewer
demonstration sizes (10, 30: its closed-loop clone is the 30-episode one), a smaller
validation set and fewer test seeds (recorded in ``config.json``). ``scripted:kinrich`` is the
scripted expert cloned from the richer Kinematics sensor (10 vehicles, vehicles behind,
headings; ``testbed.scenarios.SENSORS``): does more observation shrink term (a)?

Training. BC with the testbed's recipe (256-256 MLP, batch 64, 100 epochs, no validation
split, train seed 0) on the first n episodes of the teacher's demonstrations (seeds 0..); to
bound the time, sizes above ``full_epochs_up_to`` (100) episodes train for the same number of
gradient steps as 100 episodes (300 episodes: 33 epochs), which under-trains them a little:
on the validation sets alone (no test seed), 100 epochs at 300 episodes gained +0.010 accuracy
for the scripted teacher and +0.018 for the realizable one, at 3x that training time. Clones
train two at a time in worker processes. Sizes were chosen for time (the full run must fit in
~10 min on 2 cores), never by looking at test-seed numbers.

Statistics: :data:`STATISTICS` (pooled ratios over steps get a bootstrap over episodes, which
respects the clustering of steps within episodes; ``testbed.metrics.ratio_ci``).

Outputs in ``results/realizability/``: ``curve.csv``, ``decomposition.csv``,
``shift_steps.csv``, ``episodes.csv`` (one row per test episode and role), ``realizability.png``,
``shift.png`` and ``config.json`` (arguments, scenarios, seeds, training configs, wall times,
provenance).

    python experiments/realizability.py              # full run: 579 s on 2 cores (config.json)
    python experiments/realizability.py --fast       # tiny preset for the tests (< 60 s)
    python experiments/realizability.py --plot-only  # redraw the figures from the CSVs
"""

from __future__ import annotations

import dataclasses
import functools
import pathlib
import tempfile
import time
from typing import Any

import pandas as pd

from testbed import drift, kit, metrics
from testbed.errors import TestbedError
from testbed.experts import expert_names, make_expert
from testbed.outputs import atomic_output_dir, read_json
from testbed.plotting import plot_realizability, plot_shift_bins
from testbed.policies import PolicySpec
from testbed.rollout import RolloutPool
from testbed.scenarios import Scenario, get_scenario, parse_overrides, sensor_names
from testbed.seeds import DEMOS, TEST, check_test_seeds
from testbed.training import TrainConfig

REALIZABLE = "realizable"
"""The teacher that is a function of the observation: the ``scripted:kinematics`` row's
closed-loop clone."""
ROWS = ("scripted:kinematics", "planner:kinematics", f"{REALIZABLE}:kinematics", "scripted:kinrich")
"""Default rows, ``TEACHER:SENSOR``, in run order (the realizable teacher needs the first)."""
TABLES = ("curve", "decomposition", "shift_steps", "episodes")
STATISTICS = (
    "accuracies and crash rates: Clopper-Pearson (accuracies treat validation labels as "
    "independent; curve.csv's val_accuracy_cluster_ci_* is a bootstrap over validation episodes); "
    "eps_on, eps_off, shift, estimation_gap, last_gain: ratio estimators (pooled over steps) with "
    "percentile-bootstrap intervals over episodes (scipy.stats.bootstrap, paired resampling of per-episode "
    "sums and counts, 10000 resamples, seed 12345); returns: bootstrap over episodes; return_diff: clone "
    "minus teacher, paired by seed; realizability_gap's interval is 1 minus acc_sat's"
)
"""What config.json records as the statistics used."""


@dataclasses.dataclass
class Args(kit.BCArgs):
    """Split each teacher's clone shortfall into realizability, estimation and covariate shift."""

    scenario: str = "highway-fast"
    """Scenario preset (its sensor is chosen per row)."""
    rows: tuple[str, ...] = ROWS
    """Rows ``TEACHER:SENSOR``: TEACHER an expert name or ``realizable`` (the scripted:kinematics
    row's closed-loop clone; needs that row before it and the kinematics sensor)."""
    sizes: tuple[int, ...] = (10, 30, 100, 300)
    """Demonstration episodes of the learning curve (the first n of the teacher's seeds 0..)."""
    n_actual: int = 100
    """Demonstration episodes of the clone that drives (the data size whose gap is split); a row
    without this size uses its largest."""
    val_episodes: int = 50
    """Episodes of the one fixed validation set per row (teacher-driven)."""
    val_offset: int = 4000
    """Offset of the validation seeds in the demonstrations range (above every training size)."""
    test_episodes: int = 200
    """Sealed test episodes per row (teacher, and clone with the teacher labelling)."""
    test_offset: int = 300_000
    """Offset of this experiment's seeds in the sealed test range (other experiments use others)."""
    planner_sizes: tuple[int, ...] = (10, 30)
    """Learning-curve sizes of the planner teacher (~1.7 s per episode on 2 workers)."""
    planner_val_episodes: int = 20
    """Validation episodes of the planner rows."""
    planner_test_episodes: int = 30
    """Test episodes of the planner rows (the first of the test seeds)."""
    full_epochs_up_to: int = 100
    """Sizes above this many episodes train for ``epochs * full_epochs_up_to / n`` epochs (the
    gradient steps of this size): bounds the time of the largest sizes."""
    step_bin: int = 5
    """Width [decisions] of the step bins of ``shift_steps.csv``."""
    set: tuple[str, ...] = ()
    """Scenario config overrides KEY=VALUE (every row)."""
    out: str = "results/realizability"
    """Output directory (replaced)."""
    plot_only: bool = False
    """Only redraw the figures from the CSVs and config.json in ``out``."""

    def resolved(self) -> Args:
        """The --fast preset (4-decision episodes, sizes 2 and 4, 2 test seeds), else itself."""
        tiny = dict(val_episodes=2, test_episodes=2, planner_val_episodes=1, planner_test_episodes=1)
        small = dict(sizes=(2, 4), n_actual=4, planner_sizes=(1, 2), epochs=2, full_epochs_up_to=2, batch_size=8)
        return kit.fast_preset(self, step_bin=2, set=(*self.set, "duration=4"), **tiny, **small)

    def curve_config(self, n: int, n_transitions: int) -> TrainConfig:
        """The recipe for a clone of ``n`` episodes (``n_transitions`` labels, every one trained
        on, the batch capped at them), the log evaluated at the last epoch only."""
        epochs = self.epochs if n <= self.full_epochs_up_to else max(1, round(self.epochs * self.full_epochs_up_to / n))
        return kit.every_label_config(
            self.train_seed, n_transitions, epochs=epochs, batch_size=self.batch_size, eval_every=epochs
        )

    def validate(self) -> None:
        """Raise :class:`TestbedError` on nonsense values."""
        rows = [parse_row(r) for r in self.rows]
        if not rows or len(set(rows)) != len(rows):
            raise TestbedError(f"--rows must be distinct TEACHER:SENSOR values, got {list(self.rows)}")
        for i, (teacher, sensor) in enumerate(rows):
            if teacher == REALIZABLE and (sensor != "kinematics" or ("scripted", "kinematics") not in rows[:i]):
                raise TestbedError(
                    "the realizable row needs the kinematics sensor and the scripted:kinematics row before it"
                )
        kit.check_distinct_positive(self, "sizes", "planner_sizes")
        if max(*self.sizes, *self.planner_sizes) > self.val_offset:
            raise TestbedError("training sizes would reach the validation seeds; raise --val-offset")
        DEMOS.seeds(max(self.val_episodes, self.planner_val_episodes), offset=self.val_offset)
        episodes = ("val_episodes", "planner_val_episodes", "test_episodes", "planner_test_episodes")
        kit.check_at_least_one(self, *episodes, "epochs", "full_epochs_up_to", "batch_size", "step_bin", "workers")
        if self.planner_test_episodes > self.test_episodes:
            raise TestbedError("--planner-test-episodes must not exceed --test-episodes (its seeds are the first)")


def parse_row(text: str) -> tuple[str, str]:
    """``"scripted:kinrich"`` -> ``("scripted", "kinrich")``; the sensor defaults to kinematics.

    Raises:
        TestbedError: an unknown sensor or expert.
    """
    teacher, _, sensor = text.partition(":")
    sensor = sensor or "kinematics"
    if sensor not in sensor_names():
        raise TestbedError(f"row {text!r}: unknown sensor {sensor!r}; choose from {', '.join(sensor_names())}")
    if teacher != REALIZABLE and teacher not in expert_names():
        raise TestbedError(f"row {text!r}: teacher must be {REALIZABLE!r} or one of {', '.join(expert_names())}")
    return teacher, sensor


def run_row(
    teacher: str,
    sensor: str,
    args: Args,
    scenario: Scenario,
    test_seeds: list[int],
    *,
    pool: RolloutPool,
    scratch: str,
    earlier: dict[str, Any],
) -> dict[str, Any]:
    """One teacher x sensor row: the teacher (an expert name or ``realizable``, then
    ``earlier`` is the scripted:kinematics row's result) drives and labels; its clones observe
    ``scenario`` (the row's sensor). Returns the row's tables, its closed-loop clone's
    directory (in ``scratch``) and test runs, wall times and its record for config.json."""
    start = time.perf_counter()
    if teacher == REALIZABLE:  # the scripted:kinematics row's clone
        spec = PolicySpec("clone", str(earlier["clone_dir"]), name="clone:scripted-kinematics (realizable teacher)")
        what = "the scripted:kinematics row's closed-loop BC clone, driving and labelling by argmax"
        teacher_record = {"name": REALIZABLE, "params": {"what": what}}
    else:
        spec, teacher_record = PolicySpec("expert", teacher), {"name": teacher, "params": make_expert(teacher).params()}
    planner, label, labels = teacher == "planner", f"{teacher}, {sensor}", {"teacher": teacher, "sensor": sensor}
    sizes = args.planner_sizes if planner else args.sizes
    n_val = args.planner_val_episodes if planner else args.val_episodes
    test_seeds = test_seeds[: args.planner_test_episodes] if planner else test_seeds

    drive = functools.partial(kit.driven_demonstrations, pool, scenario, spec, driver=teacher_record)
    timing: dict[str, float] = {}
    with kit.timed(timing, "demos_s"):
        demos = drive(DEMOS.seeds(max(sizes)), desc=f"{label}: demos")
        validation = drive(DEMOS.seeds(n_val, offset=args.val_offset), desc=f"{label}: validation")

    # (a), (b): a learning curve, every clone scored on the one validation set.
    with kit.timed(timing, "train_s"):
        curve = kit.learning_curve(demos, validation, sizes, args.curve_config, workers=min(2, args.workers))
    n_actual = args.n_actual if args.n_actual in sizes else max(sizes)

    # (c): the n_actual clone drives the test seeds with the teacher labelling; offline on the teacher's.
    with kit.timed(timing, "test_s"):
        name = f"{teacher}-{sensor}-n{n_actual}"
        demos_path = f"in memory: {label}, demonstration seeds 0..{n_actual - 1}"
        clone_dir = curve.save(n_actual, pathlib.Path(scratch, name), demos_path=demos_path)
        clone = (PolicySpec("clone", str(clone_dir), name=f"clone:{name}"), curve.results[n_actual].policy)
        # The realizable teacher is the scripted row's clone: its test episodes are that clone's.
        teacher_runs = earlier["runs"].clone_runs if earlier else None
        runs = drift.teacher_and_clone(pool, scenario, spec, clone, test_seeds, teacher_runs=teacher_runs, desc=label)
    decomposition = {
        **labels,
        "privileged": teacher != REALIZABLE,
        "sizes": " ".join(map(str, sorted(sizes))),
        **metrics.learning_curve_gaps(curve.scores, n_actual),
        **runs.columns(),  # eps_on, eps_off, shift (same steps); eps_*_all; teacher and clone outcomes; return_diff
        "n_test": len(runs.seeds),
        "n_val_episodes": n_val,
    }
    bins = drift.step_bins(runs.steps(), args.step_bin)
    return {
        "curve": pd.DataFrame([{**labels, **r} for r in curve.rows()]),
        "decomposition": pd.DataFrame([decomposition]),
        "shift_steps": pd.DataFrame(labels, index=bins.index).join(bins),
        "episodes": runs.episodes(**labels),
        "clone_dir": clone_dir,
        "runs": runs,
        "timing": timing | {"total_s": time.perf_counter() - start},
        "record": {
            **labels,
            "teacher_record": teacher_record,
            "n_actual": n_actual,
            **curve.record(),  # sizes, train_configs
        },
    }


def main(args: Args) -> dict[str, pd.DataFrame]:
    if args.plot_only:
        replot(args.out)
        return {name: pd.read_csv(pathlib.Path(args.out) / f"{name}.csv") for name in TABLES}
    args = args.resolved()
    args.validate()
    start = time.perf_counter()
    test_seeds = TEST.seeds(args.test_episodes, offset=args.test_offset)
    test_record = check_test_seeds(test_seeds, "realizability")
    planner_record = check_test_seeds(test_seeds[: args.planner_test_episodes], "realizability")
    rows, overrides = [parse_row(r) for r in args.rows], parse_overrides(args.set)
    scenarios = {s: get_scenario(args.scenario, overrides, sensor=s) for s in dict.fromkeys(s for _, s in rows)}
    outputs: dict[str, dict[str, Any]] = {}
    with (
        atomic_output_dir(args.out, overwrite=True) as out,
        tempfile.TemporaryDirectory(prefix="realizability-") as scratch,
        RolloutPool(args.workers) as pool,
    ):
        for teacher, sensor in rows:
            earlier = outputs["scripted, kinematics"] if teacher == REALIZABLE else {}
            result = run_row(
                teacher, sensor, args, scenarios[sensor], test_seeds, pool=pool, scratch=scratch, earlier=earlier
            )
            outputs[f"{teacher}, {sensor}"] = result
            print(_table(result["decomposition"]), flush=True)
        tables = {name: pd.concat([r[name] for r in outputs.values()], ignore_index=True) for name in TABLES}
        n_val = max(args.val_episodes, args.planner_val_episodes)
        record = kit.experiment_record(
            args,
            rows=[r["record"] for r in outputs.values()],
            scenarios={s: sc.to_dict() for s, sc in scenarios.items()},
            seeds={
                "test": test_record,
                "planner_test": planner_record,
                "demonstrations": {
                    **DEMOS.record(),
                    "train": f"the first n of seeds 0..{max(*args.sizes, *args.planner_sizes) - 1}",
                    "validation": [args.val_offset, args.val_offset + n_val - 1],
                },
            },
            statistics=STATISTICS,
            definitions={
                "acc_sat": "best pooled validation accuracy over the row's sizes (ties: smallest size)",
                "realizability_gap": "1 - acc_sat (an upper bound when not saturated)",
                "estimation_gap": "acc_sat - acc(n_actual), same validation labels",
                "saturated": "the interval of the accuracy gained between the two largest sizes reaches 0",
                "eps_on": "clone's disagreement with the teacher's label on the clone's own test states, pooled over "
                "the (seed, step) pairs both the clone's and the teacher's runs reached",
                "eps_off": "clone's disagreement with the teacher on the teacher's own test states (computed offline "
                "from the teacher's recorded observations), same pairs",
                "shift": "eps_on - eps_off over the same (seed, step) pairs",
                "eps_on_all / eps_off_all": "the same over every step of each run",
                "realizable teacher": "the scripted:kinematics row's closed-loop clone (n_actual episodes, train seed "
                "0), driving and labelling by argmax; its test episodes are that row's clone episodes",
                "epochs": f"{args.epochs} up to {args.full_epochs_up_to} episodes, then epochs * "
                f"{args.full_epochs_up_to} / n (the same gradient steps), chosen for time",
            },
            wall_time_s={
                "total": round(time.perf_counter() - start, 1),
                **{label: {k: round(v, 1) for k, v in r["timing"].items()} for label, r in outputs.items()},
            },
        )
        kit.write_results(out, tables, record)
        replot(out)
    print(_table(tables["decomposition"]))
    print(f"total {time.perf_counter() - start:.0f} s -> {args.out}")
    return tables


def replot(out: str | pathlib.Path) -> list[pathlib.Path]:
    """Draw both figures from the CSVs and ``config.json`` a run wrote into ``out``."""
    out = pathlib.Path(out)
    scenario = read_json(out / "config.json", what="experiment config")["args"]["scenario"]
    curve, decomposition, shift_steps = (pd.read_csv(out / f"{name}.csv") for name in TABLES[:3])
    title = f"{scenario}: realizability, estimation and covariate shift per teacher"
    curves = plot_realizability(curve, decomposition, title=title)
    title = f"{scenario}: on- vs off-policy disagreement at the same steps (pairs both runs reached; 95% CIs)"
    shift = plot_shift_bins(shift_steps, title=title)
    return kit.save_figures(out, {"realizability.png": curves, "shift.png": shift})


def _table(decomposition: pd.DataFrame) -> str:
    columns = ("acc_sat", "acc_actual", "realizability_gap", "estimation_gap", "shift", "eps_on", "teacher_crash_rate")
    columns += ("clone_crash_rate", "return_diff")
    return metrics.markdown_intervals(decomposition, {c: c for c in columns}, plain=("teacher", "sensor", "saturated"))


if __name__ == "__main__":
    kit.run_script(main, Args)
