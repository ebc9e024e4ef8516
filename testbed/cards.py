"""Model and dataset cards: a markdown page beside every exported policy and Minari dataset.

A card says what the artefact is, the data it came from (scenario, expert, episodes and their
seed range), how it was trained, its recorded metrics, how to load it, and the commands,
commit and package versions that made it, so that an exported file found on its own can be
judged and rebuilt. Everything on a card is read from the records the testbed already keeps
(a clone's ``metadata.json``, a demonstration set's record, the provenance); nothing is
measured here.
"""

from __future__ import annotations

import pathlib
from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd

from testbed.seeds import range_name

CARD_SUFFIX = ".card.md"
"""An exported policy ``policy.zip`` gets its card at ``policy.card.md``."""
DATASET_CARD = "README.md"
"""A Minari dataset's card: ``ROOT/DATASET_ID/README.md``."""


def card_path(export: str | pathlib.Path) -> pathlib.Path:
    """Where the card of the exported file ``export`` goes (``policy.zip`` -> ``policy.card.md``)."""
    path = pathlib.Path(export)
    return path.with_name(path.stem + CARD_SUFFIX)


def _seeds(seeds: Sequence[int]) -> str:
    if not seeds:
        return "none"
    s = sorted(int(x) for x in seeds)
    span = f"{s[0]}–{s[-1]}" if len(s) > 1 else str(s[0])
    return f"{len(s)} seeds, {span} ({range_name(s)} range)"


def _highway_env(record: Mapping[str, Any]) -> str:
    """The highway-env version a record was made with (its provenance), ``?`` when unrecorded."""
    return str(record.get("provenance", {}).get("packages", {}).get("highway-env", "?"))


def _provenance(prov: Mapping[str, Any], what: str) -> list[str]:
    command = prov.get("command")
    packages = prov.get("packages", {})
    return [
        f"- {what}: `{' '.join(command) if isinstance(command, list) else command}` at commit "
        f"`{prov.get('git_commit', '?')}`, {prov.get('created_utc', '?')}",
        "- Packages: " + ", ".join(f"{k} {v}" for k, v in packages.items()),
    ]


def _closed_loop(run_dir: pathlib.Path) -> list[str]:
    """The clone's paired evaluation, when its run sits in a quick-pipeline directory
    (``RUN/../eval/summary.csv`` with a row for it); else how to measure it."""
    summary = run_dir.parent / "eval" / "summary.csv"
    if summary.is_file():
        table = pd.read_csv(summary)
        rows = table[table["policy"].astype(str).str.startswith("clone:")]
        if len(rows) == 1:
            r = rows.iloc[0]
            return [
                f"- Closed loop ({int(r['n_episodes'])} episodes, seeds in `{summary.parent}/config.json`): "
                f"return {r['return']:.2f} "
                f"[{r['return_ci_low']:.2f}, {r['return_ci_high']:.2f}], crash rate {r['crashed']:.2f} "
                f"[{r['crashed_ci_low']:.2f}, {r['crashed_ci_high']:.2f}] (mean [95% CI])",
            ]
    return [
        "- Closed loop: not recorded with the clone; measure it with "
        f"`testbed evaluate --policy clone:{run_dir} --policy expert:scripted --out DIR` (development seeds)"
    ]


