#!/usr/bin/env bash
# Install the project with test + gpu extras (torch runs on the CPU here) and run the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh test,gpu
.venv/bin/ruff check .
exec .venv/bin/pytest "$@"
