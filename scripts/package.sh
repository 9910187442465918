#!/usr/bin/env bash
# Builds the Debian package bin/lvs-sync_<version>_amd64.deb with nfpm (the
# version tools/nfpm/go.mod pins) from packaging/deb/nfpm.yaml, and prints
# its path. Run by `make package`, which builds the binary it packages
# into bin/package/lvs-sync.
#
# The Debian version: a tag v1.2.3 (or 1.2.3) gives 1.2.3; an untagged
# commit gives 0.0~git<commit date>.<hash>, which sorts before any release
# and after the commits of earlier days. A dirty tree adds +dirty. The package is
# native (no Debian revision): lvs-sync is its own upstream.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"
pkg_dir=bin/package # the path nfpm.yaml names
[ -x "$pkg_dir/lvs-sync" ] || { echo "package: no $pkg_dir/lvs-sync: run make package" >&2; exit 1; }

desc=$(git describe --tags --always --dirty 2>/dev/null || echo dev)
if [[ $desc =~ ^v?[0-9]+\.[0-9]+ ]]; then
	version=${desc#v} version=${version//-/+}
else
	version=0.0~git$(git log -1 --format=%cd --date=format:%Y%m%d 2>/dev/null || echo 0).$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
	case $desc in *-dirty) version=$version+dirty ;; esac
fi

# Debian policy 12.7: a native package's changelog is changelog.gz, in
# Debian's changelog format, compressed with gzip -9n (no name, no time:
# the same bytes for the same input). The date is the commit's, so one
# commit builds one package.
{
	echo "lvs-sync ($version) unstable; urgency=medium"
	echo
	echo "  * Built from commit $(git rev-parse HEAD 2>/dev/null || echo unknown)."
	echo "    Every change is in the project's git history."
	echo
	echo " -- lvs-sync maintainers <maintainers@lvs-sync.example>  $(git log -1 --format=%cD 2>/dev/null || date -R)"
} | gzip -9n >"$pkg_dir/changelog.gz"
gzip -9n <README.md >"$pkg_dir/README.md.gz"
scripts/deb-copyright.sh >"$pkg_dir/copyright"

out=bin/lvs-sync_${version}_amd64.deb
rm -f bin/lvs-sync_*_amd64.deb # one package in bin: this one
# shellcheck source=scripts/lib.sh
. "$here/scripts/lib.sh"
# nfpm dates the package's files SOURCE_DATE_EPOCH: the commit's time.
SOURCE_DATE_EPOCH=$(git log -1 --format=%ct 2>/dev/null || date +%s)
export DEB_VERSION=$version SOURCE_DATE_EPOCH
# nfpm runs from the root (the config's paths are the repository's); `go
# tool -n` builds it, once, into Go's cache and prints where.
nfpm=$(go -C tools/nfpm tool -n nfpm)
quietly nfpm "$nfpm" package --config packaging/deb/nfpm.yaml --packager deb --target "$out"
echo "$out"
