#!/usr/bin/env bash
# Set up (scripts/setup.sh) and run the whole test suite: tests/ with pytest, then the
# hardware-in-the-loop suite (hil_tests/) on the virtual rig: device code on the real
# MicroPython unix port over the modem and over Wi-Fi, then once on the MicroPython
# WebAssembly VM over the modem. Extra arguments go to the tests/ pytest run (and skip
# the HIL runs). Each HIL run prints its wall time.
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
  # every modem dialect on the unix port; the other dialects skip the fault matrix,
  # whose faults tests/conformance/ already runs on each of them (CI time)
  for run in unix:sim7600 unix:wifi micropython:sim7600 unix:bg96 unix:sim800 unix:sara-r4; do
    engine=${run%%:*} modem=${run#*:}
    select=()
    case $run in unix:bg96|unix:sim800|unix:sara-r4) select=(-k "not fault_matrix") ;; esac
    start=$SECONDS
    .venv/bin/synack hil --engine "$engine" --modem "$modem" ${select[@]+"${select[@]}"} \
      --junit "hil-report-$engine-$modem.xml" --logdir "hil-logs-$engine-$modem" || rc=$?
    echo "test: synack hil --engine $engine --modem $modem took $((SECONDS - start)) s" >&2
  done
fi
exit "$rc"