def policy_card(metadata: Mapping[str, Any], run_dir: str | pathlib.Path, export: Mapping[str, Any]) -> str:
    """The model card of a clone exported as an SB3 zip.

    Args:
        metadata: the clone's ``metadata.json`` (:mod:`testbed.clone_io`).
        run_dir: the clone's run directory.
        export: the export's record (``max_disagreement``, ``provenance``, ``out``).
    """
    demos = metadata.get("demos", {})
    scenario = metadata.get("scenario", {})
    config = metadata.get("config", {})
    final = metadata.get("final", {})
    expert = demos.get("expert", {})
    expert_name = expert.get("name", "?") if isinstance(expert, Mapping) else str(expert)
    train_seeds, val_seeds = demos.get("train_seeds", []), demos.get("val_seeds", [])
    epoch = final.get("epoch")
    epoch_text = str(int(epoch)) if isinstance(epoch, int | float) else "?"
    metrics = ", ".join(f"{k} {v:.3f}" for k, v in final.items() if k != "epoch" and isinstance(v, int | float))
    lines = [
        f"# Model card: {str(metadata.get('algorithm', 'bc')).upper()} clone of expert `{expert_name}` "
        f"on `{scenario.get('name', '?')}`",
        "",
        "A behavioral-cloning policy from the highway behavioral-cloning testbed, exported as a plain "
        "stable-baselines3 model zip (the input standardisation folded into the first layer).",
        "",
        "## Use",
        "",
        "```python",
        "from stable_baselines3 import PPO",
        "",
        f'model = PPO.load("{pathlib.Path(str(export.get("out", "policy.zip"))).name}")',
        "action, _ = model.predict(obs, deterministic=True)",
        "```",
        "",
        f"- Environment: `{scenario.get('env_id', '?')}` with the full config recorded in the zip's `testbed.json` "
        f"(highway-env {_highway_env(metadata)}); observations and actions as recorded there.",
        "- The PPO container is only SB3's way to store a policy: its hyperparameters are placeholders.",
        f"- Logits agree with the clone's within {export.get('max_disagreement', float('nan')):.1e} (checked on "
        "export).",
        "",
        "## Data",
        "",
        f"- Demonstrations: `{demos.get('path', '?')}`, {demos.get('n_episodes', '?')} episodes, "
        f"{demos.get('n_transitions', '?')} transitions of expert `{expert_name}`",
        f"- Trained on {demos.get('n_train_labels', '?')} labels from {_seeds(train_seeds)}; "
        f"validated on {_seeds(val_seeds)}",
        "",
        "## Training",
        "",
        "- " + ", ".join(f"{k} {v}" for k, v in config.items()),
        "",
        "## Metrics",
        "",
        f"- Open loop at epoch {epoch_text}: {metrics or 'none recorded'}",
        *_closed_loop(pathlib.Path(run_dir)),
        "",
        "## Limits",
        "",
        f"- Trained on `{scenario.get('name', '?')}` only: other scenarios, densities or sensors are outside its "
        "data (see `results/distribution_shift/`).",
        "- A clone drives off its expert's state distribution and its errors compound (see `results/compounding/`).",
        "",
        "## Provenance",
        "",
        *_provenance(metadata.get("provenance", {}), "Trained"),
        *_provenance(export.get("provenance", {}), "Exported")[:1],
    ]
    return "\n".join(lines) + "\n"


def dataset_card(metadata: Mapping[str, Any], dataset_id: str, *, source: str, provenance: Mapping[str, Any]) -> str:
    """The dataset card of demonstrations exported as a Minari dataset.

    Args:
        metadata: the demonstrations' record (:class:`testbed.demos.DemoMetadata` as a dict).
        dataset_id: the Minari dataset id.
        source: the demonstration directory exported.
        provenance: the export's provenance.
    """
    scenario = metadata.get("scenario", {})
    expert = metadata.get("expert", {})
    expert_name = expert.get("name", "?") if isinstance(expert, Mapping) else str(expert)
    noise = metadata.get("noise")
    lines = [
        f"# Dataset card: `{dataset_id}`",
        "",
        f"Demonstrations of expert `{expert_name}` on `{scenario.get('name', '?')}` "
        f"(`{scenario.get('env_id', '?')}`, highway-env {_highway_env(metadata)}), from the highway behavioral-cloning "
        "testbed.",
        "",
        "## Use",
        "",
        "```python",
        "import minari",
        "",
        f'dataset = minari.load_dataset("{dataset_id}")  # with MINARI_DATASETS_PATH set to this root',
        "```",
        "",
        "`testbed import-minari` restores the demonstration directory, and `testbed train --demos` clones it.",
        "",
        "## Data",
        "",
        f"- {metadata.get('n_episodes', '?')} episodes, {metadata.get('n_transitions', '?')} transitions, "
        f"{metadata.get('n_crashed', '?')} ending in a crash",
        f"- Seeds: {_seeds(metadata.get('seeds', []))}",
        f"- Labels: the expert's clean actions{'' if not noise else f'; applied actions perturbed ({noise})'}",
        "- The full env config, the expert's parameters and the record are in the dataset's metadata (`testbed` key).",
        "",
        "## Provenance",
        "",
        f"- Source: `{source}`",
        *_provenance(metadata.get("provenance", {}), "Collected"),
        *_provenance(provenance, "Exported")[:1],
    ]
    return "\n".join(lines) + "\n"
