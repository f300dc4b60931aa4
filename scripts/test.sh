#!/usr/bin/env bash
# Sets up (see setup.sh), then builds and runs the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
swift test "$@"
