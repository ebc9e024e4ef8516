"""Throughput of the testbed's pipeline as ratios to bare baselines, measured in one run.

Nine comparisons, each a ratio of two figures taken in the same run and minutes, so that
the ratios (unlike the raw figures) carry over between machines:

0. accelerated (:mod:`testbed.sim`) vs stock highway-env ``env.step`` per scenario;
1. expert collection through :mod:`testbed.rollout` vs bare ``env.step`` on the same scenario
   and seeds: once with IDLE (a fixed action; it crashes early, so compare steps/s, not
   episodes) and once on the expert's own states (a plain loop that drives with the expert,
   timing ``env.step`` and ``ScriptedExpert.act`` separately);
2. the same collection in N worker processes vs 1, on warm pools (start-up excluded) and
   from pool open on (start-up and warm-up included), checking the records are identical;
3. behavioral cloning through :func:`testbed.training.train_bc` (imitation's BC trainer) vs a
   plain torch loop on the same network, data, batch size and epochs;
4. the plain loop at torch's default thread count vs 1 thread;
5. whole processes: ``testbed collect --workers N`` vs ``--workers 1``, each a new process
   timed from launch to exit (imports, the forkserver, workers' start-up and saving
   included), alternating, checking the saved trajectories are byte-identical;
6. a clone's evaluation episodes in lockstep (:func:`testbed.rollout.run_lockstep`: one
   batched forward per step for all running episodes) vs one episode at a time, in this
   process, alternating block by block, checking the records are identical;
7. planner-labelled clone episodes (the teacher's own episodes first, then each clone of it
   driving the same seeds, as the compounding-error experiment evaluates them) with the
   planner's decisions and the simulated steps kept as in a rebuild
   (:class:`testbed.rollout.DecisionMemo`, :class:`testbed.rollout.StepMemo`, inside
   :func:`testbed.rollout.reuse_episodes`) vs every decision asked and every step simulated,
   in this process, alternating block by block, checking the records are identical;
8. the same clones with the scripted expert driving first and labelling (it keeps no
   decisions): the kept steps alone.

Usage::

    python benchmarks/throughput.py                      # several minutes on 2 cores
    python benchmarks/throughput.py --comparisons whole-process lockstep
    python benchmarks/throughput.py --n-episodes 100 --n-epochs 30 --out /tmp/throughput.json

Notes:
    Wall-clock figures depend on whatever else runs on the machine. The collection
    measurements alternate block by block and the training ones repeat by repeat, so that a
    change of background load hits both sides of a ratio alike; the 1-minute load average
    before and after is printed and stored so that a noisy run can be recognised.
    Everything runs under ``main()``: rollout workers import this file (multiprocessing
    imports the main module in the forkserver, or in each ``spawn``-ed worker).
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import pathlib
import statistics
import sys
import time
import warnings
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

if TYPE_CHECKING:
    from testbed.demos import Demonstrations
    from testbed.rollout import EpisodeRecord
    from testbed.scenarios import Scenario
    from testbed.training import TrainConfig


@dataclasses.dataclass
class Args:
    """Measure collection, parallel-rollout and BC-training throughput as ratios."""

    scenario: str = "highway-fast"
    """Scenario preset: highway-fast, highway, merge or roundabout."""
    expert: str = "scripted"
    """Expert driver whose collection is measured."""
    n_episodes: int = 20
    """Measured episodes; episode i uses seed SEED + i (the same seeds in every comparison)."""
    seed: int = 0
    """First measured episode seed; warm-up episodes use seeds after the measured ones."""
    n_workers: int = 2
    """Worker processes of the parallel collection, compared with 1."""
    n_warmup_episodes: int = 1
    """Warm-up episodes per worker, run untimed once a pool is open (imports, env and expert built)."""
    n_epochs: int = 10
    """BC and plain-loop passes over the training split."""
    batch_size: int = 64
    """Samples per gradient step, in both training loops."""
    net_arch: tuple[int, ...] = (64, 64)
    """Hidden layer sizes of the policy MLP."""
    torch_threads: int = 1
    """Torch intra-op threads of BC and the plain loop (comparison 4 adds torch's default)."""
    n_blocks: int = 4
    """Blocks of seeds; the four collection measurements alternate block by block (load drift hits all)."""
    n_train_repeats: int = 5
    """Repeats of each training measurement, reporting the median time (one is noisy: it is short)."""
    default_threads_budget_s: float = 30.0
    """Time after which the default-threads plain loop stops repeating [s] (it can be 100x slower)."""
    sim_scenarios: tuple[str, ...] = ("highway-fast", "highway", "merge", "roundabout")
    """Scenarios on which accelerated (testbed.sim) and stock ``env.step`` are compared (comparison 0)."""
    sim_steps: int = 30
    """Steps per timed block of the accelerated/stock comparison."""
    sim_pairs: int = 3
    """Interleaved stock/accelerated block pairs per scenario and action mode (median reported)."""
    comparisons: tuple[Literal["sim", "collection", "whole-process", "lockstep", "decisions", "steps"], ...] = (
        "sim",
        "collection",
        "whole-process",
        "lockstep",
        "decisions",
        "steps",
    )
    """Which to measure: sim (0), collection (1-4, training included), whole-process (5), lockstep (6),
    decisions (7), steps (8)."""
    whole_process_episodes: int = 60
    """Episodes of each whole-process ``testbed collect`` (comparison 5; at least 2, since a
    one-episode command is timed beside it)."""
    whole_process_pairs: int = 2
    """Alternating (1 worker, N workers) command pairs (comparison 5; medians reported)."""
    lockstep_clone: str = "results/pipeline/highway-fast/clone"
    """Clone run directory driven in comparison 6 (relative paths: from the current
    directory, else from the repository); trained on --scenario."""
    lockstep_episodes: int = 200
    """Episodes of the clone in each mode (comparison 6), from the evaluation seeds on."""
    decision_clones: str = "results/compounding_error_planner/sweep/cells"
    """Folder whose ``*/clones/B*/`` run directories are clones of the planner on highway-fast
    (comparison 7; relative paths as for --lockstep-clone): the committed BC and DART clones."""
    decision_n_clones: int = 10
    """Clones driven in comparison 7 (the first, in name order)."""
    decision_episodes: int = 8
    """Seeds each clone and the teacher drive in each mode (comparison 7), from the evaluation seeds on."""
    step_clones: str = "results/compounding_error_planner/sweep/cells"
    """Folder whose ``*/clones/B*/`` run directories are clones on highway-fast, driven with the
    scripted expert labelling (comparison 8; relative paths as for --lockstep-clone): the planner's
    committed BC and DART clones (the scripted expert's are not committed)."""
    step_n_clones: int = 10
    """Clones driven in comparison 8 (the first, in name order)."""
    step_episodes: int = 20
    """Seeds each clone and the teacher drive in each mode (comparison 8), from the evaluation seeds on."""
    out: str | None = None
    """JSON file for the figures, arguments and provenance (default: print only)."""

    def validate(self) -> None:
        """Raise :class:`testbed.errors.TestbedError` on nonsense values."""
        from testbed.errors import TestbedError

        counts = (
            "n_episodes",
            "n_workers",
            "n_blocks",
            "n_epochs",
            "batch_size",
            "torch_threads",
            "n_train_repeats",
            "sim_steps",
            "sim_pairs",
            "whole_process_episodes",
            "whole_process_pairs",
            "lockstep_episodes",
            "decision_n_clones",
            "decision_episodes",
            "step_n_clones",
            "step_episodes",
        )
        for name in counts:
            if getattr(self, name) < 1:
                raise TestbedError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(self, name)}")
        if self.whole_process_episodes < 2:
            raise TestbedError(f"--whole-process-episodes must be at least 2, got {self.whole_process_episodes}")
        if self.n_warmup_episodes < 0:
            raise TestbedError(f"--n-warmup-episodes must be >= 0, got {self.n_warmup_episodes}")
        if not self.default_threads_budget_s >= 0:
            raise TestbedError(f"--default-threads-budget-s must be >= 0, got {self.default_threads_budget_s}")
        if self.seed < 0:
            raise TestbedError(f"--seed must be non-negative, got {self.seed}")
        if not self.net_arch or any(h < 1 for h in self.net_arch):
            raise TestbedError(f"--net-arch needs positive layer sizes, got {list(self.net_arch)}")
        if self.out is not None and pathlib.Path(self.out).is_dir():
            raise TestbedError(f"--out must be a file path, got the directory {self.out}")


