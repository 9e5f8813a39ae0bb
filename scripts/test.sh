#!/usr/bin/env bash
# Set up (scripts/setup.sh) and run the whole test suite: tests/ with pytest, then the
# hardware-in-the-loop suite (hil_tests/) on the virtual rig over the modem and over
# Wi-Fi. Extra arguments go to the tests/ pytest run (and skip the HIL runs).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
set +e
.venv/bin/python -m pytest "$@"
rc=$?
set -e
if [ "$rc" = 5 ]; then
  echo "test: no tests were collected" >&2
fi
if [ "$rc" = 0 ] && { [ "$#" = 0 ] || [ "$*" = "-q" ]; }; then
  for modem in sim7600 wifi; do
    .venv/bin/synack hil --modem "$modem" --junit "hil-report-$modem.xml" \
      --logdir "hil-logs-$modem" || rc=$?
  done
fi
exit "$rc"
