"""`verify-demos` checks labels, not only replays: an edited label is caught for every kind of
data (clean expert, DART-noisy expert, human, continuous), DAgger aggregates are refused as
unverifiable, and an expert that cannot be rebuilt as recorded is a one-line error."""

from __future__ import annotations

import dataclasses
import pathlib
from typing import Any

import numpy as np
import pytest
from conftest import fails

from testbed.collect import collect
from testbed.dagger import DAggerResult, as_demonstrations
from testbed.demos import METADATA, Demonstrations, load_demos, save_demos
from testbed.errors import TestbedError
from testbed.human import ScriptedEvents, drive, key_event, tap
from testbed.outputs import read_json, write_json
from testbed.scenarios import Scenario, get_scenario
from testbed.verify import verify_demos

SHORT = {"duration": 5}
"""5 s episodes: 5 decisions in highway-fast, 25 in highway-fast-continuous."""


def _discrete() -> Scenario:
    return get_scenario("highway-fast", SHORT)


def _continuous() -> Scenario:
    return get_scenario("highway-fast-continuous", SHORT)


def _human(scenario: Scenario) -> Demonstrations:
    """Two episodes driven by a scripted person, without a window."""
    script = [tap("left"), [key_event("up")], [], [key_event("up", down=False)], tap("right")]
    demos, _ = drive(scenario, seeds=[1, 2], events=ScriptedEvents(script), display=None, realtime=False)
    assert demos is not None
    return demos


def _build(kind: str) -> Demonstrations:
    if kind == "clean":
        return collect(_discrete(), "scripted", n_episodes=2, seed=0)
    if kind == "noisy":
        return collect(_discrete(), "scripted", n_episodes=2, seed=0, noise=0.3)
    if kind == "human":
        return _human(_discrete())
    if kind == "continuous":
        return collect(_continuous(), "continuous", n_episodes=2, seed=0)
    if kind == "continuous-noisy":
        return collect(_continuous(), "continuous", n_episodes=2, seed=0, noise=0.05)
    raise ValueError(kind)


KINDS = ["clean", "noisy", "human", "continuous", "continuous-noisy"]


@pytest.fixture(scope="module")
def datasets(tmp_path_factory: pytest.TempPathFactory) -> dict[str, pathlib.Path]:
    root = tmp_path_factory.mktemp("verify")
    return {kind: save_demos(_build(kind), root / kind) for kind in KINDS}


def _applied(demos: Demonstrations, episode: int, step: int) -> Any:
    infos = demos.trajectories[episode].infos
    assert infos is not None
    return infos[step]["applied_action"]


def _relabel(src: pathlib.Path, dst: pathlib.Path, *, episode: int, step: int, label: Any) -> pathlib.Path:
    """A copy of ``src`` with one label (``acts`` only: not the applied action) changed."""
    demos = load_demos(src)
    trajectories = list(demos.trajectories)
    t = trajectories[episode]
    acts = np.array(t.acts, copy=True)
    acts[step] = label
    trajectories[episode] = dataclasses.replace(t, acts=acts)
    return save_demos(demos.with_trajectories(trajectories, demos.seeds), dst)


def _other_label(demos: Demonstrations, kind: str, *, episode: int, step: int) -> tuple[Any, str]:
    """A wrong label for (episode, step) and the start of the problem it must cause."""
    label = demos.trajectories[episode].acts[step]
    if kind == "continuous":
        # The next float32 up: the smallest edit that is still an edit.
        wrong = np.nextafter(np.float32(label[0]), np.float32(np.inf))
        return np.array([wrong, label[1]]), f"step {step}: label [{np.format_float_positional(wrong, unique=True)}"
    if kind == "continuous-noisy":
        # The applied (noisy) action as label: what a dataset "fixed" to label == applied would hold.
        applied = np.asarray(_applied(demos, episode, step), dtype=np.float32)
        assert not np.array_equal(applied, np.asarray(label, dtype=np.float32))
        return applied, f"step {step}: label ["
    if kind == "noisy":
        applied = int(_applied(demos, episode, step))
        return applied, f"step {step}: label {applied} differs from what expert:scripted does in the replayed state"
    wrong = (int(label) + 1) % 5
    return wrong, f"step {step}: label {wrong} differs from the applied action {int(label)}"


