#!/usr/bin/env bash
# Install Debian's chromium: tests/test_loggers.py opens the visdom and TensorBoard pages in it,
# headless, and checks the screenshots (Debian bookworm; run as root).
set -euo pipefail

if dpkg-query -W -f='${Status}' chromium 2>/dev/null | grep -q '^install ok installed$'; then
    echo "install-chromium: already installed"
    exit 0
fi

export DEBIAN_FRONTEND=noninteractive
if ! apt-get install -y --no-install-recommends chromium; then
    apt-get update
    apt-get install -y --no-install-recommends chromium
fi
