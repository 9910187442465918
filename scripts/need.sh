#!/usr/bin/env bash
# Installs a Debian package when a command the tests run is missing:
#   scripts/need.sh COMMAND PACKAGE
set -euo pipefail
cmd=${1:?usage: need.sh COMMAND PACKAGE} pkg=${2:?usage: need.sh COMMAND PACKAGE}
command -v "$cmd" >/dev/null && exit 0
# shellcheck source=scripts/lib.sh
. "$(dirname "$0")/lib.sh"
echo "installing $pkg for $cmd (once)" >&2
quietly apt-update sudo_ apt-get update -qq
apt_install "$pkg"
