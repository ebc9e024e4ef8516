"""The gallery's animation: expert and BC clone side by side from the same sealed test seed,
the moment they part marked (the `testbed render` code path).

Writes results/divergence_gif/: expert_vs_clone.gif and render.json (divergence steps,
crashes, provenance).

    python experiments/divergence_gif.py           # wall time: results/reproduce.json
    python experiments/divergence_gif.py --fast    # a 5 s episode, for tests
"""

from __future__ import annotations

import dataclasses
import pathlib

from testbed import kit
from testbed.outputs import atomic_output_dir, write_json
from testbed.policies import PolicySpec
from testbed.render import render_comparison
from testbed.scenarios import get_scenario, parse_overrides
from testbed.seeds import TEST_SEED, check_test_seeds


@dataclasses.dataclass
class Args(kit.UpstreamArgs):
    """Render the expert and a clone on one test seed, side by side."""

    policy: str = "clone:{results}/pipeline/highway-fast/clone"
    """Policy shown on the right (default: the quick pipeline's clone; {results}: the upstream root)."""
    reference: str = "expert:scripted"
    """Policy shown on the left."""
    scenario: str = "highway-fast"
    """Scenario preset."""
    seed: int = TEST_SEED
    """Episode seed (in the sealed test range; the first one, not a chosen one)."""
    set: tuple[str, ...] = ()
    """Scenario config overrides KEY=VALUE."""
    workers: int = 1
    """Unused (rendering is one process); kept for the common experiment interface."""
    out: str = "results/divergence_gif"
    """Output directory (replaced)."""

    def resolved(self) -> Args:
        """The fast preset (a 5 s episode, the expert against idle), else the upstream clone."""
        if not self.fast:
            return dataclasses.replace(self, policy=kit.upstream(self.policy, self.results))
        return dataclasses.replace(self, policy="idle", set=("duration=5",))


def main(args: Args) -> dict:
    args = args.resolved()
    seeds = check_test_seeds([args.seed], "divergence_gif")
    scenario = get_scenario(args.scenario, parse_overrides(args.set))
    with atomic_output_dir(args.out, overwrite=True) as out:
        info = render_comparison(
            scenario,
            PolicySpec.parse(args.policy),
            PolicySpec.parse(args.reference),
            args.seed,
            out / "expert_vs_clone.gif",
        )
        write_json(out / "render.json", {"args": dataclasses.asdict(args), "seeds": seeds, **info})
    print({k: v for k, v in info.items() if k != "provenance"})
    return info


def replot(out: str | pathlib.Path) -> list[pathlib.Path]:
    """Render the GIF again from the arguments recorded in ``out`` (a few seconds of simulation)."""
    from testbed.outputs import read_args

    args = read_args(pathlib.Path(out) / "render.json", Args, what="render record")
    main(dataclasses.replace(args, out=str(out)))
    return [pathlib.Path(out) / "expert_vs_clone.gif"]


if __name__ == "__main__":
    kit.run_script(main, Args)
