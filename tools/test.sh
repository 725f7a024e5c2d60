#!/usr/bin/env bash
# tools/test.sh [ctest options] — set up, build, then run the whole default test suite.
# Long runs (full training) carry the ctest label "long": tools/test.sh -L long.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/setup.sh"
cd "$NNQ_BUILD_DIR"
if [ $# -eq 0 ]; then set -- -LE long; fi
exec ctest --output-on-failure "$@"
