#!/usr/bin/env bash
# Measure the current Farama stack: gymnasium 1.x, stable-baselines3 2.9 and highway-env 1.12
# (constraints/modern.txt) installed over the pinned environment in a venv that sees it, then
# this project's BC, DAgger and command-line tests run there with imitation 1.0.1 unchanged.
# Usage: scripts/modern_stack.sh [VENV_DIR]   (default /tmp/modern; needs `pip install -e ".[test]"` first)
# Known result (README, "A current stack"): everything passes except tests that read records made
# under highway-env 1.9.1 or assert the pinned versions.
set -euo pipefail
cd "$(dirname "$0")/.."
venv="${1:-/tmp/modern}"
python -m venv --system-site-packages "$venv"
"$venv/bin/pip" install --quiet -r constraints/modern.txt
"$venv/bin/python" -c "import gymnasium, stable_baselines3, highway_env, imitation, testbed; print('gymnasium', gymnasium.__version__, '| stable-baselines3', stable_baselines3.__version__, '| imitation', imitation.__version__)"
"$venv/bin/python" -m pytest tests/test_training.py tests/test_dagger.py tests/test_cli.py -p no:cacheprovider -rf "${@:2}"