def _edited_step(demos: Demonstrations, kind: str, episode: int) -> int:
    """The step to edit: for noisy discrete data one where noise changed the applied action."""
    if kind != "noisy":
        return 2
    t = demos.trajectories[episode]
    changed = [s for s in range(len(t.acts)) if int(_applied(demos, episode, s)) != int(t.acts[s])]
    assert changed, "noise never changed an action in this episode; the test proves nothing"
    return changed[0]


@pytest.mark.parametrize("kind", KINDS)
def test_faithful_data_verify_and_one_edited_label_is_caught(
    datasets: dict[str, pathlib.Path], tmp_path: pathlib.Path, kind: str
) -> None:
    assert [c.ok for c in verify_demos(datasets[kind])] == [True, True]
    demos = load_demos(datasets[kind])
    episode = 1
    step = _edited_step(demos, kind, episode)
    label, problem = _other_label(demos, kind, episode=episode, step=step)
    bad = _relabel(datasets[kind], tmp_path / "bad", episode=episode, step=step, label=label)
    first, second = verify_demos(bad)
    assert first.ok
    assert not second.ok and second.problem is not None and second.problem.startswith(problem), second.problem
    assert second.line().startswith(f"episode 1 (seed {demos.seeds[1]}, {second.n_steps} steps): MISMATCH at step")


def test_noisy_labels_are_the_experts_not_the_applied_actions(datasets: dict[str, pathlib.Path]) -> None:
    """The noisy data that verify differ from their applied actions: re-querying the expert,
    not label == applied, is what passes them."""
    demos = load_demos(datasets["noisy"])
    pairs = [(int(a), int(i["applied_action"])) for t in demos.trajectories for a, i in zip(t.acts, t.infos)]
    assert any(a != b for a, b in pairs)
    assert demos.metadata.noise is not None and demos.metadata.expert["name"] == "scripted"


