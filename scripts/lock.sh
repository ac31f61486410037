#!/usr/bin/env bash
# Regenerates requirements.lock from a fresh resolution of every extra (run after changing
# dependencies in pyproject.toml, then run the tests).
set -euo pipefail
cd "$(dirname "$0")/.."
tmp=$(mktemp -d)
python3 -m venv "$tmp/venv"
"$tmp/venv/bin/python" -m pip install --quiet --upgrade pip
"$tmp/venv/bin/python" -m pip install --quiet ".[all,test]"
{
  echo "# Locked dependency set for the test suite and CI; regenerate with scripts/lock.sh."
  "$tmp/venv/bin/python" -m pip freeze --exclude-editable | grep -v -i '^residency[-_]sdk\b'
} > requirements.lock
rm -rf "$tmp"
echo "wrote requirements.lock ($(grep -vc '^#' requirements.lock) packages)"
