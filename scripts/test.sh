#!/usr/bin/env bash
# Runs the whole test suite against the installed package, with the services the tests need.
set -euo pipefail
cd "$(dirname "$0")/.."
export QT_QPA_PLATFORM=${QT_QPA_PLATFORM:-offscreen}
# pytest runs from tests/ so `import doascope` resolves to the installed package, not the tree.
cd tests && exec ../.venv/bin/python -m pytest -q -p no:cacheprovider "$@" .
