#!/usr/bin/env bash
# Builds the real Consul agent that the integration tests run, from the Go
# module proxy, into a cache outside the repository, and prints its path.
# A cached binary is reused. The version is the one tools/consul/go.mod pins.
#
# `go install github.com/hashicorp/consul@version` cannot do this: Consul's
# go.mod has replace and exclude directives that only a main module obeys,
# so tools/consul is that main module.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
version=$(awk '$1 == "github.com/hashicorp/consul" { print $2 }' "$here/tools/consul/go.mod")
[ -n "$version" ] || { echo "build-consul: no consul version in tools/consul/go.mod" >&2; exit 1; }
cache=${LVS_SYNC_CACHE:-$HOME/.cache/lvs-sync}
bin=$cache/consul-$version/consul
if [ -x "$bin" ] && "$bin" version >/dev/null 2>&1; then
	echo "$bin"
	exit 0
fi
echo "build-consul: building consul $version into $bin (a few minutes, once)" >&2
mkdir -p "$(dirname "$bin")"
cd "$here/tools/consul"
go build -trimpath -ldflags='-s -w' -o "$bin.partial" github.com/hashicorp/consul
mv "$bin.partial" "$bin"
echo "$bin"