# ----------------------------------------------------------------------------- collection


def _n_steps(records: Sequence[EpisodeRecord]) -> int:
    return int(sum(len(r.trajectory.acts) for r in records))


def timed_rollouts(pool: Any, scenario: Scenario, spec: Any, seeds: Sequence[int]) -> dict[str, Any]:
    """Run ``seeds`` through :func:`testbed.rollout.rollouts` in an open pool, timed.

    Returns:
        ``records``, ``steps`` (transitions), ``time_s`` (wall clock) and ``block_times_s``
        (the same, as a one-item list that accumulates over blocks).
    """
    from testbed.rollout import rollouts

    start = time.perf_counter()
    records = rollouts(scenario, spec, seeds, pool=pool)
    elapsed = time.perf_counter() - start
    return {"records": records, "steps": _n_steps(records), "time_s": elapsed, "block_times_s": [elapsed]}


def bare_idle(env: Any, seeds: Sequence[int]) -> dict[str, Any]:
    """Step a bare env (from :func:`testbed.scenarios.make_env`) with IDLE on every seed until
    the episode ends.

    Returns:
        ``steps``, ``time_s`` (resets and steps, as collection includes both) and
        ``step_time_s`` (``env.step`` only).
    """
    idle = int(env.unwrapped.action_type.actions_indexes["IDLE"])
    steps, reset_s, step_s = 0, 0.0, 0.0
    for seed in seeds:
        t0 = time.perf_counter()
        env.reset(seed=seed)
        t1 = time.perf_counter()
        reset_s += t1 - t0
        done = False
        while not done:
            _, _, terminated, truncated, _ = env.step(idle)
            done = terminated or truncated
            steps += 1
        step_s += time.perf_counter() - t1
    return {"steps": steps, "time_s": reset_s + step_s, "step_time_s": step_s}


def plain_expert_loop(env: Any, driver: Any, seeds: Sequence[int]) -> dict[str, Any]:
    """Drive an expert on every seed in a plain loop (no harness, no infos), timing the
    simulator (``env.reset`` + ``env.step``) and the expert (``reset`` + ``act``) apart.

    Args:
        env: an env from :func:`testbed.scenarios.make_env`.
        driver: an expert from :func:`testbed.experts.make_expert`.
        seeds: episode seeds.

    Returns:
        ``steps``, ``sim_time_s``, ``expert_time_s``, ``time_s`` (the whole loop) and
        ``episodes``: per seed, the (actions, rewards) driven, to check against the harness.
    """
    base = env.unwrapped
    steps, sim_s, expert_s = 0, 0.0, 0.0
    episodes: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    start = time.perf_counter()
    for seed in seeds:
        t0 = time.perf_counter()
        obs, _ = env.reset(seed=seed)
        t1 = time.perf_counter()
        driver.reset(base, seed)
        t2 = time.perf_counter()
        sim_s += t1 - t0
        expert_s += t2 - t1
        actions: list[int] = []
        rewards: list[float] = []
        done = False
        while not done:
            t0 = time.perf_counter()
            action = int(driver.act(obs, base))
            t1 = time.perf_counter()
            obs, reward, terminated, truncated, _ = env.step(action)
            t2 = time.perf_counter()
            expert_s += t1 - t0
            sim_s += t2 - t1
            actions.append(action)
            rewards.append(float(reward))
            done = terminated or truncated
        steps += len(actions)
        episodes[int(seed)] = (np.asarray(actions, dtype=np.int64), np.asarray(rewards, dtype=np.float32))
    return {
        "steps": steps,
        "sim_time_s": sim_s,
        "expert_time_s": expert_s,
        "time_s": time.perf_counter() - start,
        "episodes": episodes,
    }


