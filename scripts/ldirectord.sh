#!/usr/bin/env bash
# Stages Debian's ldirectord for the import comparison test and prints the
# path of the script. ldirectord is unpacked with dpkg -x into the cache,
# never installed (its package would pull in ipvsadm and a service); the
# perl modules it loads at start (Socket6, IO::Socket::INET6, Mail::Send)
# and for the checks the test runs (LWP, LWP::Protocol::https for https)
# are installed from Debian like scripts/need.sh installs python3. A
# finished stage is reused.
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "$0")/lib.sh"
log() { echo "ldirectord: $*" >&2; }

declare -A modules=([Socket6]=libsocket6-perl [IO::Socket::INET6]=libio-socket-inet6-perl [Mail::Send]=libmailtools-perl [LWP::UserAgent]=libwww-perl [LWP::Protocol::https]=liblwp-protocol-https-perl)
missing=()
for m in "${!modules[@]}"; do perl -M"$m" -e1 2>/dev/null || missing+=("${modules[$m]}"); done
if ! [[ $(apt-cache policy ldirectord 2>/dev/null) =~ Candidate:\ [0-9] ]]; then
	log "apt-get update"
	quietly apt-update sudo_ apt-get update -qq
fi
if [ ${#missing[@]} -gt 0 ]; then
	log "installing ${missing[*]}"
	apt_install "${missing[@]}"
fi

version=$(apt-cache policy ldirectord | awk '/Candidate:/ { print $2 }')
stage=$cache/ldirectord/${version//:/_}
if [ -f "$stage/.done" ]; then
	echo "$stage/usr/sbin/ldirectord"
	exit 0
fi
log "staging ldirectord $version into $stage"
rm -rf "$stage"
mkdir -p "$stage/deb"
(cd "$stage/deb" && apt-get download -qq ldirectord 2>&1 | grep -v unsandboxed >&2 || true)
dpkg -x "$stage"/deb/ldirectord_*.deb "$stage"
rm -rf "$stage/deb"
touch "$stage/.done"
echo "$stage/usr/sbin/ldirectord"
