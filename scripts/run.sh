#!/usr/bin/env bash
# Install the project (the built-in detector needs no torch) and run the main job on a video.
# Usage: scripts/run.sh VIDEO --crop L,T,R,B [--anchor center] [--checkpoint PATH]
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
"$here/scripts/setup.sh"
exec "$here/.venv/bin/boundaries" run "$@"
