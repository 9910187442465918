#!/usr/bin/env bash
# Builds a real HashiCorp agent the tests run — consul or nomad — from the
# Go module proxy, into a cache outside the repository, and prints its path.
# A cached binary is reused. The version is the one tools/NAME/go.mod pins.
#
#   scripts/build-tool.sh consul|nomad
#
# `go install github.com/hashicorp/NAME@version` cannot do this: their
# go.mod files have replace and exclude directives that only a main module
# obeys, so tools/NAME is that main module.
set -euo pipefail
name=${1:?usage: build-tool.sh consul|nomad}
here=$(cd "$(dirname "$0")/.." && pwd)
mod=$here/tools/$name/go.mod
[ -f "$mod" ] || { echo "build-tool: no $mod" >&2; exit 1; }
version=$(awk -v m="github.com/hashicorp/$name" '$1 == m { print $2 }' "$mod")
[ -n "$version" ] || { echo "build-tool: no $name version in $mod" >&2; exit 1; }
# shellcheck source=scripts/lib.sh
. "$here/scripts/lib.sh"
bin=$cache/$name-$version/$name
if [ -x "$bin" ] && "$bin" version >/dev/null 2>&1; then
	echo "$bin"
	exit 0
fi
case $name in consul) title=Consul ;; nomad) title=Nomad ;; *) title=$name ;; esac
echo "building $title $version from the Go module proxy (once, about 4 min; into $bin)" >&2
mkdir -p "$(dirname "$bin")"
cd "$here/tools/$name"
quietly "build-$name" go build -trimpath -ldflags='-s -w' -o "$bin.partial" "github.com/hashicorp/$name"
mv "$bin.partial" "$bin"
echo "$bin"