def test_cli_rejects_an_edited_label_in_one_line(
    datasets: dict[str, pathlib.Path], tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from testbed.cli import main

    demos = load_demos(datasets["clean"])
    label = int(demos.trajectories[0].acts[3])
    bad = _relabel(datasets["clean"], tmp_path / "bad", episode=0, step=3, label=(label + 1) % 5)
    assert main(["verify-demos", str(datasets["clean"])]) == 0
    capsys.readouterr()
    fails(capsys, ["verify-demos", str(bad)], "1 of 2 episodes", only_line=True)
    assert main(["verify-demos", str(bad)]) == 2
    out = capsys.readouterr().out
    assert f"episode 0 (seed 0, {len(demos.trajectories[0].acts)} steps): MISMATCH at step 3: label" in out


def _with_expert(src: pathlib.Path, dst: pathlib.Path, expert: dict[str, Any]) -> pathlib.Path:
    demos = load_demos(src)
    return save_demos(Demonstrations(demos.trajectories, dataclasses.replace(demos.metadata, expert=expert)), dst)


@pytest.mark.parametrize(
    ("expert", "fragment"),
    [
        ({"name": "nonesuch", "params": {}}, "unknown expert 'nonesuch'"),
        ({"name": "sb3:missing/model.zip", "params": {}}, "SB3 model file not found"),
        ({"name": "continuous", "params": {}}, "drives with ContinuousAction actions"),
        ({"name": "scripted", "params": {"horizon": 99.0}}, "other parameters than recorded"),
        ({"name": "?", "params": {}}, "names no expert"),
    ],
)
def test_noisy_data_whose_expert_cannot_be_rebuilt_is_a_one_line_error(
    datasets: dict[str, pathlib.Path],
    tmp_path: pathlib.Path,
    capsys: pytest.CaptureFixture[str],
    expert: dict[str, Any],
    fragment: str,
) -> None:
    bad = _with_expert(datasets["noisy"], tmp_path / "bad", expert)
    with pytest.raises(TestbedError, match="cannot re-query the expert"):
        verify_demos(bad)
    fails(capsys, ["verify-demos", str(bad)], fragment, only_line=True)


@pytest.mark.parametrize("expert", [{"name": 3, "params": {}}, {"name": "scripted", "params": [1]}])
def test_noisy_data_with_a_malformed_expert_record_is_a_one_line_error(
    datasets: dict[str, pathlib.Path],
    tmp_path: pathlib.Path,
    capsys: pytest.CaptureFixture[str],
    expert: dict[str, Any],
) -> None:
    """Refused by :func:`testbed.demos.load_demos` or by the verifier, never a traceback."""
    bad = _with_expert(datasets["noisy"], tmp_path / "bad", expert)
    fails(capsys, ["verify-demos", str(bad)], "expert", only_line=True)


def test_metadata_without_expert_params_is_refused_for_noisy_data(
    datasets: dict[str, pathlib.Path], tmp_path: pathlib.Path
) -> None:
    bad = _with_expert(datasets["noisy"], tmp_path / "bad", {"name": "scripted"})
    with pytest.raises(TestbedError, match="differing: "):
        verify_demos(bad)


def test_clean_data_need_no_expert(datasets: dict[str, pathlib.Path], tmp_path: pathlib.Path) -> None:
    """Clean and human labels are checked against the applied actions alone."""
    other = _with_expert(datasets["clean"], tmp_path / "other", {"name": "nonesuch", "params": {}})
    assert [c.ok for c in verify_demos(other)] == [True, True]


def test_dagger_aggregate_is_refused_as_unverifiable(
    datasets: dict[str, pathlib.Path], tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    demos = load_demos(datasets["clean"])
    result = DAggerResult(
        policy=None, log=None, train_episodes=[0, 1], val_episodes=[], trajectories=demos.trajectories, round_seeds=[7]
    )
    aggregate = as_demonstrations(result, _discrete(), "scripted")
    out = tmp_path / "dagger"
    save_demos(aggregate, out)
    with pytest.raises(TestbedError, match="DAgger aggregate, whose episodes and labels cannot be verified"):
        verify_demos(out)
    fails(capsys, ["verify-demos", str(out)], "cannot be verified", only_line=True)
    # Refused even when the counts happen to agree (one round of one episode each).
    one = as_demonstrations(dataclasses.replace(result, trajectories=demos.trajectories[:1]), _discrete(), "scripted")
    save_demos(one, tmp_path / "one")
    assert read_json(tmp_path / "one" / METADATA, what="metadata")["seeds"] == [7]
    with pytest.raises(TestbedError, match="DAgger aggregate"):
        verify_demos(tmp_path / "one")


def test_corrupt_metadata_still_reported_by_load_demos(
    datasets: dict[str, pathlib.Path], tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = _with_expert(datasets["clean"], tmp_path / "bad", {"name": "scripted", "params": {}})
    meta = read_json(bad / METADATA, what="metadata")
    meta["seeds"] = "zero"
    write_json(bad / METADATA, meta)
    fails(capsys, ["verify-demos", str(bad)], "'seeds' must be a list of integers", only_line=True)


def test_noisy_data_of_an_sb3_expert_verify_until_the_model_file_changes(
    tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``sb3:PATH`` experts are rebuilt from the recorded name; the recorded sha256 pins the file."""
    from stable_baselines3 import PPO

    from testbed.scenarios import make_env

    model_path = tmp_path / "model.zip"

    def save_model(seed: int) -> None:
        env = make_env(_discrete())
        PPO("MlpPolicy", env, n_steps=64, seed=seed, device="cpu", policy_kwargs={"net_arch": [16]}).save(model_path)
        env.close()

    save_model(0)
    out = save_demos(collect(_discrete(), f"sb3:{model_path}", n_episodes=2, seed=0, noise=0.3), tmp_path / "sb3")
    assert [c.ok for c in verify_demos(out)] == [True, True]
    demos = load_demos(out)
    label = int(demos.trajectories[0].acts[1])
    bad = _relabel(out, tmp_path / "bad", episode=0, step=1, label=(label + 1) % 5)
    first, _ = verify_demos(bad)
    assert first.problem == f"step 1: label {(label + 1) % 5} differs from what expert:sb3:{model_path} does in " + (
        f"the replayed state ({label})"
    )
    save_model(1)
    fails(capsys, ["verify-demos", str(out)], "other parameters than recorded (differing: sha256)", only_line=True)
