#!/usr/bin/env bash
# Create .venv and install synack with its test tools. Idempotent: reinstalls only when
# pyproject.toml changed since the last install. Debian packages the tests need are
# installed with apt-get when missing (as root; otherwise it says what to install).
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES="tcpdump mosquitto iproute2 nftables ser2net"   # wire captures, the MQTT broker, netns/tc, labgrid's RFC 2217 serial server

py=${PYTHON:-python3}
if ! "$py" -c 'import sys; sys.exit(sys.version_info < (3, 10))' 2>/dev/null; then
  echo "setup: need Python >= 3.10 (set PYTHON=...)" >&2
  exit 1
fi

missing=""
for pkg in $APT_PACKAGES; do
  dpkg -s "$pkg" >/dev/null 2>&1 || missing="$missing $pkg"
done
if [ -n "$missing" ]; then
  if [ "$(id -u)" = 0 ]; then
    echo "setup: installing Debian packages:$missing"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing >/dev/null
  else
    echo "setup: missing Debian packages:$missing (run as root or: sudo apt-get install$missing)" >&2
  fi
fi

if [ ! -x .venv/bin/python ]; then
  echo "setup: creating .venv"
  "$py" -m venv .venv
fi
stamp=.venv/.synack-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  echo "setup: installing synack and its test tools into .venv"
  .venv/bin/python -m pip install -q --disable-pip-version-check -e '.[dev]'
  touch "$stamp"
fi
