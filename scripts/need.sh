#!/usr/bin/env bash
# Installs a Debian package when a command the tests run is missing:
#   scripts/need.sh COMMAND PACKAGE
set -euo pipefail
cmd=${1:?usage: need.sh COMMAND PACKAGE} pkg=${2:?usage: need.sh COMMAND PACKAGE}
command -v "$cmd" >/dev/null && exit 0
echo "need: installing $pkg for $cmd" >&2
sudo_() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }
sudo_ apt-get update -qq >&2
sudo_ env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$pkg" >&2
