#!/usr/bin/env bash
# Static security scan of terraform/ and CFN/ with checkov.
#
# checkov lives in its own virtual environment (.checkov-venv): it pins an old
# boto3 and installs a python-hcl2 that conflict with the project's. The venv is
# created on first use. Checks are skipped only inline, each with its reason
# (`#checkov:skip=ID:reason` in terraform, `Metadata.checkov.skip` in CFN), so
# every exception sits next to the resource it concerns.
#
# Usage: .ci/checkov.sh            (from anywhere; exit status 1 on any failed check)
# Env:   CHECKOV_VENV=dir          (default: <repo>/.checkov-venv)
#        CHECKOV_VERSION=spec      (default: ==3.3.30, the version the skips were written against)
#        PYTHON=interpreter        (default: python3) that creates the venv
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${CHECKOV_VENV:-${ROOT}/.checkov-venv}"
VERSION="${CHECKOV_VERSION:-==3.3.30}"

# An existing venv is reused only if it holds the pinned version (the skips are
# written against it); otherwise, or after an interrupted install, it is rebuilt.
installed="$("${VENV}/bin/checkov" --version 2>/dev/null || true)"
if [ -z "${installed}" ] || { [[ "${VERSION}" == ==* ]] && [ "${installed}" != "${VERSION#==}" ]; }; then
  echo "creating ${VENV} (checkov${VERSION}; found: ${installed:-none})" >&2
  rm -rf "${VENV}"
  "${PYTHON:-python3}" -m venv "${VENV}"
  "${VENV}/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade pip
  "${VENV}/bin/python" -m pip install --quiet --disable-pip-version-check "checkov${VERSION}"
fi

cd "${ROOT}"
status=0
"${VENV}/bin/checkov" -d terraform --framework terraform --skip-download --quiet --compact || status=1
"${VENV}/bin/checkov" -d CFN --framework cloudformation --skip-download --quiet --compact || status=1
exit "${status}"
