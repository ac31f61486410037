#!/usr/bin/env bash
# Installs everything the whole test suite needs, into project-local folders, and runs it:
#   .venv/            the SDK with every extra and the test tools (pip)
#   .emulators/       Azurite, the Azure Blob emulator (npm)
#   .checkov-venv/    Checkov, isolated because it pins versions the Pulumi providers dislike
#   chromium          Debian's headless browser, for the HTML report test (apt, when root)
#   postgresql        Debian's PostgreSQL server, for the shared audit sink (apt, when root)
# moto server (S3/KMS) and gcp-storage-emulator come with the test extra. The suite starts
# every emulator, and its own PostgreSQL cluster, itself on 127.0.0.1 and stops it by PID.
# Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/python -m pip install --quiet --upgrade pip
# requirements.lock pins the whole tested dependency set (regenerate: scripts/lock.sh).
.venv/bin/python -m pip install --quiet -c requirements.lock -e ".[all,test]"

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

# The suite runs its own throwaway cluster (tests/pgserver.py); the package's default
# cluster is not used. Found through pg_config or /usr/lib/postgresql/*/bin.
if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql \
      >/dev/null) || echo "warning: could not install postgresql" >&2
  fi
fi

# Static checks: ruff, mypy --strict on the package, bandit (no high-severity finding), and
# pip-audit on the locked dependency set (report only: it needs PyPI's vulnerability API).
.venv/bin/python -m ruff check residency_sdk tests benchmarks infra examples
.venv/bin/python -m mypy residency_sdk
.venv/bin/python -m bandit --quiet --recursive residency_sdk --severity-level high
mkdir -p .reliability
if .venv/bin/python -m pip_audit --progress-spinner off >.reliability/pip-audit.txt 2>&1; then
  echo "pip-audit: no known vulnerability (report in .reliability/pip-audit.txt)"
else
  echo "pip-audit: findings or audit service unreachable (report only): .reliability/pip-audit.txt"
fi

exec .venv/bin/python -m pytest "$@"
