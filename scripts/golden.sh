#!/usr/bin/env bash
# Regenerate every golden file in one go: the committed compose/ and k8s/ output of the built-in
# profiles, tests/golden/ for the fixture profiles, and the profile JSON Schema.
set -euo pipefail
PY=${1:-python3}
cd "$(dirname "$0")/.."
"$PY" -m deploy render --all
"$PY" -m deploy render tests/profiles/*.yaml --out tests/golden
"$PY" -m deploy schema > schema/profile.schema.json.tmp && mv schema/profile.schema.json.tmp schema/profile.schema.json
echo "golden files regenerated; review with git diff"
