#!/usr/bin/env bash
# Creates the Python virtual environment the interoperability tests run the real koi-net 2.1.2 peers from.
# Idempotent: a second run that finds everything in place returns at once without touching pip.
#
#   KOI_VENV   where to make it (default: <repo>/.venv)
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
venv=${KOI_VENV:-$repo/.venv}
koi_version=2.1.2
stamp="$venv/.koi-net-$koi_version.ok"

if [ -f "$stamp" ] && "$venv/bin/python" -c "import koi_net" 2>/dev/null; then
  exit 0
fi

python=${PYTHON:-python3}
if ! command -v "$python" >/dev/null; then
  echo "setup-python: $python not found; install Python 3.11+ (Debian: apt-get install python3 python3-venv)" >&2
  exit 1
fi

echo "setup-python: creating $venv with koi-net==$koi_version" >&2
"$python" -m venv "$venv"
"$venv/bin/pip" install --quiet --disable-pip-version-check "koi-net==$koi_version"

# koi-net 2.1.2 uses Python 3.12's `type X = ...` alias syntax in one module; on 3.11 rewrite those aliases as
# plain assignments (PROTOCOL.md, "Running the reference peers here"). Nothing else changes.
models=$("$venv/bin/python" - <<'PY'
import importlib.util, pathlib
spec = importlib.util.find_spec("koi_net")
print(pathlib.Path(spec.origin).parent / "protocol" / "api" / "models.py")
PY
)
if [ -f "$models" ] && grep -qE '^type [A-Za-z_]+ *=' "$models"; then
  sed -i -E 's/^type ([A-Za-z_][A-Za-z0-9_]*) *=/\1 =/' "$models"
fi

if ! "$venv/bin/python" -c "import koi_net, koi_net.protocol.api.models" ; then
  echo "setup-python: koi-net installed but does not import; see the error above" >&2
  exit 1
fi
touch "$stamp"
echo "setup-python: ready ($venv)" >&2
