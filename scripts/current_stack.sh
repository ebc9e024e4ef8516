#!/usr/bin/env bash
# The current stack's lane of .ci/run (README, "The current stack"): gymnasium 1.4, stable-baselines3
# 2.9.2 and highway-env 1.12.1 (constraints/current.txt) installed over the pinned legacy environment
# in a venv that sees it; then the quick test lane of the files that differ between the stacks
# (records across versions, scenarios, the accelerated simulator's hash tests, BC, DAgger, the
# command line), the simulator's full-episode hash tests, and the quick pipeline at a smaller size (20 demonstration episodes, 20 evaluation
# episodes, 20 epochs; drop those options for the README's default size).
# Usage: scripts/current_stack.sh [VENV_DIR [PYTEST ARGS...]]   (default /tmp/current-venv;
# needs the legacy stack first: python -m pip install -e ".[test]")
set -euo pipefail
cd "$(dirname "$0")/.."
venv="${1:-/tmp/current-venv}"
python -m venv --system-site-packages "$venv"
# pip reports the conflicts imitation's and this project's declared pins make (expected, see
# constraints/current.txt): its log is shown only if the install fails.
if ! "$venv/bin/python" -m pip install --disable-pip-version-check -r constraints/current.txt >"$venv/pip.log" 2>&1; then
    cat "$venv/pip.log"
    exit 1
fi
"$venv/bin/python" -c "
import gymnasium, highway_env, imitation, importlib.metadata as m, stable_baselines3, testbed
print('current stack: gymnasium', gymnasium.__version__, '| stable-baselines3', stable_baselines3.__version__,
      '| highway-env', m.version('highway-env'), '| imitation', imitation.__version__, '| torch', m.version('torch'))
assert gymnasium.__version__.startswith('1.') and m.version('highway-env') == '1.12.1', 'not the current stack'
"
"$venv/bin/python" -m pytest -m "not slow" -p no:cacheprovider tests/test_stacks.py tests/test_scenarios.py \
    tests/test_sim.py tests/test_training.py tests/test_dagger.py tests/test_cli.py "${@:2}"
# The accelerated simulator's full-episode hash tests on 1.12.1 (about 1 min).
"$venv/bin/python" -m pytest -m slow -p no:cacheprovider tests/test_sim.py "${@:2}"
out="$(mktemp -d)/pipeline"
"$venv/bin/python" -m testbed pipeline --out "$out" --demo-episodes 20 --eval-episodes 20 --epochs 20
rm -rf "$(dirname "$out")"
