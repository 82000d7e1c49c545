#!/usr/bin/env bash
# Install the Python tools the test suite uses (the Kubernetes API emulator
# and other service stand-ins) into $REPO/.venv. Safe to run again: when the
# venv already holds exactly these pins it does nothing.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$REPO/.venv"
PYTHON="${PYTHON:-python3}"

# Exact versions, checked to install together on CPython 3.11.
PINS=(
  "kmock==0.8"
  "aiohttp==3.14.5"
  "jsonpatch==1.48"
  "PyYAML==6.0.4"
  "pytest==9.2.0"
  # kmock registers a pytest plugin that imports pytest_asyncio without
  # depending on it: without this pin every pytest run in the venv fails.
  "pytest-asyncio==1.5.0"
  "aiosmtpd==1.4.6"
  "moto[server]==5.2.5"
)

STAMP="$VENV/.python-tools-pins"
WANT="$(printf '%s\n' "${PINS[@]}")"

if [ -x "$VENV/bin/python" ] && [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$WANT" ]; then
  exit 0
fi

export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1 PIP_ROOT_USER_ACTION=ignore
if [ ! -x "$VENV/bin/python" ]; then
  "$PYTHON" -m venv "$VENV"
fi
"$VENV/bin/python" -m pip install -q "${PINS[@]}"
printf '%s\n' "$WANT" > "$STAMP"
