#!/usr/bin/env bash
# `make test` (what CI runs): set up and run every test, failing fast and overlapping what can overlap.
#
#   scripts/make-test.sh [PYTEST ARGS...]
#
# The long installs run beside work that needs none of them:
#   1. the engine venv (vLLM, 3 GB; uv installs it in well under a minute) starts in the background;
#   2. the tool venv, then ruff, the format check and mypy: a lint or type error fails here, before
#      anything slow (the background job is stopped);
#   3. Docker, podman and the registry install in the background while the tests that need none of
#      them run (unit tests and the real validators: `not docker and not engine and not podman`), on
#      every core (pytest-xdist);
#   4. once the background jobs are done: the tests with Docker, podman and the vLLM engine.
# Every stage's wall time goes to .work/test-times/ (with each test module's time, from tests/conftest.py);
# the summary prints at the end and again with `make test-times`.
set -euo pipefail
cd "$(dirname "$0")/.."
MAKE=${MAKE:-make}
PY=.venv/bin/python
TIMES=.work/test-times
rm -rf "$TIMES" && mkdir -p "$TIMES"
# NB: the tests append each module's time here (tests/conftest.py); unset, they record nothing.
export VLLM_DEPLOY_TEST_TIMES="$TIMES/modules.tsv"
START=$(date +%s.%N)

since() { awk -v a="$1" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }'; }

stage() {  # stage NAME COMMAND...: run it, record its wall time, stop on failure
    local name=$1 began rc=0
    shift
    echo "[make test] $name ..."
    began=$(date +%s.%N)
    "$@" || rc=$?
    printf '%s\t%s\t%s\n' "$name" "$(since "$began")" "$rc" >>"$TIMES/stages.tsv"
    echo "[make test] $name: $(since "$began") s (exit $rc)"
    return "$rc"
}

background=()
in_background() {  # in_background NAME COMMAND...: as stage, output to a log, printed once it ends
    local name=$1 log
    log="$TIMES/$(echo "$1" | tr 'A-Z' 'a-z' | tr -c 'a-z0-9\n' '-').log"
    shift
    set -m  # NB: its own process group, so that stopping it stops pip and apt under it too
    ( stage "$name" "$@" >"$log" 2>&1 ) &
    set +m
    background+=("$!:$name:$log")
    echo "[make test] $name: started in the background (log $log)"
}

wait_background() {  # every background job, its log shown; fails if any failed
    local failed=0 job pid name log
    for job in "${background[@]}"; do
        IFS=: read -r pid name log <<<"$job"
        if wait "$pid"; then
            grep '^\[make test\] .*: [0-9.]* s (exit 0)$' "$log" || true
        else
            echo "[make test] $name FAILED; its log:" >&2
            cat "$log" >&2
            failed=1
        fi
    done
    background=()
    return "$failed"
}

stop_background() {
    local job
    for job in "${background[@]}"; do
        kill -- "-${job%%:*}" 2>/dev/null || true
    done
}
trap stop_background EXIT

# pytest exits 5 when a selection is empty: fine when the caller narrowed it (PYTEST ARGS), a fault otherwise.
run_pytest() {
    local rc=0
    ENGINE_PYTHON=$PWD/.venv-engine/bin/python "$PY" -m pytest "$@" || rc=$?
    if [[ $rc == 5 && $NARROWED == 1 ]]; then return 0; fi
    return "$rc"
}
NARROWED=$(( $# > 0 ))

in_background "engine venv" "$MAKE" --no-print-directory engine
stage "tool venv" "$MAKE" --no-print-directory test-venv
stage "ruff, format, mypy" "$MAKE" --no-print-directory ruff format-check mypy
stage "promtool" "$MAKE" --no-print-directory prometheus
in_background "Docker, podman, registry" "$MAKE" --no-print-directory docker podman registry

failed=0
stage "tests without Docker or the engine" \
    run_pytest -m "not docker and not engine and not podman" -q -n auto --durations=15 "$@" || failed=1
stage "background setup" wait_background
stage "tests with Docker, podman or the engine" \
    run_pytest -m "docker or engine or podman" --durations=40 "$@" || failed=1

printf '%s\t%s\t%s\n' "make test (wall)" "$(since "$START")" "$failed" >>"$TIMES/stages.tsv"
"$PY" scripts/test_times.py "$TIMES"
exit "$failed"
