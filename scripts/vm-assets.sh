#!/usr/bin/env bash
# Stages what the real-kernel test bed boots, into a cache outside the
# repository, and prints the stage directory. A finished stage is reused.
#
# The host kernel has no IPVS, so tests boot Debian's own kernel (ip_vs as
# modules) under qemu. From Debian's packages: qemu-system-x86 (installed),
# and, downloaded and unpacked with dpkg -x, never into /: the kernel that
# linux-image-amd64 depends on, busybox-static, ipvsadm, iproute2 and the
# libraries they load; and keepalived with its libraries, apart.
#
# Stage layout:  vmlinux       the uncompressed kernel (booted directly)
#                root/         the initramfs base: busybox, ip, ipvsadm,
#                              their libraries, the modules and modules.dep
#                modules.load  the modules to load at boot, in order
set -euo pipefail
cache=${LVS_SYNC_CACHE:-$HOME/.cache/lvs-sync}
log() { echo "vm-assets: $*" >&2; }
sudo_() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

# Modules the tests need; their dependencies are added from depends=.
want_modules="crc32c_generic nf_conntrack ip_vs ip_vs_rr ip_vs_wrr ip_vs_lc ip_vs_wlc ip_vs_sh ip_vs_mh ipip veth dummy bridge virtio_pci virtio_net"

need_pkgs=()
command -v qemu-system-x86_64 >/dev/null || need_pkgs+=(qemu-system-x86)
command -v xz >/dev/null || need_pkgs+=(xz-utils)
command -v strings >/dev/null || need_pkgs+=(binutils)
# (grep -q on a pipe would SIGPIPE apt-cache and, with pipefail, fail)
if ! [[ $(apt-cache policy linux-image-amd64 2>/dev/null) =~ Candidate:\ [0-9] ]]; then
	log "apt-get update"
	sudo_ apt-get update -qq >&2
fi
if [ ${#need_pkgs[@]} -gt 0 ]; then
	log "installing ${need_pkgs[*]}"
	sudo_ env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need_pkgs[@]}" >&2
fi

kpkg=$(apt-cache depends linux-image-amd64 | awk '/Depends: linux-image-[0-9]/ { print $2; exit }')
[ -n "$kpkg" ] || { log "cannot find the kernel package linux-image-amd64 depends on"; exit 1; }
kver=${kpkg#linux-image-}
stage=$cache/vm/$kver

# keepalived for the import comparison test, staged on its own into
# $stage/keepalived (root/ to add to the guest, files.list its files), so
# that a base stage in use by a running VM is never rebuilt for it.
stage_keepalived() {
	local ka=$stage/keepalived tmp=$stage/keepalived.tmp pkgs bin
	[ -f "$ka/.done" ] && return 0
	log "staging keepalived into $ka"
	rm -rf "$tmp"
	mkdir -p "$tmp/debs" "$tmp/pkgroot" "$tmp/root/sbin" "$tmp/root/lib/x86_64-linux-gnu"
	pkgs=$(apt-cache depends --recurse --no-recommends --no-suggests --no-conflicts --no-breaks \
		--no-replaces --no-enhances --no-pre-depends keepalived | grep -v '^ ' | grep -v '<' | grep -E '^(keepalived|lib|zlib)' | sort -u)
	# shellcheck disable=SC2086
	(cd "$tmp/debs" && apt-get download -qq $pkgs 2>&1 | grep -v unsandboxed >&2 || true)
	for deb in "$tmp"/debs/*.deb; do dpkg -x "$deb" "$tmp/pkgroot"; done
	bin=$tmp/root/sbin/keepalived
	cp "$tmp/pkgroot/usr/sbin/keepalived" "$bin"
	LD_LIBRARY_PATH=$tmp/pkgroot/lib/x86_64-linux-gnu:$tmp/pkgroot/usr/lib/x86_64-linux-gnu ldd "$bin" | while read -r name _ path _; do
		case "$name" in linux-vdso* | /lib64/ld-linux*) continue ;; esac
		case "$path" in "$tmp/pkgroot"/*) ;; *)
			log "keepalived needs $name, which no downloaded package provides (found: $path)"
			exit 1
			;;
		esac
		cp -L "$path" "$tmp/root/lib/x86_64-linux-gnu/$name"
	done
	(cd "$tmp/root" && find . -type f | sed 's|^\.||' | sort >../files.list)
	rm -rf "$tmp/debs" "$tmp/pkgroot"
	touch "$tmp/.done"
	rm -rf "$ka"
	mv "$tmp" "$ka"
}

if [ -f "$stage/.done" ]; then
	stage_keepalived
	echo "$stage"
	exit 0
fi
log "staging $kpkg and tools into $stage"
rm -rf "$stage"
mkdir -p "$stage/debs" "$stage/pkgroot" "$stage/root"
(
	cd "$stage/debs"
	apt-get download -qq "$kpkg" busybox-static ipvsadm iproute2 libc6 libnl-3-200 libnl-genl-3-200 \
		libpopt0 libbpf1 libbsd0 libcap2 libelf1 libmnl0 libmd0 zlib1g 2>&1 | grep -v unsandboxed >&2 || true
)
for deb in "$stage"/debs/*.deb; do dpkg -x "$deb" "$stage/pkgroot"; done
pk=$stage/pkgroot
root=$stage/root

# The kernel: the XZ payload of vmlinuz, uncompressed, boots fastest under TCG.
vmlinuz=$pk/boot/vmlinuz-$kver
off=$(LC_ALL=C grep -obUaP '\xfd7zXZ\x00' "$vmlinuz" | head -1 | cut -d: -f1)
[ -n "$off" ] || { log "no XZ payload in $vmlinuz"; exit 1; }
tail -c +$((off + 1)) "$vmlinuz" | xz -dc --single-stream >"$stage/vmlinux" 2>/dev/null || true
head -c 4 "$stage/vmlinux" | grep -q ELF || { log "extracting vmlinux failed"; exit 1; }

# Tools and the libraries they load, resolved against the unpacked packages:
# a library none of them provides is an error, not a silent host copy.
mkdir -p "$root/bin" "$root/sbin" "$root/lib64" "$root/lib/x86_64-linux-gnu"
cp "$pk/bin/busybox" "$root/bin/busybox"
ipbin=$(ls "$pk"/bin/ip "$pk"/sbin/ip 2>/dev/null | head -1)
cp "$ipbin" "$root/sbin/ip"
cp "$pk/sbin/ipvsadm" "$root/sbin/ipvsadm"
libpath=$pk/lib/x86_64-linux-gnu:$pk/usr/lib/x86_64-linux-gnu
for bin in "$root/sbin/ip" "$root/sbin/ipvsadm"; do
	LD_LIBRARY_PATH=$libpath ldd "$bin" | while read -r name arrow path _; do
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
done

# Modules: the wanted ones and, from each depends=, what they need.
moddir=$pk/lib/modules/$kver
find_mod() { find "$moddir/kernel" -name "$1.ko" -o -name "$1.ko.xz" | head -1; }
declare -A seen=()
order=()
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
for m in $want_modules; do add_mod "$m"; done
cp "$moddir"/modules.builtin* "$moddir"/modules.order "$root/lib/modules/$kver/" 2>/dev/null || true
"$root/bin/busybox" depmod -b "$root" "$kver"
printf '%s\n' "${order[@]}" >"$stage/modules.load"
echo "$kver" >"$stage/kernel.release"
rm -rf "$stage/debs" "$stage/pkgroot"
touch "$stage/.done"
stage_keepalived
log "staged kernel $kver with ${#order[@]} modules"
echo "$stage"
