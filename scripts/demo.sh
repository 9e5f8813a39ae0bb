#!/usr/bin/env bash
# Set up and run the main job on the virtual rig: the hardware-in-the-loop tests of
# connect, keepalive and HTTP polling (synack hil), against a virtual board wired to a
# virtual SIM7600, with wire-level checks from tcpdump when run as root. The device code
# runs on the real MicroPython unix port (synack hil's default engine; pass
# --engine cpython or --engine micropython for the others).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/synack hil "$@"
