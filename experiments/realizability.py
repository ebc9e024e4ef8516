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

Statistics. Accuracies and crash rates: Clopper-Pearson (``testbed.metrics.rate_ci``; for an
accuracy it treats the validation labels as independent, which steps of one episode are not:
``curve.csv`` also gives a bootstrap interval over validation episodes). Pooled ratios over
episodes' steps (eps_on, eps_off, their difference, the estimation gap and the last gain of
the learning curve): percentile bootstrap over episodes (``scipy.stats.bootstrap``, paired
resampling of each episode's numerator and label count, 10000 resamples), which respects the
clustering of steps within episodes. Returns: bootstrap over episodes (``mean_ci``), the
clone-minus-teacher return paired by seed.

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
import json
import pathlib
import tempfile
import time
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import tyro

from testbed.collect import demonstrations_from
from testbed.demos import Demonstrations
from testbed.errors import TestbedError
from testbed.experts import make_expert
from testbed.metrics import BOOTSTRAP_SEED, CONFIDENCE, N_RESAMPLES, Interval, mean_ci, paired_difference, rate_ci
from testbed.outputs import atomic_output_dir, read_json, write_json
from testbed.policies import PolicySpec
from testbed.provenance import provenance
from testbed.rollout import EpisodeRecord, RolloutPool
from testbed.runtime import default_workers
from testbed.scenarios import Scenario, get_scenario, parse_overrides, sensor_names
from testbed.seeds import DEMOS, TEST, check_test_seeds
from testbed.training import TrainConfig, TrainResult, save_clone, train_bc

REALIZABLE = "realizable"
"""The teacher that is a function of the observation: the ``scripted:kinematics`` row's
closed-loop clone."""
ROWS = ("scripted:kinematics", "planner:kinematics", f"{REALIZABLE}:kinematics", "scripted:kinrich")
"""Default rows, ``TEACHER:SENSOR``, in run order (the realizable teacher needs the first)."""


@dataclasses.dataclass
class Args:
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
    epochs: int = 100
    """BC epochs up to ``full_epochs_up_to`` episodes."""
    full_epochs_up_to: int = 100
    """Sizes above this many episodes train for ``epochs * full_epochs_up_to / n`` epochs (the
    gradient steps of this size): bounds the time of the largest sizes."""
    batch_size: int = 64
    """BC batch size (capped at the number of training transitions)."""
    train_seed: int = 0
    """Training seed of every clone (initialisation, batch order)."""
    step_bin: int = 5
    """Width [decisions] of the step bins of ``shift_steps.csv``."""
    set: tuple[str, ...] = ()
    """Scenario config overrides KEY=VALUE (every row)."""
    workers: int = dataclasses.field(default_factory=default_workers)
    """Worker processes (rollouts; clones train in as many, at most 2)."""
    out: str = "results/realizability"
    """Output directory (replaced)."""
    fast: bool = False
    """Tiny preset for tests: 4-decision episodes, sizes 2 and 4, 2 test seeds."""
    plot_only: bool = False
    """Only redraw the figures from the CSVs and config.json in ``out``."""

    def resolved(self) -> Args:
        if not self.fast:
            return self
        return dataclasses.replace(
            self,
            sizes=(2, 4),
            n_actual=4,
            val_episodes=2,
            test_episodes=2,
            planner_sizes=(1, 2),
            planner_val_episodes=1,
            planner_test_episodes=1,
            epochs=2,
            full_epochs_up_to=2,
            batch_size=8,
            step_bin=2,
            set=(*self.set, "duration=4"),
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
        for name in ("sizes", "planner_sizes"):
            sizes = getattr(self, name)
            if not sizes or min(sizes) < 1 or len(set(sizes)) != len(sizes):
                raise TestbedError(f"--{name.replace('_', '-')} must be distinct positive sizes, got {list(sizes)}")
        if max(*self.sizes, *self.planner_sizes) > self.val_offset:
            raise TestbedError("training sizes would reach the validation seeds; raise --val-offset")
        DEMOS.seeds(max(self.val_episodes, self.planner_val_episodes), offset=self.val_offset)
        if min(self.val_episodes, self.planner_val_episodes, self.test_episodes, self.planner_test_episodes) < 1:
            raise TestbedError("validation and test episodes must be at least 1")
        if self.planner_test_episodes > self.test_episodes:
            raise TestbedError("--planner-test-episodes must not exceed --test-episodes (its seeds are the first)")
        if min(self.epochs, self.full_epochs_up_to, self.batch_size, self.step_bin, self.workers) < 1:
            raise TestbedError("--epochs, --full-epochs-up-to, --batch-size, --step-bin and --workers must be >= 1")


def parse_row(text: str) -> tuple[str, str]:
    """``"scripted:kinrich"`` -> ``("scripted", "kinrich")``; the sensor defaults to kinematics.

    Raises:
        TestbedError: an unknown sensor or expert.
    """
    from testbed.experts import expert_names

    teacher, _, sensor = text.partition(":")
    sensor = sensor or "kinematics"
    if sensor not in sensor_names():
        raise TestbedError(f"row {text!r}: unknown sensor {sensor!r}; choose from {', '.join(sensor_names())}")
    if teacher != REALIZABLE and teacher not in expert_names():
        raise TestbedError(f"row {text!r}: teacher must be {REALIZABLE!r} or one of {', '.join(expert_names())}")
    return teacher, sensor


# --- Pure statistics ------------------------------------------------------------------------


def ratio_ci(numerators: Sequence[float] | np.ndarray, counts: Sequence[float] | np.ndarray) -> Interval:
    """``sum(numerators) / sum(counts)`` over clusters (episodes), with a percentile bootstrap
    that resamples whole clusters (``scipy.stats.bootstrap``, paired).

    A pooled rate over an episode's steps is a ratio estimator: steps of one episode are not
    independent, so resampling steps would give too narrow an interval; resampling episodes does
    not. ``numerators[i]`` may be a difference (the per-episode sum of ``on - off``).

    Raises:
        ValueError: no clusters, mismatched shapes or a non-positive total count.
    """
    num = np.asarray(numerators, dtype=np.float64)
    den = np.asarray(counts, dtype=np.float64)
    if num.ndim != 1 or num.shape != den.shape or num.size == 0 or den.sum() <= 0 or (den < 0).any():
        raise ValueError(f"need matching 1-D numerators and counts with a positive total, got {num.shape}, {den.shape}")
    point = float(num.sum() / den.sum())
    if num.size == 1:
        return Interval(point, point, point)
    from scipy import stats

    def statistic(n: np.ndarray, d: np.ndarray, axis: int = -1) -> np.ndarray:
        return n.sum(axis=axis) / d.sum(axis=axis)

    res = stats.bootstrap(
        (num, den),
        statistic,
        paired=True,
        vectorized=True,
        confidence_level=CONFIDENCE,
        n_resamples=N_RESAMPLES,
        method="percentile",
        random_state=np.random.default_rng(BOOTSTRAP_SEED),
    )
    low, high = float(res.confidence_interval.low), float(res.confidence_interval.high)
    # A resampling distribution with no spread (every episode the same ratio): the point itself.
    return Interval(point, min(low, point), max(high, point))


def aligned_steps(on: Mapping[int, np.ndarray], off: Mapping[int, np.ndarray]) -> pd.DataFrame:
    """Per-step disagreements of the clone's run (``on``) and the teacher's run (``off``) of the
    same seeds, on the steps both reached.

    Args:
        on: seed -> 0/1 disagreement with the teacher's label at each decision of the clone's
            own run (T_on,).
        off: seed -> 0/1 disagreement of the clone with the teacher's action at each decision
            of the teacher's run (T_off,).

    Returns:
        Columns ``seed``, ``step`` (1-based decision), ``on``, ``off``: one row per seed and
        step ``1..min(T_on, T_off)``.

    Raises:
        ValueError: the two runs do not cover the same seeds.
    """
    if set(on) != set(off):
        raise ValueError("on- and off-policy runs must share their seeds")
    frames = []
    for seed in on:
        m = min(len(on[seed]), len(off[seed]))
        frames.append(
            pd.DataFrame(
                {
                    "seed": int(seed),
                    "step": np.arange(1, m + 1),
                    "on": np.asarray(on[seed][:m], dtype=float),
                    "off": np.asarray(off[seed][:m], dtype=float),
                }
            )
        )
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=["seed", "step", "on", "off"])


def pooled_shift(steps: pd.DataFrame) -> dict[str, Any]:
    """``eps_on``, ``eps_off`` and ``shift = eps_on - eps_off`` pooled over all (seed, step) rows
    of ``steps`` (:func:`aligned_steps`), each with a bootstrap interval over seeds
    (:func:`ratio_ci`), and the counts ``n_pairs`` and ``n_seeds`` (episodes with a pair)."""
    by_seed = steps.groupby("seed", sort=True).agg(on=("on", "sum"), off=("off", "sum"), n=("on", "size"))
    out: dict[str, Any] = {}
    for name, num in (
        ("eps_on", by_seed["on"]),
        ("eps_off", by_seed["off"]),
        ("shift", by_seed["on"] - by_seed["off"]),
    ):
        out.update(ratio_ci(num.to_numpy(), by_seed["n"].to_numpy()).columns(name))
    out["n_pairs"] = int(by_seed["n"].sum())
    out["n_seeds"] = len(by_seed)
    return out


def step_bins(steps: pd.DataFrame, width: int) -> pd.DataFrame:
    """:func:`pooled_shift` within bins of ``width`` decisions (steps 1..w, w+1..2w, ...); the
    bin's number of (seed, step) pairs is ``n``."""
    bins = (steps["step"] - 1) // width
    rows = []
    for b, group in steps.groupby(bins, sort=True):
        pooled = pooled_shift(group)
        pooled["n"] = pooled.pop("n_pairs")
        rows.append({"step_lo": int(b) * width + 1, "step_hi": (int(b) + 1) * width, **pooled})
    return pd.DataFrame(rows)


@dataclasses.dataclass(frozen=True)
class ValScore:
    """One clone's predictions on the fixed validation set, per validation episode."""

    n_episodes: int
    """Demonstration episodes the clone trained on."""
    correct: np.ndarray
    """Labels it predicted right, per validation episode (E,)."""
    labels: np.ndarray
    """Labels per validation episode (E,)."""

    def __post_init__(self) -> None:
        if self.correct.shape != self.labels.shape or self.correct.ndim != 1 or (self.correct > self.labels).any():
            raise ValueError("correct and labels must be matching (E,) arrays with correct <= labels")

    @property
    def accuracy(self) -> Interval:
        """Pooled accuracy with its Clopper-Pearson interval."""
        return rate_ci(int(self.correct.sum()), int(self.labels.sum()))


def decompose(scores: Sequence[ValScore], n_actual: int) -> dict[str, Any]:
    """The learning-curve terms of the decomposition.

    ``acc_sat`` is the best pooled validation accuracy of any size (ties: the smallest size),
    ``realizability_gap = 1 - acc_sat``, ``estimation_gap = acc_sat - acc(n_actual)`` (bootstrap
    over validation episodes, the two clones scored on the same labels), ``last_gain`` the
    accuracy gained between the two largest sizes (same interval) and ``saturated`` whether that
    gain's interval reaches down to 0 (no detectable gain from the last increase in data).

    Raises:
        ValueError: no size ``n_actual``, or scores on different validation sets.
    """
    by_n = {s.n_episodes: s for s in scores}
    if n_actual not in by_n:
        raise ValueError(f"no clone of {n_actual} episodes among {sorted(by_n)}")
    labels = by_n[n_actual].labels
    if any(not np.array_equal(s.labels, labels) for s in scores):
        raise ValueError("every clone must be scored on the same validation set")
    sizes = sorted(by_n)
    acc = {n: by_n[n].accuracy for n in sizes}
    n_sat = max(sizes, key=lambda n: (acc[n].mean, -n))
    sat, actual = acc[n_sat], acc[n_actual]
    out: dict[str, Any] = {"n_saturated": n_sat, "n_actual": n_actual}
    out.update(sat.columns("acc_sat"))
    out.update(actual.columns("acc_actual"))
    out.update(Interval(1 - sat.mean, 1 - sat.high, 1 - sat.low).columns("realizability_gap"))
    out.update(ratio_ci(by_n[n_sat].correct - by_n[n_actual].correct, labels).columns("estimation_gap"))
    if len(sizes) >= 2:
        gain = ratio_ci(by_n[sizes[-1]].correct - by_n[sizes[-2]].correct, labels)
        out.update(gain.columns("last_gain"))
        out["saturated"] = bool(gain.low <= 0)
    else:
        out.update(Interval(np.nan, np.nan, np.nan).columns("last_gain"))
        out["saturated"] = False
    return out


# --- Rollouts and training ------------------------------------------------------------------


def predict_actions(policy: Any, obs: np.ndarray) -> np.ndarray:
    """A clone's most likely action for each observation (the action it drives with)."""
    import torch

    with torch.no_grad():
        return policy._predict(torch.as_tensor(obs), deterministic=True).cpu().numpy()


def val_score(policy: Any, n_episodes: int, validation: Demonstrations) -> ValScore:
    """Score ``policy`` on every validation episode."""
    correct, labels = [], []
    for t in validation.trajectories:
        correct.append(int((predict_actions(policy, np.asarray(t.obs[:-1])) == np.asarray(t.acts)).sum()))
        labels.append(len(t.acts))
    return ValScore(n_episodes, np.asarray(correct), np.asarray(labels))


def train_config(args: Args, n: int, n_transitions: int) -> TrainConfig:
    """The recipe for a clone of ``n`` episodes (``n_transitions`` labels)."""
    epochs = args.epochs if n <= args.full_epochs_up_to else max(1, round(args.epochs * args.full_epochs_up_to / n))
    return TrainConfig(
        n_epochs=epochs,
        batch_size=min(args.batch_size, n_transitions),
        seed=args.train_seed,
        val_fraction=0.0,
        eval_every=epochs,
    )


def train_all(jobs: dict[int, tuple[Demonstrations, TrainConfig]], n_workers: int) -> dict[int, TrainResult]:
    """Train one clone per job, in up to ``n_workers`` processes (largest first); each result is
    the same whichever process trains it (``train_bc`` seeds torch and uses one thread)."""
    order = sorted(jobs, reverse=True)
    if n_workers <= 1 or len(jobs) == 1:
        return {n: train_bc(*jobs[n]) for n in order}
    import concurrent.futures

    from testbed.rollout import worker_context
    from testbed.runtime import init_worker, stop_pool

    executor = concurrent.futures.ProcessPoolExecutor(
        min(n_workers, len(jobs)), mp_context=worker_context(), initializer=init_worker
    )
    try:
        futures = {n: executor.submit(train_bc, *jobs[n]) for n in order}
        results = {n: futures[n].result() for n in order}
    except BaseException:  # an error or a signal: stop the other trainings at once
        stop_pool(executor, terminate=True)
        raise
    stop_pool(executor, terminate=False)
    return results


@dataclasses.dataclass
class Row:
    """One teacher x sensor row while it is computed."""

    teacher: str
    """Expert name or ``realizable``."""
    sensor: str
    """What the clone (and a realizable teacher) observes."""
    scenario: Scenario
    """The scenario with that sensor."""
    spec: PolicySpec
    """The teacher as a driver and labeller."""
    sizes: tuple[int, ...]
    """Learning-curve sizes [demonstration episodes]."""
    n_val: int
    """Validation episodes."""
    test_seeds: list[int]
    """Sealed test seeds."""

    @property
    def label(self) -> str:
        return f"{self.teacher}, {self.sensor}"


def run_row(
    row: Row,
    args: Args,
    *,
    pool: RolloutPool,
    scratch: pathlib.Path,
    runs: dict[tuple[str, str], list[EpisodeRecord]],
    teacher_record: dict[str, Any],
) -> dict[str, Any]:
    """Everything of one row: curve, decomposition, per-step bins, episodes and its closed-loop
    clone's directory (in ``scratch``)."""
    timing: dict[str, float] = {}
    t0 = time.perf_counter()
    n_max = max(row.sizes)
    demos = demonstrations_from(
        row.scenario,
        pool.run(row.scenario, row.spec, DEMOS.seeds(n_max), progress=True, desc=f"{row.label}: demos"),
        teacher_record,
    )
    val_seeds = DEMOS.seeds(row.n_val, offset=args.val_offset)
    validation = demonstrations_from(
        row.scenario,
        pool.run(row.scenario, row.spec, val_seeds, progress=True, desc=f"{row.label}: validation"),
        teacher_record,
    )
    timing["demos_s"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    subsets = {n: demos.first(n) for n in row.sizes}
    jobs = {n: (subsets[n], train_config(args, n, subsets[n].n_transitions)) for n in row.sizes}
    results = train_all(jobs, min(2, args.workers))
    scores = [val_score(results[n].policy, n, validation) for n in sorted(row.sizes)]
    timing["train_s"] = time.perf_counter() - t0
    n_actual = args.n_actual if args.n_actual in row.sizes else n_max
    curve = []
    for score in scores:
        n = score.n_episodes
        cluster = ratio_ci(score.correct, score.labels)
        curve.append(
            {
                "teacher": row.teacher,
                "sensor": row.sensor,
                "n_episodes": n,
                "n_labels": subsets[n].n_transitions,
                "train_seed": args.train_seed,
                "epochs": jobs[n][1].n_epochs,
                "train_accuracy": float(results[n].log["train/accuracy"].iloc[-1]),
                **score.accuracy.columns("val_accuracy"),
                "val_accuracy_cluster_ci_low": cluster.low,
                "val_accuracy_cluster_ci_high": cluster.high,
                "n_val_labels": int(score.labels.sum()),
                "n_val_episodes": len(score.labels),
            }
        )

    t0 = time.perf_counter()
    name = f"{row.teacher}-{row.sensor}-n{n_actual}"
    clone_dir = save_clone(
        scratch / name,
        results[n_actual],
        demos=subsets[n_actual],
        demos_path=f"in memory: {row.label}, demonstration seeds 0..{n_actual - 1}",
        config=jobs[n_actual][1],
    )
    clone = PolicySpec("clone", str(clone_dir), name=f"clone:{name}")
    scenario_key = json.dumps(row.scenario.to_dict(), sort_keys=True)
    # The realizable teacher is an earlier row's clone: its test episodes are that row's.
    teacher_runs = runs.get((scenario_key, row.spec.arg)) or pool.run(
        row.scenario, row.spec, row.test_seeds, progress=True, desc=f"{row.label}: teacher, test"
    )
    teacher_runs = teacher_runs[: len(row.test_seeds)]
    clone_runs = pool.run(
        row.scenario, clone, row.test_seeds, labeller=row.spec, progress=True, desc=f"{row.label}: clone, test"
    )
    runs[(scenario_key, str(clone_dir))] = clone_runs
    timing["test_s"] = time.perf_counter() - t0

    policy = results[n_actual].policy
    on = {r.seed: (r.labels != r.trajectory.acts).astype(float) for r in clone_runs}
    off = {
        r.seed: (predict_actions(policy, np.asarray(r.trajectory.obs[:-1])) != r.trajectory.acts).astype(float)
        for r in teacher_runs
    }
    steps = aligned_steps(on, off)
    shift = pooled_shift(steps)
    seeds = [r.seed for r in clone_runs]
    every_on = ratio_ci([on[s].sum() for s in seeds], [len(on[s]) for s in seeds])
    every_off = ratio_ci([off[s].sum() for s in seeds], [len(off[s]) for s in seeds])
    episodes = _episodes(row, teacher_runs, clone_runs, on, off)
    teacher_ep = episodes[episodes["role"] == "teacher"].set_index("seed").loc[seeds]
    clone_ep = episodes[episodes["role"] == "clone"].set_index("seed").loc[seeds]
    decomposition = {
        "teacher": row.teacher,
        "sensor": row.sensor,
        "privileged": row.teacher != REALIZABLE,
        "sizes": " ".join(map(str, sorted(row.sizes))),
        **decompose(scores, n_actual),
        **shift,
        **every_on.columns("eps_on_all"),
        **every_off.columns("eps_off_all"),
        **mean_ci(teacher_ep["return"].to_numpy()).columns("teacher_return"),
        **rate_ci(int(teacher_ep["crashed"].sum()), len(teacher_ep)).columns("teacher_crash_rate"),
        **mean_ci(clone_ep["return"].to_numpy()).columns("clone_return"),
        **rate_ci(int(clone_ep["crashed"].sum()), len(clone_ep)).columns("clone_crash_rate"),
        **paired_difference(clone_ep["return"].to_numpy(), teacher_ep["return"].to_numpy()).columns("return_diff"),
        "n_test": len(seeds),
        "n_val_episodes": row.n_val,
    }
    bins = step_bins(steps, args.step_bin).assign(teacher=row.teacher, sensor=row.sensor)
    train_configs = {str(n): jobs[n][1].to_dict() for n in sorted(row.sizes)}
    return {
        "curve": curve,
        "decomposition": decomposition,
        "bins": bins,
        "episodes": episodes,
        "clone_dir": clone_dir,
        "timing": timing,
        "train_configs": train_configs,
        "n_actual": n_actual,
        "val_seeds": val_seeds,
    }


def _episodes(
    row: Row,
    teacher_runs: Sequence[EpisodeRecord],
    clone_runs: Sequence[EpisodeRecord],
    on: Mapping[int, np.ndarray],
    off: Mapping[int, np.ndarray],
) -> pd.DataFrame:
    from testbed.metrics import episode_metrics

    rows = []
    for role, records, eps in (("teacher", teacher_runs, off), ("clone", clone_runs, on)):
        for r in records:
            m = episode_metrics(r.trajectory)
            rows.append(
                {
                    "teacher": row.teacher,
                    "sensor": row.sensor,
                    "role": role,
                    "seed": r.seed,
                    "return": m["return"],
                    "crashed": m["crashed"],
                    "length": m["length"],
                    # teacher episodes: the clone's disagreements offline; clone episodes: on-policy.
                    "n_disagree": float(eps[r.seed].sum()),
                }
            )
    return pd.DataFrame(rows)


def _teacher(teacher: str, clone_dir: pathlib.Path | None) -> tuple[PolicySpec, dict[str, Any]]:
    """The teacher's spec and its record in the demonstrations' metadata."""
    if teacher == REALIZABLE:
        assert clone_dir is not None
        spec = PolicySpec("clone", str(clone_dir), name="clone:scripted-kinematics (realizable teacher)")
        return spec, {
            "name": REALIZABLE,
            "params": {"what": "the scripted:kinematics row's closed-loop BC clone, driving and labelling by argmax"},
        }
    return PolicySpec("expert", teacher), {"name": teacher, "params": make_expert(teacher).params()}


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
    overrides = parse_overrides(args.set)
    rows = [parse_row(r) for r in args.rows]
    scenarios = {s: get_scenario(args.scenario, overrides, sensor=s) for s in dict.fromkeys(s for _, s in rows)}
    outputs: dict[str, dict[str, Any]] = {}
    runs: dict[tuple[str, str], list[EpisodeRecord]] = {}
    teachers: dict[str, Any] = {}
    with (
        atomic_output_dir(args.out, overwrite=True) as out,
        tempfile.TemporaryDirectory(prefix="realizability-") as scratch_name,
        RolloutPool(args.workers) as pool,
    ):
        for teacher, sensor in rows:
            row_start = time.perf_counter()
            clone_dir = outputs["scripted, kinematics"]["clone_dir"] if teacher == REALIZABLE else None
            spec, record = _teacher(teacher, clone_dir)
            teachers[f"{teacher}, {sensor}"] = record
            planner = teacher == "planner"
            row = Row(
                teacher=teacher,
                sensor=sensor,
                scenario=scenarios[sensor],
                spec=spec,
                sizes=args.planner_sizes if planner else args.sizes,
                n_val=args.planner_val_episodes if planner else args.val_episodes,
                test_seeds=test_seeds[: args.planner_test_episodes] if planner else test_seeds,
            )
            result = run_row(row, args, pool=pool, scratch=pathlib.Path(scratch_name), runs=runs, teacher_record=record)
            result["timing"]["total_s"] = time.perf_counter() - row_start
            outputs[row.label] = result
            print(_table(pd.DataFrame([result["decomposition"]])), flush=True)
        tables = {
            "curve": pd.DataFrame([c for r in outputs.values() for c in r["curve"]]),
            "decomposition": pd.DataFrame([r["decomposition"] for r in outputs.values()]),
            "shift_steps": pd.concat([r["bins"] for r in outputs.values()], ignore_index=True),
            "episodes": pd.concat([r["episodes"] for r in outputs.values()], ignore_index=True),
        }
        tables["shift_steps"] = tables["shift_steps"][
            ["teacher", "sensor", *[c for c in tables["shift_steps"].columns if c not in ("teacher", "sensor")]]
        ]
        for name, table in tables.items():
            table.to_csv(out / f"{name}.csv", index=False)
        config = {
            "args": dataclasses.asdict(args),
            "rows": [
                {
                    "teacher": t,
                    "sensor": s,
                    "teacher_record": teachers[f"{t}, {s}"],
                    "sizes": sorted(outputs[f"{t}, {s}"]["train_configs"], key=int),
                    "n_actual": outputs[f"{t}, {s}"]["n_actual"],
                    "train_configs": outputs[f"{t}, {s}"]["train_configs"],
                }
                for t, s in rows
            ],
            "scenarios": {s: sc.to_dict() for s, sc in scenarios.items()},
            "seeds": {
                "test": test_record,
                "planner_test": planner_record,
                "demonstrations": {
                    **DEMOS.record(),
                    "train": f"the first n of seeds 0..{max(*args.sizes, *args.planner_sizes) - 1}",
                    "validation": [
                        args.val_offset,
                        args.val_offset + max(args.val_episodes, args.planner_val_episodes) - 1,
                    ],
                },
            },
            "statistics": "accuracies and crash rates: Clopper-Pearson (accuracies treat validation labels as "
            "independent; curve.csv's val_accuracy_cluster_ci_* is a bootstrap over validation episodes); "
            "eps_on, eps_off, shift, estimation_gap, last_gain: ratio estimators (pooled over steps) with "
            "percentile-bootstrap intervals over episodes (scipy.stats.bootstrap, paired resampling of per-episode "
            "sums and counts, 10000 resamples, seed 12345); returns: bootstrap over episodes; return_diff: clone "
            "minus teacher, paired by seed; realizability_gap's interval is 1 minus acc_sat's",
            "definitions": {
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
            "wall_time_s": {
                "total": round(time.perf_counter() - start, 1),
                **{label: {k: round(v, 1) for k, v in r["timing"].items()} for label, r in outputs.items()},
            },
            "provenance": provenance(),
        }
        write_json(out / "config.json", config)
        _plot_curves(tables["curve"], tables["decomposition"], out / "realizability.png", args.scenario)
        _plot_shift(tables["shift_steps"], out / "shift.png", args.scenario)
    print(_table(tables["decomposition"]))
    print(f"total {time.perf_counter() - start:.0f} s -> {args.out}")
    return tables


TABLES = ("curve", "decomposition", "shift_steps", "episodes")


def replot(out: str | pathlib.Path) -> list[pathlib.Path]:
    """Redraw both figures from the CSVs and ``config.json`` an earlier run wrote into ``out``."""
    out = pathlib.Path(out)
    scenario = read_json(out / "config.json", what="experiment config")["args"]["scenario"]
    _plot_curves(
        pd.read_csv(out / "curve.csv"), pd.read_csv(out / "decomposition.csv"), out / "realizability.png", scenario
    )
    _plot_shift(pd.read_csv(out / "shift_steps.csv"), out / "shift.png", scenario)
    return [out / "realizability.png", out / "shift.png"]


def _table(decomposition: pd.DataFrame) -> str:
    cols = {
        "acc_sat": "acc_sat",
        "acc_actual": "acc(n_actual)",
        "realizability_gap": "realizability",
        "estimation_gap": "estimation",
        "shift": "shift",
        "eps_on": "eps_on",
        "teacher_crash_rate": "teacher crash",
        "clone_crash_rate": "clone crash",
        "return_diff": "clone - teacher return",
    }
    lines = [
        "| teacher | sensor | saturated | " + " | ".join(cols.values()) + " |",
        "|---" * (3 + len(cols)) + "|",
    ]
    for _, r in decomposition.iterrows():
        cells = [Interval.from_columns(r, k).format(2) for k in cols]
        lines.append(f"| {r['teacher']} | {r['sensor']} | {bool(r['saturated'])} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _labels(frame: pd.DataFrame) -> list[str]:
    return [f"{t}, {s}" for t, s in zip(frame["teacher"], frame["sensor"])]


def _plot_curves(curve: pd.DataFrame, decomposition: pd.DataFrame, path: pathlib.Path, scenario: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax, bars) = plt.subplots(1, 2, figsize=(11, 4.2))
    for i, (label, g) in enumerate(curve.assign(row=_labels(curve)).groupby("row", sort=False)):
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
        err = np.vstack([v - decomposition[f"{col}_ci_low"], decomposition[f"{col}_ci_high"] - v])
        bars.bar(x + (k - 1) * width, v, width=width, yerr=err, capsize=3, color=f"C{k + 4}", label=name)
    bars.scatter(
        x, decomposition["eps_on"], marker="_", s=400, color="k", zorder=3, label="eps_on (their sum, roughly)"
    )
    bars.set_xticks(x, [lbl.replace(", ", "\n") for lbl in _labels(decomposition)], fontsize=8)
    bars.axhline(0, color="k", lw=0.8)
    top = max(decomposition["eps_on"].max(), *(decomposition[f"{c}_ci_high"].max() for c, _ in terms))
    bars.set_ylim(top=1.45 * top)  # room for the legend above the bars
    bars.set_ylabel("disagreement with the teacher")
    bars.grid(axis="y", alpha=0.3)
    bars.legend(fontsize=7)
    bars.set_title("decomposition of the closed-loop clone's eps_on (95% CIs)", fontsize=9)
    fig.suptitle(f"{scenario}: realizability, estimation and covariate shift per teacher", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _plot_shift(bins: pd.DataFrame, path: pathlib.Path, scenario: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups = list(bins.assign(row=_labels(bins)).groupby("row", sort=False))
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
    fig.suptitle(
        f"{scenario}: on- vs off-policy disagreement at the same steps (pairs both runs reached; 95% CIs)", fontsize=9
    )
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    import sys

    from testbed.runtime import set_torch_threads

    set_torch_threads(1)
    try:
        main(tyro.cli(Args))
    except TestbedError as e:
        print(f"realizability: error: {e}", file=sys.stderr)
        sys.exit(2)
