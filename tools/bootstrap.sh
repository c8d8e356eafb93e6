#!/usr/bin/env bash
# Create or refresh the project's virtual environment in .venv: the CPU build of
# torch 2.13.0 first (pinned here, so no other package pulls a multi-gigabyte CUDA
# build), then this package with its test tools. Does nothing when pyproject.toml
# has not changed since the last successful install.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
venv="$root/.venv"
stamp="$venv/.mmlego-install-stamp"
python=${PYTHON:-python3}
torch_version=2.13.0

wanted=$(sha256sum "$root/pyproject.toml" | cut -d' ' -f1)
if [[ -x "$venv/bin/python" && -f "$stamp" && "$(cat "$stamp")" == "$wanted" ]]; then
    exit 0
fi

if ! "$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
    echo "error: $python is $("$python" --version 2>&1); Python 3.11 or newer is required." \
        "Set PYTHON=/path/to/python3.11 and run again." >&2
    exit 1
fi

echo "Setting up $venv (first run, or pyproject.toml changed)..." >&2
"$python" -m venv "$venv"
"$venv/bin/python" -m pip install --quiet --upgrade pip
"$venv/bin/python" -m pip install --quiet "torch==$torch_version"
"$venv/bin/python" -m pip install --quiet -e "$root[dev]"
echo "$wanted" > "$stamp"
echo "Environment ready: $venv" >&2
