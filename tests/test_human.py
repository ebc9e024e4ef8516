"""Human driving: keys map to actions, the recorded label is the applied action, and
`verify-demos` replays any dataset exactly (and catches a tampered one)."""

from __future__ import annotations

import json
import pathlib
import shutil

import gymnasium as gym
import numpy as np
import pytest
from imitation.data import serialize

from testbed import human
from testbed.cli import main
from testbed.collect import collect
from testbed.demos import human_demonstrations, load_demos, save_demos
from testbed.human import ContinuousKeyMapper, DiscreteKeyMapper, KeyState, ScriptedEvents, key_event, tap
from testbed.scenarios import get_scenario, parse_overrides
from testbed.verify import verify_demos

DISCRETE = ["duration=8"]
CONTINUOUS = ["duration=4", "policy_frequency=5", "action.type=ContinuousAction"]
META = {"LANE_LEFT": 0, "IDLE": 1, "LANE_RIGHT": 2, "FASTER": 3, "SLOWER": 4}


@pytest.fixture(autouse=True)
def dummy_video(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SDL_VIDEODRIVER", "dummy")
    monkeypatch.setenv("SDL_AUDIODRIVER", "dummy")


def _scenario(settings: list[str]):
    return get_scenario("highway-fast", parse_overrides(settings))


# A scripted person: poll i (one per decision with pacing off) gives these events.
DISCRETE_SCRIPT = [
    tap("left"),  # 0: LANE_LEFT
    [key_event("up")],  # 1: FASTER (held)
    [],  # 2: FASTER (still held)
    [key_event("up", down=False)],  # 3: IDLE
    [*tap("down"), *tap("right")],  # 4: LANE_RIGHT (last tap wins)
    [key_event("pause")],  # paused: no decision
    [key_event("down")],  # still paused; Down is now held
    [key_event("pause")],  # 5: SLOWER
    [key_event("down", down=False)],  # 6: IDLE
]
DISCRETE_EXPECTED = [0, 3, 3, 1, 2, 4, 1]


class _SpyStep(gym.Wrapper):
    """Records every action the simulator is given."""

    def __init__(self, env: gym.Env) -> None:
        super().__init__(env)
        self.applied: list = []

    def step(self, action):  # type: ignore[override]
        self.applied.append(np.array(action, copy=True))
        return self.env.step(action)


def test_discrete_mapper_is_a_pure_function_of_the_keys() -> None:
    m = DiscreteKeyMapper(META)
    assert m.action(KeyState()) == META["IDLE"]
    assert m.action(KeyState(held=frozenset({"up"}))) == META["FASTER"]
    assert m.action(KeyState(held=frozenset({"up", "left"}))) == META["LANE_LEFT"]
    # a tap released before the decision still counts; the latest tap beats held keys
    assert m.action(KeyState(held=frozenset({"up"}), tapped=("down", "right"))) == META["LANE_RIGHT"]
    # meta-actions the env lacks fall back to IDLE
    assert DiscreteKeyMapper({"IDLE": 0, "FASTER": 1, "SLOWER": 2}).action(KeyState(tapped=("left",))) == 0


def test_continuous_mapper_ramps_caps_and_recentres() -> None:
    m = ContinuousKeyMapper(policy_frequency_hz=5, accel_rate_per_s=2.0, steer_rate_per_s=1.0, max_steering=0.5)
    a = m.neutral()
    for _ in range(4):
        a = m.action(KeyState(held=frozenset({"up", "right"})), a)
    assert a.dtype == np.float32 and a.shape == (2,)
    assert a[0] == np.float32(1.0) and a[1] == np.float32(0.5)  # 4 x 0.4 capped at 1; 4 x 0.2 capped at 0.5
    a = m.action(KeyState(), a)
    assert a[0] == np.float32(0.6) and a[1] == np.float32(0.3)  # released: back towards 0
    assert np.array_equal(m.action(KeyState(tapped=("left",)), a), m.action(KeyState(tapped=("left",)), a))
    lat = ContinuousKeyMapper(longitudinal=False, policy_frequency_hz=1)
    assert lat.action(KeyState(held=frozenset({"left", "up"}))).tolist() == [-0.5]


def test_drive_discrete_labels_are_the_applied_actions() -> None:
    scenario = _scenario(DISCRETE)
    runs = []
    for _ in range(2):
        env = _SpyStep(human.make_drive_env(scenario))
        window = human.PygameWindow(600, 150)
        try:
            episode = human.drive_episode(env, 3, ScriptedEvents(DISCRETE_SCRIPT), display=window, realtime=False)
        finally:
            env.close()
            window.close()
        traj = episode.trajectory
        assert episode.end == "truncated" and episode.keep and len(traj.acts) == 8
        assert traj.acts.tolist()[:7] == DISCRETE_EXPECTED and traj.acts[7] == META["IDLE"]
        assert [int(a) for a in env.applied] == traj.acts.tolist()
        assert [i["applied_action"] for i in traj.infos] == traj.acts.tolist()
        runs.append(traj)
    # same seed and keys, same episode
    assert np.array_equal(runs[0].obs, runs[1].obs) and np.array_equal(runs[0].rews, runs[1].rews)


def test_drive_continuous_and_verify(tmp_path: pathlib.Path) -> None:
    scenario = _scenario(CONTINUOUS)
    script = [
        [key_event("up")],
        [],
        [key_event("left")],
        [],
        [key_event("left", down=False)],
        [key_event("up", down=False)],
    ]
    env = _SpyStep(human.make_drive_env(scenario))
    window = human.PygameWindow(600, 150)
    try:
        episode = human.drive_episode(env, 5, ScriptedEvents(script), display=window, realtime=False)
    finally:
        env.close()
        window.close()
    acts = episode.trajectory.acts
    assert acts.dtype == np.float32 and acts.shape == (20, 2)
    expected = [[0.4, 0], [0.8, 0], [1, -0.2], [1, -0.4], [1, -0.2], [0.6, 0], [0.2, 0]] + [[0, 0]] * 13
    np.testing.assert_allclose(acts, expected, atol=1e-6)
    assert np.array_equal(np.asarray(env.applied), acts)
    out = save_demos(
        human_demonstrations(scenario, [episode.trajectory], [5], mapper={}, driving={}), tmp_path / "cont"
    )
    loaded = load_demos(out, scenario=scenario)
    assert np.array_equal(loaded.trajectories[0].acts.astype(np.float32), acts)
    assert [c.ok for c in verify_demos(out)] == [True]
    _tamper(out, episode=0, step=3, value=[1.0, 0.0])
    (check,) = verify_demos(out)
    assert not check.ok and check.problem.startswith("step 3: observation differs")


def _tamper(path: pathlib.Path, *, episode: int, step: int, value) -> None:
    """Change one recorded action (label and applied) in place."""
    trajectories = list(serialize.load_with_rewards(path / "trajectories"))
    t = trajectories[episode]
    acts = np.array(t.acts, copy=True)
    acts[step] = value
    infos = [dict(i) for i in t.infos]
    infos[step]["applied_action"] = acts[step].tolist()
    trajectories[episode] = type(t)(
        obs=t.obs, acts=acts, infos=np.asarray(infos, dtype=object), terminal=t.terminal, rews=t.rews
    )
    shutil.rmtree(path / "trajectories")
    serialize.save(path / "trajectories", trajectories)


def _drive_cli(monkeypatch, script, out: pathlib.Path, settings: list[str], episodes: int = 2) -> int:
    monkeypatch.setattr(human, "PygameEvents", lambda: ScriptedEvents(script))
    args = ["drive", "--out", str(out), "--seed", "1", "--episodes", str(episodes)]
    args += ["--no-realtime", "--no-start-paused"]
    for s in settings:
        args += ["--set", s]
    return main(args)


@pytest.mark.slow
def test_cli_drive_then_verify_and_train(monkeypatch, capsys, tmp_path: pathlib.Path) -> None:
    out = tmp_path / "human"
    assert _drive_cli(monkeypatch, DISCRETE_SCRIPT, out, DISCRETE) == 0
    meta = json.loads((out / "metadata.json").read_text())
    assert meta["expert"]["name"] == "human" and meta["seeds"] == [1, 2]
    assert meta["scenario"] == _scenario(DISCRETE).to_dict()  # the scenario's own config, not the viewer's
    assert [e["end"] for e in meta["driving"]["episodes"]] == ["truncated", "truncated"]
    demos = load_demos(out, scenario=_scenario(DISCRETE))
    assert demos.trajectories[0].acts.tolist()[:7] == DISCRETE_EXPECTED
    capsys.readouterr()
    assert main(["verify-demos", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "episode 0 (seed 1, 8 steps): OK" in printed and "episode 1 (seed 2, 8 steps): OK" in printed
    assert (
        main(
            [
                "train",
                "--demos",
                str(out),
                "--out",
                str(tmp_path / "run"),
                "--epochs",
                "1",
                "--batch-size",
                "4",
                "--val-fraction",
                "0.5",
            ]
        )
        == 0
    )
    assert (tmp_path / "run" / "policy.pt").is_file()

    bad = tmp_path / "tampered"
    shutil.copytree(out, bad)
    other = META["SLOWER"] if demos.trajectories[1].acts[2] != META["SLOWER"] else META["FASTER"]
    _tamper(bad, episode=1, step=2, value=other)
    capsys.readouterr()
    assert main(["verify-demos", str(bad)]) == 2
    captured = capsys.readouterr()
    assert "episode 0 (seed 1, 8 steps): OK" in captured.out
    assert "episode 1 (seed 2, 8 steps): MISMATCH at step 2: observation differs" in captured.out
    err = captured.err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("testbed: error: 1 of 2 episodes") and "do not replay exactly" in err[0]


@pytest.mark.parametrize("answer", ["no", "yes"])
def test_quit_midway_is_dropped_unless_kept(monkeypatch, capsys, tmp_path: pathlib.Path, answer: str) -> None:
    out = tmp_path / "partial"
    script = [tap("left"), [], [key_event("quit")], [], [key_event(answer)]]
    code = _drive_cli(monkeypatch, script, out, DISCRETE)
    if answer == "no":
        assert code == 2 and not out.exists()
        assert "no episode was kept" in capsys.readouterr().err
        return
    assert code == 0
    meta = json.loads((out / "metadata.json").read_text())
    assert meta["seeds"] == [1] and meta["n_transitions"] == 2  # the session ended at the quit
    assert meta["driving"]["episodes"] == [{"seed": 1, "n_steps": 2, "end": "quit", "kept": True}]
    assert [c.ok for c in verify_demos(out)] == [True]


def test_verify_expert_demos_with_dart_noise(tmp_path: pathlib.Path) -> None:
    scenario = _scenario(DISCRETE)
    demos = collect(scenario, "scripted", n_episodes=3, seed=0, noise=0.5)
    out = save_demos(demos, tmp_path / "expert")
    noisy = [(int(a), i["applied_action"]) for t in demos.trajectories for a, i in zip(t.acts, t.infos)]
    assert any(a != b for a, b in noisy), "noise never changed an action; the test proves nothing"
    assert [c.ok for c in verify_demos(out)] == [True, True, True]


def test_bad_inputs_give_one_line(capsys, tmp_path: pathlib.Path) -> None:
    out = str(tmp_path / "d")
    cases = [
        (["drive", "--out", out, "--episodes", "0"], "--episodes must be at least 1"),
        (["drive", "--out", out, "--max-steering", "2"], "max_steering"),
        (
            ["drive", "--out", out, "--no-realtime", "--set", "action.type=DiscreteAction"],
            "supports DiscreteMetaAction and ContinuousAction",
        ),
        (["verify-demos", str(tmp_path / "missing")], "not found"),
    ]
    for args, fragment in cases:
        assert main(args) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("testbed: error: ") and fragment in err[0], err
    assert not any(tmp_path.iterdir())


def test_pygame_event_source_reads_the_window_queue() -> None:
    import pygame

    window = human.PygameWindow(200, 100)
    try:
        source = human.PygameEvents()
        source.poll()  # drop start-up events
        for event in (*tap("left"), key_event("pause")):
            pygame.event.post(event)
        keys = [(e.type, e.key) for e in source.poll() if e.type in (pygame.KEYDOWN, pygame.KEYUP)]
        assert keys == [(pygame.KEYDOWN, pygame.K_LEFT), (pygame.KEYUP, pygame.K_LEFT), (pygame.KEYDOWN, pygame.K_p)]
        window.show(np.zeros((100, 200, 3), dtype=np.uint8), ["a status line"])
        assert window.screen.get_size() == (200, 100 + window.PANEL_LINES * window.LINE_HEIGHT + 10)
    finally:
        window.close()