def _accumulate(total: dict[str, Any], part: dict[str, Any]) -> None:
    """Add a block's figures to the running totals (numbers add, lists and dicts extend)."""
    for key, value in part.items():
        if key not in total:
            total[key] = value
        elif isinstance(value, list):
            total[key] = total[key] + value
        elif isinstance(value, dict):
            total[key] = {**total[key], **value}
        else:
            total[key] += value


def blocks(seeds: Sequence[int], n_blocks: int, multiple: int) -> list[list[int]]:
    """Cut ``seeds`` into at most ``n_blocks`` consecutive blocks whose sizes (but the last)
    are a multiple of ``multiple``, so a block splits evenly over that many workers."""
    size = -(-len(seeds) // n_blocks)
    size = -(-size // multiple) * multiple
    return [list(seeds[i : i + size]) for i in range(0, len(seeds), size)]


def collection_measurements(args: Args, scenario: Scenario, *, log: Callable[[str], None]) -> dict[str, Any]:
    """Comparisons 1 and 2: collection in 1 and N workers, IDLE and the plain expert loop.

    Both pools are opened and warmed up first (the time from opening a pool to the end of its
    warm-up is its start-up); then the measured seeds run block by block, each block through
    all four in turn, so that a change of background load during the run hits them alike.

    Also records the CPU time each side obtained (``cpu_s``): this process's for 1 worker,
    the workers' (start-up included, read once they have exited) for N. On a shared machine
    (Linux gives each session a fair share, however many processes it runs) N workers may
    get no more CPU than 1, and then cannot be faster.

    Returns:
        ``one``, ``many`` (``records``, ``steps``, ``time_s``, ``block_times_s``,
        ``startup_s``, ``warmup_steps``, ``cpu_s``), ``idle`` (see :func:`bare_idle`) and
        ``plain`` (see :func:`plain_expert_loop`).
    """
    import resource

    from testbed.experts import make_expert
    from testbed.policies import PolicySpec
    from testbed.rollout import RolloutPool
    from testbed.scenarios import make_env
    from testbed.seeds import episode_seeds

    spec = PolicySpec.parse(f"expert:{args.expert}")
    seeds = episode_seeds(args.seed, args.n_episodes)
    after = seeds[-1] + 1
    env = make_env(scenario)
    driver = make_expert(args.expert)
    one: dict[str, Any] = {}
    many: dict[str, Any] = {}
    idle: dict[str, Any] = {}
    plain: dict[str, Any] = {}
    try:
        log("opening and warming up a 1-worker pool (this process) ...")
        opened = time.perf_counter()
        with RolloutPool(1) as pool_one:
            warm = timed_rollouts(pool_one, scenario, spec, list(range(after, after + args.n_warmup_episodes)))
            one.update(startup_s=time.perf_counter() - opened, warmup_steps=warm["steps"])
            log(f"opening and warming up a {args.n_workers}-worker pool ...")
            opened = time.perf_counter()
            children = resource.getrusage(resource.RUSAGE_CHILDREN)
            with RolloutPool(args.n_workers) as pool_many:
                n_warm = args.n_warmup_episodes * args.n_workers
                warm = timed_rollouts(pool_many, scenario, spec, list(range(after, after + n_warm)))
                many.update(startup_s=time.perf_counter() - opened, warmup_steps=warm["steps"])
                parts = blocks(seeds, args.n_blocks, args.n_workers)
                for i, block in enumerate(parts):
                    log(
                        f"block {i + 1}/{len(parts)} (seeds {block[0]}-{block[-1]}): "
                        f"1 worker, IDLE, plain expert loop, {args.n_workers} workers ..."
                    )
                    cpu = time.process_time()
                    _accumulate(one, timed_rollouts(pool_one, scenario, spec, block))
                    _accumulate(one, {"cpu_s": time.process_time() - cpu})
                    _accumulate(idle, bare_idle(env, block))
                    _accumulate(plain, plain_expert_loop(env, driver, block))
                    _accumulate(many, timed_rollouts(pool_many, scenario, spec, block))
            # The pool has joined its workers, so their CPU time now counts as our children's.
            exited = resource.getrusage(resource.RUSAGE_CHILDREN)
            many["cpu_s"] = (exited.ru_utime + exited.ru_stime) - (children.ru_utime + children.ru_stime)
    finally:
        env.close()
    return {"one": one, "many": many, "idle": idle, "plain": plain}


def same_records(a: Sequence[EpisodeRecord], b: Sequence[EpisodeRecord]) -> int:
    """Number of seeds whose episodes have identical actions, rewards and observations
    (0 if the two lists are not over the same seeds in the same order)."""
    if [r.seed for r in a] != [r.seed for r in b]:
        return 0
    return sum(
        np.array_equal(x.trajectory.acts, y.trajectory.acts)
        and np.array_equal(x.trajectory.rews, y.trajectory.rews)
        and np.array_equal(x.trajectory.obs, y.trajectory.obs)
        for x, y in zip(a, b)
    )


# ----------------------------------------------------------------------------- training


def as_demonstrations(records: Sequence[EpisodeRecord], scenario: Scenario, expert: str) -> Demonstrations:
    """Wrap harness records as :class:`testbed.demos.Demonstrations`, with the metadata
    :func:`testbed.demos.collect` would write for them."""
    from testbed.demos import DemoMetadata, Demonstrations
    from testbed.experts import make_expert

    trajectories = [r.trajectory for r in records]
    metadata = DemoMetadata.describe(
        scenario,
        trajectories,
        [r.seed for r in records],
        expert={"name": expert, "params": make_expert(expert).params()},
    )
    return Demonstrations(trajectories, metadata)


def time_bc(demos: Demonstrations, config: TrainConfig) -> dict[str, Any]:
    """Time one :func:`testbed.training.train_bc` call, as is (its per-epoch train and
    validation accuracy included).

    Returns:
        ``time_s``, ``samples`` (imitation drops the last partial batch of each epoch),
        ``train_accuracy`` (last epoch) and ``train_episodes``.
    """
    from testbed.training import train_bc

    start = time.perf_counter()
    result = train_bc(demos, config)
    elapsed = time.perf_counter() - start
    n_train = sum(len(demos.trajectories[i].acts) for i in result.train_episodes)
    return {
        "time_s": elapsed,
        "samples": config.n_epochs * (n_train // config.batch_size) * config.batch_size,
        "train_accuracy": float(result.log["train/accuracy"].iloc[-1]),
        "train_episodes": result.train_episodes,
    }


def time_plain(
    demos: Demonstrations, train_episodes: Sequence[int], config: TrainConfig, *, n_threads: int
) -> dict[str, Any]:
    """Train the same network as :func:`testbed.training.train_bc` with a plain torch loop.

    Adam on imitation's BC loss without its bookkeeping: ``evaluate_actions`` log-likelihood
    plus the entropy bonus (and the L2 term when its weight is non-zero); the data are
    tensors made once, shuffled each epoch, cut into full batches of ``config.batch_size``.

    Returns:
        ``time_s`` (stacking the data, building the network, training), ``samples`` and
        ``train_accuracy``
        (computed after the timer stops).
    """
    import torch

    from testbed.clone_io import make_policy
    from testbed.spaces import space_from_dict

    torch.set_num_threads(n_threads)
    start = time.perf_counter()
    obs_np = np.concatenate([np.asarray(demos.trajectories[i].obs[:-1]) for i in train_episodes])
    acts_np = np.concatenate([np.asarray(demos.trajectories[i].acts) for i in train_episodes])
    torch.manual_seed(config.seed)
    policy = make_policy(
        space_from_dict(demos.metadata.observation_space),
        space_from_dict(demos.metadata.action_space),
        config.net_arch,
    )
    policy.set_training_mode(True)
    optimizer = torch.optim.Adam(policy.parameters(), lr=config.learning_rate)
    obs = torch.as_tensor(obs_np, dtype=torch.float32)
    acts = torch.as_tensor(acts_np, dtype=torch.int64)
    generator = torch.Generator().manual_seed(config.seed)
    n, batch, samples = len(acts), config.batch_size, 0
    for _ in range(config.n_epochs):
        order = torch.randperm(n, generator=generator)
        for first in range(0, n - batch + 1, batch):
            index = order[first : first + batch]
            _, log_prob, entropy = policy.evaluate_actions(obs[index], acts[index])
            loss = -log_prob.mean() - config.ent_weight * entropy.mean()
            if config.l2_weight:
                loss = loss + config.l2_weight * sum(torch.sum(p**2) for p in policy.parameters()) / 2
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            samples += batch
    elapsed = time.perf_counter() - start
    policy.set_training_mode(False)
    with torch.no_grad():
        predicted = policy._predict(obs, deterministic=True).numpy()
    return {"time_s": elapsed, "samples": samples, "train_accuracy": float(np.mean(predicted == acts_np))}


def _train_figures(runs: Sequence[dict[str, Any]]) -> dict[str, Any]:
    samples_per_s, median_s = median_rate(runs)
    return {
        "samples": runs[0]["samples"],
        "median_time_s": median_s,
        "samples_per_s": samples_per_s,
        "times_s": [r["time_s"] for r in runs],
        "train_accuracy": runs[0]["train_accuracy"],
    }


def median_rate(runs: Sequence[dict[str, Any]]) -> tuple[float, float]:
    """(samples/s at the median time, median time [s]) over repeated runs of equal size."""
    median_s = statistics.median(r["time_s"] for r in runs)
    return runs[0]["samples"] / median_s, median_s


# ----------------------------------------------------------------------------- report


def _fmt(x: float) -> str:
    """Three significant figures below 100, whole numbers above (no scientific notation)."""
    return f"{x:.3g}" if abs(x) < 100 else f"{x:.0f}"


def _ratio(a: float, b: float) -> float:
    return a / b if b > 0 else float("nan")


def _load() -> float:
    try:
        return float(os.getloadavg()[0])
    except OSError:  # pragma: no cover - not available
        return float("nan")


def run(args: Args, *, log: Callable[[str], None]) -> dict[str, Any]:
    """Take the measurements of ``args.comparisons`` and return the figures, ratios and table lines."""
    ratios: dict[str, float] = {}
    figures: dict[str, Any] = {}
    lines: list[str] = []
    if "sim" in args.comparisons:
        sim_figures = sim_measurements(args, log=log)
        for name, m in sim_figures.items():
            for mode, f in m["modes"].items():
                ratios[f"sim_accelerated/stock/{name}/{mode}"] = f["speedup"]
        lines += [
            f"accelerated/stock env.step speed on {name}: "
            + ", ".join(
                f"{mode} {f['speedup']:.2f}x "
                f"({1e3 * f['stock_s_per_step']:.1f} -> {1e3 * f['accelerated_s_per_step']:.1f} ms/step)"
                for mode, f in m["modes"].items()
            )
            + ("" if m["accelerated_active"] else " (accelerated sim NOT active: both sides stock)")
            for name, m in sim_figures.items()
        ]
        figures["sim"] = sim_figures
    sections = {
        "collection": collection_and_training,
        "whole-process": whole_process_comparison,
        "lockstep": lockstep_comparison,
        "decisions": decisions_comparison,
        "steps": steps_comparison,
    }
    for name, section in sections.items():
        if name in args.comparisons:
            part = section(args, log=log)
            ratios |= part["ratios"]
            figures |= part["figures"]
            lines += part["lines"]
    return {"ratios": ratios, "figures": figures, "lines": lines}


def collection_and_training(args: Args, *, log: Callable[[str], None]) -> dict[str, Any]:
    """Comparisons 1-4 (they share the collected records): figures, ratios and table lines."""
    import torch

    from testbed.scenarios import get_scenario
    from testbed.seeds import episode_seeds
    from testbed.training import TrainConfig

    default_threads = torch.get_num_threads()  # before anything below sets it
    load_before = _load()
    scenario = get_scenario(args.scenario)
    seeds = episode_seeds(args.seed, args.n_episodes)
    measured = collection_measurements(args, scenario, log=log)
    one, many, idle, plain_loop = measured["one"], measured["many"], measured["idle"], measured["plain"]
    records = one["records"]

    collect_sps = one["steps"] / one["time_s"]
    idle_sps = idle["steps"] / idle["time_s"]
    sim_sps = plain_loop["steps"] / plain_loop["sim_time_s"]
    n_reproduced = sum(
        np.array_equal(plain_loop["episodes"][r.seed][0], r.trajectory.acts)
        and np.array_equal(plain_loop["episodes"][r.seed][1], r.trajectory.rews)
        for r in records
    )
    expert_ms = 1e3 * plain_loop["expert_time_s"] / plain_loop["steps"]
    sim_ms = 1e3 * plain_loop["sim_time_s"] / plain_loop["steps"]
    collect_ms = 1e3 / collect_sps
    many_sps = many["steps"] / many["time_s"]
    # Start-up included: pool open + warm-up + measured batches, over all the steps they ran.
    one_life_s, many_life_s = one["startup_s"] + one["time_s"], many["startup_s"] + many["time_s"]
    one_life_sps = (one["warmup_steps"] + one["steps"]) / one_life_s
    many_life_sps = (many["warmup_steps"] + many["steps"]) / many_life_s
    n_identical = same_records(records, many["records"])
    one_cores = one["cpu_s"] / one["time_s"]  # CPU obtained while busy [cores]
    many_cores = many["cpu_s"] / (many["startup_s"] + many["time_s"])

    warnings.filterwarnings("ignore", message="Converting a tensor with requires_grad=True")  # imitation 1.0.1
    demos = as_demonstrations(records, scenario, args.expert)
    config = TrainConfig(
        n_epochs=args.n_epochs,
        batch_size=args.batch_size,
        net_arch=tuple(args.net_arch),
        seed=args.seed,
        torch_threads=args.torch_threads,
    )
    warm_config = dataclasses.replace(config, n_epochs=1)
    # Warm-up of both training loops: imports and torch's first-call costs out of the timings.
    train_episodes = time_bc(demos, warm_config)["train_episodes"]
    time_plain(demos, train_episodes, warm_config, n_threads=args.torch_threads)

    log(f"training: train_bc vs a plain torch loop, {args.n_epochs} epochs x {args.n_train_repeats} repeats ...")
    bc_runs, plain_runs, one_thread_runs, default_runs = [], [], [], []
    for _ in range(args.n_train_repeats):  # interleaved, so background load hits all alike
        bc_runs.append(time_bc(demos, config))
        plain_runs.append(time_plain(demos, train_episodes, config, n_threads=args.torch_threads))
        if args.torch_threads != 1:
            one_thread_runs.append(time_plain(demos, train_episodes, config, n_threads=1))
        if sum(r["time_s"] for r in default_runs) < args.default_threads_budget_s:
            default_runs.append(time_plain(demos, train_episodes, config, n_threads=default_threads))
    torch.set_num_threads(args.torch_threads)
    bc_sps, _ = median_rate(bc_runs)
    plain_sps, _ = median_rate(plain_runs)
    one_thread_sps, _ = median_rate(one_thread_runs or plain_runs)
    default_sps, _ = median_rate(default_runs)
    load_after = _load()

    ratios = {
        "collection/bare_sim_idle": _ratio(collect_sps, idle_sps),
        "collection/bare_sim_expert_states": _ratio(collect_sps, sim_sps),
        f"workers_{args.n_workers}/workers_1": _ratio(many_sps, collect_sps),
        f"workers_{args.n_workers}/workers_1_with_startup": _ratio(many_life_sps, one_life_sps),
        "bc/plain_torch": _ratio(bc_sps, plain_sps),
        f"plain_torch_threads_{default_threads}/threads_1": _ratio(default_sps, one_thread_sps),
    }
    n = args.n_episodes
    lines = [
        f"== throughput: {args.scenario}, expert:{args.expert}, {n} episodes (seeds {seeds[0]}-{seeds[-1]}), "
        f"{one['steps']} expert steps; load avg {load_before:.1f} -> {load_after:.1f} "
        f"on {os.cpu_count()} cores ==",
        f"collection/bare-sim steps/s ratio: {ratios['collection/bare_sim_idle']:.2f} "
        f"({_fmt(collect_sps)} vs {_fmt(idle_sps)} steps/s; bare = IDLE, {idle['steps']} steps to crash/end, "
        "resets included)",
        "collection/bare-sim on the expert's states steps/s ratio: "
        f"{ratios['collection/bare_sim_expert_states']:.2f} "
        f"({_fmt(collect_sps)} vs {_fmt(sim_sps)} steps/s; bare = env.reset+env.step of a plain expert loop)",
        f"expert decision: {expert_ms:.2f} ms per act; per collection step {collect_ms:.1f} ms = "
        f"sim {sim_ms:.1f} + expert {expert_ms:.2f} + harness (remainder) "
        f"{collect_ms - sim_ms - expert_ms:.2f} ms "
        f"(plain loop reproduces the harness's actions and rewards on {n_reproduced}/{n} episodes)",
        f"{args.n_workers}-worker/1-worker steps/s ratio: {ratios[f'workers_{args.n_workers}/workers_1']:.2f} "
        f"({_fmt(many_sps)} vs {_fmt(collect_sps)} steps/s; warm pools, start-up excluded; "
        + (
            f"CPU obtained while busy: {many_cores:.2f} vs {one_cores:.2f} cores)"
            if many["cpu_s"] > 0
            else "CPU of forkserver workers not measured: they are not this process's children)"
        ),
        f"{args.n_workers}-worker/1-worker steps/s ratio incl. start-up: "
        f"{ratios[f'workers_{args.n_workers}/workers_1_with_startup']:.2f} "
        f"({_fmt(many_life_sps)} vs {_fmt(one_life_sps)} steps/s; pool open + warm-up + measured: "
        f"{many_life_s:.1f} s vs {one_life_s:.1f} s)",
        f"{args.n_workers}-worker records identical to 1-worker: {'yes' if n_identical == n else 'NO'} "
        f"({n_identical}/{n} episodes with equal actions, rewards and observations)",
        f"BC/plain-torch samples/s ratio: {ratios['bc/plain_torch']:.2f} "
        f"({_fmt(bc_sps)} vs {_fmt(plain_sps)} samples/s, {args.torch_threads} torch thread"
        f"{'s' if args.torch_threads > 1 else ''}, median of "
        f"{args.n_train_repeats}; train_bc as is, incl. its train/val evaluations every eval_every epochs; "
        f"final train accuracy {bc_runs[0]['train_accuracy']:.2f} vs {plain_runs[0]['train_accuracy']:.2f})",
        f"plain-torch {default_threads}-thread(default)/1-thread samples/s ratio: "
        f"{ratios[f'plain_torch_threads_{default_threads}/threads_1']:.2f} "
        f"({_fmt(default_sps)} vs {_fmt(one_thread_sps)} samples/s, median of {len(default_runs)} vs "
        f"{len(one_thread_runs or plain_runs)})",
    ]
    figures = {
        "collection": {"steps": one["steps"], "time_s": one["time_s"], "steps_per_s": collect_sps},
        "bare_sim_idle": {
            **idle,
            "steps_per_s": idle_sps,
            "step_only_steps_per_s": idle["steps"] / idle["step_time_s"],
        },
        "plain_expert_loop": {
            **{k: v for k, v in plain_loop.items() if k != "episodes"},
            "sim_steps_per_s": sim_sps,
            "expert_ms_per_decision": expert_ms,
            "episodes_matching_harness": n_reproduced,
        },
        "workers_1": {k: v for k, v in one.items() if k != "records"}
        | {"steps_per_s": collect_sps, "with_startup_steps_per_s": one_life_sps, "cores_obtained": one_cores},
        f"workers_{args.n_workers}": {k: v for k, v in many.items() if k != "records"}
        | {
            "steps_per_s": many_sps,
            "with_startup_steps_per_s": many_life_sps,
            "cores_obtained": many_cores,
            "identical_episodes": n_identical,
        },
        "train": {
            "n_train_transitions": int(sum(len(records[i].trajectory.acts) for i in train_episodes)),
            "torch_default_threads": default_threads,
            "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS"),
            "bc": _train_figures(bc_runs),
            "plain": _train_figures(plain_runs),
            "plain_1_thread": _train_figures(one_thread_runs or plain_runs),
            "plain_default_threads": _train_figures(default_runs),
        },
        "load_average_1min": {"before": load_before, "after": load_after},
        "cpu_count": os.cpu_count(),
    }
    return {"ratios": ratios, "figures": figures, "lines": lines}


def whole_process_comparison(args: Args, *, log: Callable[[str], None]) -> dict[str, Any]:
    """Comparison 5: ``testbed collect`` as whole processes with N workers vs 1 (what a user
    waits for: interpreter start, imports, the forkserver and its workers, the episodes and
    the saving), alternating pair by pair so that load changes hit both; median wall times.
    Each is ``python -m testbed``, the ``testbed`` command's own entry point
    (:mod:`testbed._early`, which starts the workers' forkserver before the heavy imports),
    not :mod:`testbed.cli`, which would skip that start.

    The collected trajectories must be byte-identical whatever the worker count. Each pair
    also times a one-episode, one-worker command: with the 1-worker command's time T1 = s + n e
    (n episodes of e seconds each, s the rest: interpreter, imports, saving, exit) and the
    one-episode command's s + e, it gives s and so the most N workers can give, T1 / (s + n e / N),
    were the episodes split perfectly at no cost.
    """
    import subprocess
    import tempfile

    from testbed.errors import TestbedError

    n, many_workers = args.whole_process_episodes, args.n_workers
    runs = {"1": (1, n), str(many_workers): (many_workers, n), "1 episode": (1, 1)}  # (workers, episodes)
    times: dict[str, list[float]] = {name: [] for name in runs}
    identical = True
    with tempfile.TemporaryDirectory(prefix="throughput-collect-") as tmp:
        for pair in range(args.whole_process_pairs):
            outputs = {}
            for name, (workers, episodes) in runs.items():
                what = f"--workers {workers} --episodes {episodes}"
                log(f"whole process {pair + 1}/{args.whole_process_pairs}: testbed collect {what} ...")
                out = pathlib.Path(tmp) / f"w{workers}-e{episodes}"
                command = [sys.executable, "-m", "testbed", "collect", "--scenario", args.scenario]
                command += ["--expert", args.expert, "--episodes", str(episodes), "--seed", str(args.seed)]
                command += ["--workers", str(workers), "--out", str(out), "--overwrite"]
                start = time.perf_counter()
                done = subprocess.run(command, capture_output=True, text=True)
                times[name].append(time.perf_counter() - start)
                if done.returncode != 0:
                    raise TestbedError(f"testbed collect failed: {done.stderr.strip()[-500:]}")
                outputs[name] = {f.name: f.read_bytes() for f in sorted((out / "trajectories").iterdir())}
            identical = identical and outputs["1"] == outputs[str(many_workers)]
    one, many, single = (statistics.median(times[name]) for name in runs)
    per_episode = (one - single) / (n - 1)
    serial = single - per_episode
    bound = one / (serial + (one - serial) / many_workers)
    key = f"whole_process_collect_workers_{many_workers}/workers_1"
    figures = {"episodes": n, "wall_times_s": times, "serial_s": serial, "episode_s": per_episode, "bound": bound}
    return {
        "ratios": {key: _ratio(one, many)},
        "figures": {"whole_process_collect": figures},
        "lines": [
            f"whole-process collect {many_workers}-worker/1-worker speed ratio: {_ratio(one, many):.2f} "
            f"({n} episodes; median wall time {many:.1f} s vs {one:.1f} s from launch to exit, "
            f"{args.whole_process_pairs} alternating pairs; saved trajectories identical: "
            f"{'yes' if identical else 'NO'}); of the 1-worker command's {one:.1f} s, {serial:.1f} s are not "
            f"episodes (a 1-episode command took {single:.1f} s), so {many_workers} workers can give at most "
            f"{bound:.2f}"
        ],
    }


def _clone_dir(path: str) -> pathlib.Path:
    """``path`` as given if it exists, else relative to the repository (this file's parent's parent)."""
    given = pathlib.Path(path)
    if given.exists() or given.is_absolute():
        return given
    return pathlib.Path(__file__).resolve().parent.parent / given


def lockstep_comparison(args: Args, *, log: Callable[[str], None]) -> dict[str, Any]:
    """Comparison 6: a clone's episodes in lockstep (one pool with ``lockstep=True``) vs one
    at a time (one without), both in this process, on the evaluation seeds; the blocks of
    seeds alternate between the two so that load changes hit both. Also times the clone's
    one-row forward against the whole step, which bounds what batching can save."""
    from testbed.policies import PolicySpec, build_agent
    from testbed.rollout import LOCKSTEP_WIDTH, RolloutPool, fresh_episodes
    from testbed.scenarios import get_scenario, make_env
    from testbed.seeds import EVAL_SEED, episode_seeds

    scenario = get_scenario(args.scenario)
    spec = PolicySpec.parse(f"clone:{_clone_dir(args.lockstep_clone)}")
    seeds = episode_seeds(EVAL_SEED, args.lockstep_episodes)
    times = {"sequential": 0.0, "lockstep": 0.0}
    records: dict[str, list[EpisodeRecord]] = {"sequential": [], "lockstep": []}
    with fresh_episodes(), RolloutPool(1) as sequential, RolloutPool(1, lockstep=True) as lockstep:
        # Warm-up, untimed: the clone loaded, and every lane's env built.
        sequential.run(scenario, spec, [seeds[-1] + 1])
        lockstep.run(scenario, spec, list(range(seeds[-1] + 1, seeds[-1] + 1 + LOCKSTEP_WIDTH)))
        parts = blocks(seeds, args.n_blocks, 1)
        for i, block in enumerate(parts):
            log(f"lockstep block {i + 1}/{len(parts)} (seeds {block[0]}-{block[-1]}): one at a time, lockstep ...")
            for name, pool in (("sequential", sequential), ("lockstep", lockstep)):
                start = time.perf_counter()
                records[name] += pool.run(scenario, spec, block)
                times[name] += time.perf_counter() - start
        # What batching could save at most: the one-row forward's share of a step.
        env, agent = make_env(scenario), build_agent(spec, scenario)
        obs, _ = env.reset(seed=seeds[0])
        start = time.perf_counter()
        for _ in range(200):
            agent.act(obs, env.unwrapped)
        forward_ms = (time.perf_counter() - start) / 200 * 1e3
        env.close()
    n_identical = same_records(records["sequential"], records["lockstep"])
    steps = _n_steps(records["sequential"])
    step_ms = 1e3 * times["sequential"] / steps
    ratio = _ratio(times["sequential"], times["lockstep"])
    return {
        "ratios": {"lockstep/one_episode_at_a_time": ratio},
        "figures": {
            "lockstep": {
                "clone": str(spec.arg),
                "episodes": len(seeds),
                "steps": steps,
                "time_s": times,
                "one_row_forward_ms": forward_ms,
                "step_ms_one_at_a_time": step_ms,
                "identical_episodes": n_identical,
            }
        },
        "lines": [
            f"lockstep/one-episode-at-a-time speed ratio: {ratio:.2f} ({len(seeds)} clone episodes, {steps} steps: "
            f"{times['lockstep']:.1f} s vs {times['sequential']:.1f} s in one process; the clone's one-row forward "
            f"is {forward_ms:.2f} of {step_ms:.2f} ms per step, so batching it can give at most "
            f"{_ratio(step_ms, step_ms - forward_ms):.2f}x; records identical: "
            f"{'yes' if n_identical == len(seeds) else 'NO'} ({n_identical}/{len(seeds)})"
        ],
    }


def _teacher_and_clones(
    teacher: str, clones_dir: str, n_clones: int, episodes: int, n_blocks: int, *, what: str, log: Callable[[str], None]
) -> dict[str, Any]:
    """The teacher driving highway-fast's evaluation seeds, then each of its clones (the first
    ``n_clones`` under ``clones_dir/*/clones/B*/``) driving them labelled by the teacher, as the
    compounding-error experiment evaluates them: everything simulated and asked
    (:func:`testbed.rollout.fresh_episodes`) vs kept as in a rebuild
    (:func:`testbed.rollout.reuse_episodes`: the teacher's decisions if it keeps them,
    :class:`testbed.rollout.DecisionMemo`, and the simulated steps,
    :class:`testbed.rollout.StepMemo`), in this process, block by block of seeds, fresh first
    in each block. Returns the times, whether the records agree (observations, actions, labels),
    and the steps and the distinct (seed, actions applied up to and including the step) among them."""
    from testbed.errors import TestbedError
    from testbed.policies import PolicySpec
    from testbed.rollout import RolloutPool, forget_kept, fresh_episodes, reuse_episodes
    from testbed.scenarios import get_scenario
    from testbed.seeds import EVAL_SEED, episode_seeds

    folder = _clone_dir(clones_dir)
    clones = sorted(p.parent for p in folder.glob("*/clones/B*/policy.pt"))[:n_clones]
    if not clones:
        raise TestbedError(f"--{what}-clones: no clone run directories under {folder}/*/clones/B*/")
    scenario, expert = get_scenario("highway-fast"), PolicySpec("expert", teacher)
    drivers = [expert] + [PolicySpec("clone", str(c)) for c in clones]
    seeds = episode_seeds(EVAL_SEED, episodes)
    times = {"fresh": 0.0, "kept": 0.0}
    seen: dict[str, list[Any]] = {"fresh": [], "kept": []}
    transitions: set[tuple[int, tuple[int, ...]]] = set()
    steps = 0
    with RolloutPool(1) as pool:
        pool.run(scenario, drivers[1], [seeds[-1] + 1], labeller=expert)  # warm-up, untimed
        parts = blocks(seeds, n_blocks, 1)
        for i, block in enumerate(parts):
            log(f"{what} block {i + 1}/{len(parts)} (seeds {block[0]}-{block[-1]}): fresh, kept ...")
            for name in ("fresh", "kept"):
                forget_kept()  # nothing kept from an earlier block
                start = time.perf_counter()
                with reuse_episodes(), fresh_episodes() if name == "fresh" else contextlib.nullcontext():
                    runs = [pool.run(scenario, expert, block)]
                    runs += [pool.run(scenario, d, block, labeller=expert) for d in drivers[1:]]
                times[name] += time.perf_counter() - start
                records = [r for rs in runs for r in rs]
                seen[name] += [(r.trajectory.obs.tobytes(), r.trajectory.acts.tolist()) for r in records]
                seen[name] += [r.labels.tolist() for r in records if r.labels is not None]
                if name == "kept":
                    steps += sum(len(r.trajectory.acts) for r in records)
                    transitions |= {
                        (r.seed, tuple(int(a) for a in r.trajectory.acts[: t + 1]))
                        for r in records
                        for t in range(len(r.trajectory.acts))
                    }
    forget_kept()
    return {
        "clones": [str(c) for c in clones],
        "episodes_per_driver": len(seeds),
        "steps": steps,
        "distinct_steps": len(transitions),
        "time_s": times,
        "identical_records": seen["fresh"] == seen["kept"],
    }


def _kept_comparison(
    teacher: str, clones_dir: str, n_clones: int, episodes: int, n_blocks: int, *, what: str, log: Callable[[str], None]
) -> dict[str, Any]:
    """:func:`_teacher_and_clones` as a comparison: its ratio (fresh time / kept time), figures
    and table line."""
    m = _teacher_and_clones(teacher, clones_dir, n_clones, episodes, n_blocks, what=what, log=log)
    ratio = _ratio(m["time_s"]["fresh"], m["time_s"]["kept"])
    name = {"planner": "planner decisions and steps kept/asked", "scripted": "steps kept/simulated"}[teacher]
    return {
        "ratio": ratio,
        "figures": m,
        "line": f"{name} speed ratio: {ratio:.2f} (the {teacher} expert, then {len(m['clones'])} clones labelled "
        f"by it, on {m['episodes_per_driver']} seeds each: {m['time_s']['kept']:.1f} s vs "
        f"{m['time_s']['fresh']:.1f} s in one process; {m['distinct_steps']} distinct steps among {m['steps']}); "
        f"records identical: {'yes' if m['identical_records'] else 'NO'}",
    }


def decisions_comparison(args: Args, *, log: Callable[[str], None]) -> dict[str, Any]:
    """Comparison 7: the planner and its clones (:func:`_teacher_and_clones`). Kept, the
    planner searches once per distinct state, and each distinct step is simulated once."""
    c = _kept_comparison(
        "planner",
        args.decision_clones,
        args.decision_n_clones,
        args.decision_episodes,
        args.n_blocks,
        what="decision",
        log=log,
    )
    return {
        "ratios": {"planner_decisions_kept/asked": c["ratio"]},
        "figures": {"decisions": c["figures"]},
        "lines": [c["line"]],
    }


def steps_comparison(args: Args, *, log: Callable[[str], None]) -> dict[str, Any]:
    """Comparison 8: the scripted expert, then clones labelled by it (:func:`_teacher_and_clones`;
    by default the planner's, the committed ones). The scripted expert keeps no decisions (they
    cost less than reading them), so this measures the kept steps alone."""
    c = _kept_comparison(
        "scripted", args.step_clones, args.step_n_clones, args.step_episodes, args.n_blocks, what="step", log=log
    )
    return {"ratios": {"steps_kept/simulated": c["ratio"]}, "figures": {"steps": c["figures"]}, "lines": [c["line"]]}


def sim_measurements(args: Args, *, log: Callable[[str], None]) -> dict[str, Any]:
    """Comparison 0: accelerated (:mod:`testbed.sim`) vs stock ``env.step`` per scenario, by
    ``benchmarks/sim_speed.py``'s interleaved blocks (same seeds, same trajectories)."""
    sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
    from sim_speed import measure

    out = {}
    for name in args.sim_scenarios:
        log(f"sim speed: {name}")
        out[name] = measure(name, args.sim_steps, args.sim_pairs)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    """Parse arguments, measure, print the table and optionally write the JSON file."""
    import tyro

    from testbed.errors import TestbedError

    args = tyro.cli(Args, args=argv, description=__doc__.split("\n\n")[0])
    start = time.perf_counter()
    try:
        args.validate()
        result = run(args, log=lambda msg: print(msg, file=sys.stderr, flush=True))
    except TestbedError as e:
        print(f"throughput: error: {e}", file=sys.stderr)
        return 2
    print("\n".join(result["lines"]))
    print(f"(total {time.perf_counter() - start:.0f} s)")
    if args.out is not None:
        from testbed.outputs import write_json
        from testbed.provenance import provenance
        from testbed.spaces import jsonable

        out = pathlib.Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        write_json(
            out,
            jsonable(
                {
                    "ratios": result["ratios"],
                    "figures": result["figures"],
                    "args": dataclasses.asdict(args),
                    "provenance": provenance(),
                }
            ),
        )
        print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
