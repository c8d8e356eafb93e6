#!/usr/bin/env bash
# Install the Slurm daemons and MUNGE from Debian packages for the SLURM executor test
# (tests/test_slurm.py). Debian 12 ships Slurm 22.05. The test writes its own slurm.conf and
# MUNGE key and starts the daemons itself, so this script only installs the binaries. It
# returns at once when they are already on PATH. Needs root (or sudo) and apt-get.
set -euo pipefail

required=(munged slurmctld slurmd sbatch srun squeue sinfo scancel)

missing=()
for binary in "${required[@]}"; do
    command -v "$binary" >/dev/null 2>&1 || missing+=("$binary")
done
if [ "${#missing[@]}" -eq 0 ]; then
    echo "slurm-install: Slurm and MUNGE binaries already installed"
    exit 0
fi
echo "slurm-install: missing ${missing[*]}; installing slurm-wlm and munge"

if [ "$(id -u)" -eq 0 ]; then
    sudo=()
elif command -v sudo >/dev/null 2>&1; then
    sudo=(sudo)
else
    echo "slurm-install: must run as root or with sudo to install packages" >&2
    exit 1
fi

export DEBIAN_FRONTEND=noninteractive
"${sudo[@]}" apt-get update -q
# The packages' post-install scripts try to start the services. Inside a container without
# systemd that fails without failing the install, and the test starts its own daemons.
"${sudo[@]}" apt-get install -y -q --no-install-recommends slurm-wlm munge

for binary in "${required[@]}"; do
    if ! command -v "$binary" >/dev/null 2>&1; then
        echo "slurm-install: $binary is still missing after apt-get install" >&2
        exit 1
    fi
done
echo "slurm-install: installed $(slurmctld -V)"
