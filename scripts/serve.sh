#!/usr/bin/env bash
# Set up (first run only) and start the service on the default model: real weights, no hub needed.
# Extra arguments go to `lookalike serve` (e.g. --port 9000).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh openvino
exec .venv/bin/lookalike serve "$@"
