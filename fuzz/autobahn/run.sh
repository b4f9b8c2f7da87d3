#!/usr/bin/env bash
# Autobahn|Testsuite (fuzzingclient, cases 1.*-10.*, and 12.*-13.* for permessage-deflate) against
# the echo mode of Cableway's real WebSocket driver (fuzz/autobahn/echo_server.py), on 127.0.0.1
# only.
#
# The suite runs only on Python 2.7: this script builds its own virtualenv from PyPI with
# pyenv's 2.7.18 (see ../shared/design/security.md §A) and skips, exiting 0 with a message,
# when no Python 2.7 exists. Prints "N passed, N failed" (fuzz/autobahn/summarise.py) and exits
# non-zero when any case fails. Reports: fuzz/autobahn/reports/servers/index.html.
#
# Environment:
#   CABLEWAY_PY27            Python 2.7 interpreter (default: $PYENV_ROOT/versions/2.7.18/bin/python)
#   CABLEWAY_AUTOBAHN_VENV   where the suite's virtualenv lives (default: ~/.cache/cableway/...)
#   PYTHON                   Python >= 3.11 with cableway installed (default: .venv/bin/python)
#   AUTOBAHN_CASES           override the cases, e.g. AUTOBAHN_CASES='["1.*"]'
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"

py27="${CABLEWAY_PY27:-${PYENV_ROOT:-$HOME/.pyenv}/versions/2.7.18/bin/python}"
if [[ ! -x "$py27" ]] || ! "$py27" -c 'import sys; sys.exit(sys.version_info[:2] != (2, 7))' \
    2>/dev/null; then
    echo "autobahn: SKIPPED: no Python 2.7 at $py27 (set CABLEWAY_PY27); the suite needs one"
    exit 0
fi
python="${PYTHON:-$repo/.venv/bin/python}"

# --- the suite's virtualenv (pins from autobahntestsuite's egg-info/requires.txt) ------------
pins=(
    setuptools==44.0.0 txaio==2.1.0 incremental==16.10.1 pyOpenSSL==19.1.0 cryptography==3.3.2
    Twisted==19.10.0 zope.interface==4.6.0 jinja2==2.11.3 markupsafe==1.1.1 Werkzeug==1.0.1
    klein==17.10.0 service_identity==18.1.0 unittest2==1.1.0 six==1.16.0
    "autobahn[twisted,accelerate]==0.10.9"
)
suite=autobahntestsuite==25.10.1
venv="${CABLEWAY_AUTOBAHN_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/cableway/autobahn-py27}"
want="$(printf '%s\n' "$py27" "${pins[@]}" "$suite" | sha256sum | cut -d' ' -f1)"
if [[ "$(cat "$venv/.stamp" 2>/dev/null)" != "$want" ]] || ! "$venv/bin/wstest" --help \
    >/dev/null 2>&1; then
    echo "autobahn: building $venv with $py27 (about 30 s)" >&2
    rm -rf "$venv"
    mkdir -p "$venv"
    pip27() { # quiet pip, but show everything when it fails
        if ! "$@" -m pip install --quiet --disable-pip-version-check "${pip_args[@]}" \
            >"$venv/pip.log" 2>&1; then
            cat "$venv/pip.log" >&2
            echo "autobahn: pip failed; see above" >&2
            exit 1
        fi
    }
    # virtualenv < 20.22 still creates Python 2.7 environments; kept beside the venv so
    # pyenv's own site-packages are left untouched
    pip_args=(--target "$venv/.virtualenv" "virtualenv<20.22")
    pip27 "$py27"
    PYTHONPATH="$venv/.virtualenv" "$py27" -m virtualenv --quiet "$venv/env"
    pip_args=("${pins[@]}")
    pip27 "$venv/env/bin/python"
    pip_args=(--no-deps "$suite")
    pip27 "$venv/env/bin/python"
    ln -sfn env/bin "$venv/bin"
    "$venv/bin/wstest" --autobahnversion >&2
    echo "$want" >"$venv/.stamp"
fi

# --- the echo server ---------------------------------------------------------------------------
work="$(mktemp -d)"
server_pid=""
cleanup() {
    if [[ -n "$server_pid" ]]; then
        kill "$server_pid" 2>/dev/null || true
        wait "$server_pid" 2>/dev/null || true
    fi
    rm -rf "$work"
}
trap cleanup EXIT

"$python" "$here/echo_server.py" --port 0 >"$work/echo.out" 2>"$work/echo.err" &
server_pid=$!
port=""
for _ in $(seq 100); do # up to 10 s for the "listening" line
    # (the background job may not have created echo.out yet)
    port="$(sed -n 's/^echo: listening on 127\.0\.0\.1:\([0-9]*\)$/\1/p' "$work/echo.out" \
        2>/dev/null || true)"
    [[ -n "$port" ]] && break
    kill -0 "$server_pid" 2>/dev/null || break
    sleep 0.1
done
if [[ -z "$port" ]]; then
    echo "autobahn: the echo server did not start" >&2
    cat "$work/echo.err" >&2
    exit 1
fi

# --- the suite -----------------------------------------------------------------------------------
mkdir -p "$here/reports"
rm -rf "$here/reports/servers"
"$python" - "$here/fuzzingclient.json" "$work/spec.json" "$port" "$here/reports/servers" <<'EOF'
import json, os, sys
spec = json.load(open(sys.argv[1]))
spec["servers"][0]["url"] = f"ws://127.0.0.1:{sys.argv[3]}"
spec["outdir"] = sys.argv[4]
if os.environ.get("AUTOBAHN_CASES"):
    spec["cases"] = json.loads(os.environ["AUTOBAHN_CASES"])
json.dump(spec, open(sys.argv[2], "w"))
EOF
echo "autobahn: fuzzingclient against ws://127.0.0.1:$port" >&2
start=$SECONDS
(cd "$work" && timeout 1800 "$venv/bin/wstest" -m fuzzingclient -s "$work/spec.json" \
    >"$work/wstest.log" 2>&1) || {
    echo "autobahn: wstest failed (exit $?)" >&2
    tail -n 30 "$work/wstest.log" >&2
    exit 1
}
echo "autobahn: suite finished in $((SECONDS - start)) s" >&2
status=0
"$python" "$here/summarise.py" "$here/reports/servers/index.json" cableway "$@" || status=$?
if [[ -s "$work/echo.err" ]]; then
    echo "autobahn: the echo server logged:" >&2
    head -n 40 "$work/echo.err" >&2
    if grep -q Traceback "$work/echo.err"; then
        echo "autobahn: FAILED: an exception escaped in the echo driver" >&2
        status=1
    fi
fi
exit "$status"
