#!/usr/bin/env bash
# Set up and run the main job on the virtual rig: the firmware drives a virtual SIM7600
# (paced like a 115200-baud UART) to a local echo server and shows the TCP lifecycle.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/synack sim selftest "$@"
