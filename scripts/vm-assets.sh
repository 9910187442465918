#!/usr/bin/env bash
# Stages what the real-kernel test bed boots, into a cache outside the
# repository, and prints the stage directory. A finished stage is reused.
#
# The host kernel has no IPVS, so tests boot Debian's own kernel (ip_vs as
# modules) under qemu. From Debian's packages: qemu-system-x86 (installed),
# and, downloaded and unpacked with dpkg -x, never into /: the kernel that
# linux-image-amd64 depends on, busybox-static, ipvsadm, iproute2 and the
# libraries they load; and keepalived with its libraries, the HA tests'
# anchor, added to a finished stage that lacks it (marker .keepalived); and
# the extras of issue 14 (marker .extras-1): the sctp, ip6_tunnel and
# nf_tables modules and nftables' nft, for SCTP, IPv6 ipip and firewall-mark
# traffic, added to a finished stage the same way; and BIRD 2 (marker
# .bird2): Debian's bird2, the bird daemon and birdc, with their libraries,
# the ECMP router (and stand-in speakers) of the all-active tests.
#
# The kernel is whatever linux-image-amd64 depends on (the package lists
# are refreshed first when they are a day old, or before a new stage: a
# stale list names a build the mirror may no longer serve), or the package
# LVS_SYNC_KERNEL names, to run the tests on another build:
#   LVS_SYNC_KERNEL=linux-image-6.1.0-42-amd64 make e2e
# The build that will boot is logged on every run ("vm-assets: kernel ..."),
# and a change from the build staged before is said loudly: results taken
# on two builds are not comparable.
#
# Stage layout:  vmlinux       the uncompressed kernel (booted directly)
#                kernel.build  the kernel's version line (uname -r, the
#                              Debian version: "6.1.0-57-amd64 Debian 6.1.192-3")
#                root/         the initramfs base: busybox, ip, ipvsadm,
#                              keepalived, nft, bird and birdc, their libraries,
#                              the modules and modules.dep
#                modules.load  the modules to load at boot, in order
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "$0")/lib.sh"
log() { echo "vm-assets: $*" >&2; }

# Modules the tests need; their dependencies are added from depends=.
want_modules="crc32c_generic nf_conntrack ip_vs ip_vs_rr ip_vs_wrr ip_vs_lc ip_vs_wlc ip_vs_sh ip_vs_mh ipip veth dummy bridge virtio_pci virtio_net"
extra_modules="sctp ip6_tunnel nf_tables"
# nftables' nft and the closure of its libraries.
extra_pkgs="nftables libnftables1 libnftnl11 libmnl0 libjansson4 libgmp10 libedit2 libbsd0 libmd0 libtinfo6 libxtables12 libc6"

need_pkgs=()
command -v qemu-system-x86_64 >/dev/null || need_pkgs+=(qemu-system-x86)
command -v xz >/dev/null || need_pkgs+=(xz-utils)
command -v strings >/dev/null || need_pkgs+=(binutils)
# The lists' own mtimes are the mirror's, not when they were fetched: a
# stamp of ours says when this script last refreshed them.
stamp=$cache/vm/apt-updated
apt_update() {
	log "apt-get update"
	quietly apt-update sudo_ apt-get update -qq
	mkdir -p "$cache/vm" && touch "$stamp"
	updated=1
}
updated=
# (grep -q on a pipe would SIGPIPE apt-cache and, with pipefail, fail)
if ! [[ $(apt-cache policy linux-image-amd64 2>/dev/null) =~ Candidate:\ [0-9] ]] ||
	[ -z "$(find "$stamp" -mmin -1440 2>/dev/null)" ]; then
	apt_update
