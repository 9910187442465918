#!/usr/bin/env bash
# Prepares the Debian root the package test installs lvs-sync into, and
# prints its path: debootstrap --variant=minbase of the host's release
# (bookworm if it is not Debian), with systemd (the units `systemd-analyze
# verify --root` resolves lvs-sync.service against, and init-system-helpers,
# whose deb-systemd-helper the maintainer scripts run) and procps (/bin/kill,
# the unit's ExecReload). Built once into $LVS_SYNC_CACHE (35 s and 200 MB
# here); the test installs into a copy, never into this one.
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "$0")/lib.sh"
suite=bookworm
if [ -r /etc/os-release ]; then
	# shellcheck disable=SC1091
	. /etc/os-release
	[ "${ID:-}" = debian ] && [ -n "${VERSION_CODENAME:-}" ] && suite=$VERSION_CODENAME
fi
root=$cache/deb-chroot/$suite
if [ -f "$root.done" ]; then
	echo "$root"
	exit 0
fi
"$(dirname "$0")/need.sh" debootstrap debootstrap
echo "deb-chroot: debootstrap $suite into $root (once, under a minute)" >&2
sudo_ rm -rf "$root"
mkdir -p "$(dirname "$root")"
quietly debootstrap sudo_ debootstrap --variant=minbase --include=systemd,procps "$suite" "$root" http://deb.debian.org/debian
# What a root needs no more once made: apt's downloaded packages.
sudo_ rm -rf "$root"/var/cache/apt/archives/*.deb
touch "$root.done"
echo "$root"
