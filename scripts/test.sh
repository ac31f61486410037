#!/usr/bin/env bash
# Installs everything the whole test suite needs, into project-local folders, and runs it:
#   .venv/            the SDK with every extra and the test tools (pip)
#   .emulators/       Azurite, the Azure Blob emulator (npm)
#   .checkov-venv/    Checkov, isolated because it pins versions the Pulumi providers dislike
#   chromium          Debian's headless browser, for the HTML report test (apt, when root)
# moto server (S3/KMS) and gcp-storage-emulator come with the test extra. The suite starts
# every emulator itself on 127.0.0.1 and stops it by PID. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -e ".[all,test]"

if [ ! -x .emulators/node_modules/.bin/azurite-blob ]; then
  mkdir -p .emulators
  npm install --prefix .emulators --no-audit --no-fund --loglevel=error azurite@3.37.0
fi

if [ ! -x .checkov-venv/bin/checkov ]; then
  "$PYTHON" -m venv .checkov-venv
  .checkov-venv/bin/python -m pip install --quiet --upgrade pip
  .checkov-venv/bin/python -m pip install --quiet "checkov==3.3.30"
fi

if ! command -v chromium >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium \
      >/dev/null) || echo "warning: could not install chromium" >&2
  fi
fi

.venv/bin/python -m ruff check residency_sdk tests benchmarks infra examples
exec .venv/bin/python -m pytest "$@"