fi
if [ ${#need_pkgs[@]} -gt 0 ]; then
	log "installing ${need_pkgs[*]} (once)"
	apt_install "${need_pkgs[@]}"
fi

kernel_package() {
	if [ -n "${LVS_SYNC_KERNEL:-}" ]; then
		echo "$LVS_SYNC_KERNEL"
	else
		apt-cache depends linux-image-amd64 | awk '/Depends: linux-image-[0-9]/ { print $2; exit }'
	fi
}
kpkg=$(kernel_package)
[ -n "$kpkg" ] || { log "cannot find the kernel package linux-image-amd64 depends on"; exit 1; }
kver=${kpkg#linux-image-}
stage=$cache/vm/$kver
if [ ! -f "$stage/.done" ] && [ -z "$updated" ]; then
	apt_update # before a download: a list may name what the mirror no longer has
	kpkg=$(kernel_package)
	kver=${kpkg#linux-image-}
	stage=$cache/vm/$kver
fi
[[ $(apt-cache policy "$kpkg" 2>/dev/null) =~ Candidate:\ [0-9] ]] || [ -f "$stage/.done" ] ||
	{ log "no package $kpkg in Debian's lists (apt-cache search linux-image-6 lists the builds)"; exit 1; }

# describe_kernel writes the staged kernel's version line into kernel.build
# (from its banner, as uname -r and -v say it) and logs it, and says so
# when it differs from the build staged before.
describe_kernel() {
	local build last=$cache/vm/last-kernel
	if [ ! -s "$stage/kernel.build" ]; then
		build=$(strings -n 20 "$stage/vmlinux" | sed -n 's/^Linux version \([^ ]*\) .* \(Debian [^ ]*\) .*/\1 \2/p' | head -1)
		echo "${build:-$kver}" >"$stage/kernel.build"
	fi
	build=$(cat "$stage/kernel.build")
	if [ -s "$last" ] && [ "$(cat "$last")" != "$build" ]; then
		log "THE KERNEL CHANGED: the tests ran on $(cat "$last") before, on $build now"
	fi
	echo "$build" >"$last"
	log "kernel $build ($kpkg)"
}
# copy_libs BIN PKROOT ROOT: the libraries BIN loads, resolved against the
# packages unpacked in PKROOT, into ROOT; a library none of them provides
# is an error, not a silent host copy.
copy_libs() {
	local bin=$1 pk=$2 root=$3
	LD_LIBRARY_PATH=$pk/lib/x86_64-linux-gnu:$pk/usr/lib/x86_64-linux-gnu ldd "$bin" | while read -r name arrow path _; do
		case "$name" in
		linux-vdso*) continue ;;
		/lib64/ld-linux*) cp -L "$pk$name" "$root/lib64/" ;;
		*)
			case "$path" in "$pk"/*) ;; *)
				log "$bin needs $name, which no downloaded package provides (found: $path)"
				exit 1
				;;
			esac
			cp -L "$path" "$root/lib/x86_64-linux-gnu/$name"
			;;
		esac
	done
}

# keepalived (VRRP and the kernel's sync daemon: the HA tests' anchor) and
# the closure of its libraries (net-snmp brings perl's, kerberos' ...).
keepalived_pkgs="keepalived libc6 libglib2.0-0 libnftnl11 libpcre2-8-0 libsnmp40 libssl3 libsystemd0 libmnl0
	libnl-3-200 libnl-genl-3-200 libsensors5 libpci3 libwrap0 libperl5.36 zlib1g libmount1 libselinux1 libcap2
	libgcrypt20 liblzma5 libzstd1 liblz4-1 libcrypt1 libffi8 libblkid1 libgpg-error0 libudev1 libnsl2 libtirpc3
	libgssapi-krb5-2 libkrb5-3 libk5crypto3 libcom-err2 libkrb5support0 libkeyutils1"
stage_keepalived() {
	local kp=$stage/keepalived-pkgs
	log "staging keepalived into $stage"
	rm -rf "$kp"
	mkdir -p "$kp/debs" "$kp/root" "$stage/root/sbin" "$stage/root/lib64" "$stage/root/lib/x86_64-linux-gnu"
	# shellcheck disable=SC2086 # a list of names
	(cd "$kp/debs" && apt-get download -qq $keepalived_pkgs 2>&1 | grep -v unsandboxed >&2 || true)
	for deb in "$kp"/debs/*.deb; do dpkg -x "$deb" "$kp/root"; done
	[ -x "$kp/root/usr/sbin/keepalived" ] || { log "no keepalived in the downloaded package"; exit 1; }
	cp "$kp/root/usr/sbin/keepalived" "$stage/root/sbin/keepalived"
	copy_libs "$stage/root/sbin/keepalived" "$kp/root" "$stage/root"
	rm -rf "$kp"
	touch "$stage/.keepalived"
}

# BIRD 2 (the ECMP tests' router, Debian's bird2: the bird daemon and
# birdc) and the closure of its libraries (libssh brings kerberos').
# Multipath routes need no module: Debian's kernel has
# CONFIG_IP_ROUTE_MULTIPATH built in (fib_multipath_hash_policy).
bird_pkgs="bird2 libc6 libreadline8 libtinfo6 libssh-gcrypt-4 libgcrypt20 libgpg-error0 zlib1g
	libgssapi-krb5-2 libkrb5-3 libk5crypto3 libcom-err2 libkrb5support0 libkeyutils1"
stage_bird() {
	local bp=$stage/bird-pkgs bin
	log "staging bird2 into $stage"
	rm -rf "$bp"
	mkdir -p "$bp/debs" "$bp/root" "$stage/root/sbin" "$stage/root/lib64" "$stage/root/lib/x86_64-linux-gnu"
	# shellcheck disable=SC2086 # a list of names
	(cd "$bp/debs" && apt-get download -qq $bird_pkgs 2>&1 | grep -v unsandboxed >&2 || true)
	for deb in "$bp"/debs/*.deb; do dpkg -x "$deb" "$bp/root"; done
	for bin in bird birdc; do
		[ -x "$bp/root/usr/sbin/$bin" ] || { log "no $bin in the downloaded bird2 package"; exit 1; }
		cp "$bp/root/usr/sbin/$bin" "$stage/root/sbin/$bin"
		copy_libs "$stage/root/sbin/$bin" "$bp/root" "$stage/root"
	done
	rm -rf "$bp"
	touch "$stage/.bird2"
}

# Modules, from the kernel package unpacked in $pk into $root: add_mod NAME
# copies the module and, from each depends=, what it needs, and appends
# them to order (the boot's load order) unless seen.
declare -A seen=()
order=()
find_mod() { find "$moddir/kernel" -name "$1.ko" -o -name "$1.ko.xz" | head -1; }
add_mod() {
	local name=${1//-/_} file deps d
	[ -n "${seen[$name]:-}" ] && return
	seen[$name]=1
	file=$(find_mod "$name")
	if [ -z "$file" ]; then file=$(find_mod "${1//_/-}"); fi
	[ -n "$file" ] || { grep -qw "$name" "$moddir/modules.builtin" 2>/dev/null && return; log "no module $name"; exit 1; }
	deps=$(strings -a "$file" | sed -n 's/^depends=//p' | tr ',' ' ')
	for d in $deps; do add_mod "$d"; done
	mkdir -p "$root/$(dirname "${file#"$pk"/}")"
	cp "$file" "$root/${file#"$pk"/}"
	order+=("$name")
}

# copy_nft copies nft from the packages unpacked in $1 into the stage.
copy_nft() {
	[ -x "$1/usr/sbin/nft" ] || { log "no nft in the downloaded package"; exit 1; }
	mkdir -p "$stage/root/sbin"
	cp "$1/usr/sbin/nft" "$stage/root/sbin/nft"
	copy_libs "$stage/root/sbin/nft" "$1" "$stage/root"
}

# stage_extras adds the extra modules and nft to a finished stage that was
# made before them: the kernel package again, for its modules.
stage_extras() {
	local ex=$stage/extras-pkgs m
	log "staging the extra modules and nft into $stage"
	rm -rf "$ex"
	mkdir -p "$ex/debs" "$ex/root"
	# shellcheck disable=SC2086 # a list of names
	(cd "$ex/debs" && apt-get download -qq "$kpkg" $extra_pkgs 2>&1 | grep -v unsandboxed >&2 || true)
	for deb in "$ex"/debs/*.deb; do dpkg -x "$deb" "$ex/root"; done
	pk=$ex/root root=$stage/root moddir=$ex/root/lib/modules/$kver
	while read -r m; do seen[$m]=1; order+=("$m"); done <"$stage/modules.load"
	for m in $extra_modules; do add_mod "$m"; done
	"$root/bin/busybox" depmod -b "$root" "$kver"
	printf '%s\n' "${order[@]}" >"$stage/modules.load"
	copy_nft "$ex/root"
	rm -rf "$ex"
	touch "$stage/.extras-1"
}

if [ -f "$stage/.done" ]; then
	[ -f "$stage/.keepalived" ] || stage_keepalived
	[ -f "$stage/.extras-1" ] || stage_extras
	[ -f "$stage/.bird2" ] || stage_bird
	describe_kernel
	echo "$stage"
	exit 0
fi
log "staging $kpkg and tools into $stage"
rm -rf "$stage"
mkdir -p "$stage/debs" "$stage/pkgroot" "$stage/root"
(
	cd "$stage/debs"
	# shellcheck disable=SC2086 # a list of names
	apt-get download -qq "$kpkg" busybox-static ipvsadm iproute2 libc6 libnl-3-200 libnl-genl-3-200 \
		libpopt0 libbpf1 libbsd0 libcap2 libelf1 libmnl0 libmd0 zlib1g $extra_pkgs 2>&1 | grep -v unsandboxed >&2 || true
)
ls "$stage"/debs/"$kpkg"_*.deb >/dev/null 2>&1 || { log "downloading $kpkg failed (see above)"; exit 1; }
for deb in "$stage"/debs/*.deb; do dpkg -x "$deb" "$stage/pkgroot"; done
pk=$stage/pkgroot
root=$stage/root
moddir=$pk/lib/modules/$kver

# The kernel: the XZ payload of vmlinuz, uncompressed, boots fastest under TCG.
vmlinuz=$pk/boot/vmlinuz-$kver
off=$(LC_ALL=C grep -obUaP '\xfd7zXZ\x00' "$vmlinuz" | head -1 | cut -d: -f1)
[ -n "$off" ] || { log "no XZ payload in $vmlinuz"; exit 1; }
tail -c +$((off + 1)) "$vmlinuz" | xz -dc --single-stream >"$stage/vmlinux" 2>/dev/null || true
head -c 4 "$stage/vmlinux" | grep -q ELF || { log "extracting vmlinux failed"; exit 1; }

# Tools and the libraries they load.
mkdir -p "$root/bin" "$root/sbin" "$root/lib64" "$root/lib/x86_64-linux-gnu"
cp "$pk/bin/busybox" "$root/bin/busybox"
ipbin=$(ls "$pk"/bin/ip "$pk"/sbin/ip 2>/dev/null | head -1)
cp "$ipbin" "$root/sbin/ip"
cp "$pk/sbin/ipvsadm" "$root/sbin/ipvsadm"
for bin in "$root/sbin/ip" "$root/sbin/ipvsadm"; do copy_libs "$bin" "$pk" "$root"; done
copy_nft "$pk"

# Modules: the wanted ones and, from each depends=, what they need.
for m in $want_modules $extra_modules; do add_mod "$m"; done
cp "$moddir"/modules.builtin* "$moddir"/modules.order "$root/lib/modules/$kver/" 2>/dev/null || true
"$root/bin/busybox" depmod -b "$root" "$kver"
printf '%s\n' "${order[@]}" >"$stage/modules.load"
echo "$kver" >"$stage/kernel.release"
rm -rf "$stage/debs" "$stage/pkgroot"
stage_keepalived
stage_bird
touch "$stage/.extras-1" "$stage/.done"
log "staged kernel $kver with ${#order[@]} modules"
describe_kernel
echo "$stage"
