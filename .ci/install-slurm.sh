#!/usr/bin/env bash
# Install the Debian packages that tests/cluster/slurm_cluster.py needs for a real
# one-node SLURM cluster with accounting (Debian bookworm; run as root).
set -euo pipefail

# slurmctld/slurmd/slurm-client: the cluster itself; slurmdbd + MariaDB: accounting,
# without which sacct fails and submitit cannot see a job's final state.
# mariadb-client-core is needed by mariadb-install-db, not only for a client shell.
packages=(
    munge
    slurmctld
    slurmd
    slurm-client
    slurmdbd
    mariadb-server-core
    mariadb-client-core
)

missing=()
for pkg in "${packages[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q '^install ok installed$'; then
        missing+=("$pkg")
    fi
done

if [ "${#missing[@]}" -eq 0 ]; then
    echo "install-slurm: all packages already installed"
    exit 0
fi

# The daemons are never started as system services here: slurm_cluster.py starts
# each one itself, with its own config, free ports and pid files under a workdir.
export DEBIAN_FRONTEND=noninteractive
apt-get update
apt-get install -y --no-install-recommends "${missing[@]}"
