#!/usr/bin/env bash
# Set up (first run only) and run the test suite. Extra arguments go to pytest.
# Browser tests need Debian's chromium: installed here when we are root (CI), skipped with a reason otherwise.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x /usr/bin/chromium ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
    || echo "warning: could not install chromium; browser tests will be skipped"
fi
scripts/setup.sh test,openvino,scale,fuzz
exec .venv/bin/python -m pytest "$@"
