#!/bin/sh
# lab-image.sh - build (or reuse) the emulated Xen host image from Debian
# packages.  Everything lands in $SHAREMIG_XEN_CACHE (default:
# <source>/build/xen-lab), which is never committed:
#
#   debs/            the downloaded .deb files (apt-get download)
#   root/            all of them unpacked with dpkg -x
#   xen.elf          the hypervisor, gunzipped from /boot/xen-4.17-amd64.gz
#   vmlinuz          Debian's kernel, used for dom0 and for the PVH domU
#   modules/         the dom0 kernel modules the lab needs, decompressed
#                    (busybox cannot unpack the kernel's .ko.xz), listed in
#                    load order in modules/load-order
#   image.stamp      written last; its presence means the image is complete
#
# Install steps (a CI machine starts clean): apt-get update, then
# apt-get install qemu-system-x86 busybox-static cpio xz-utils kmod.
set -eu

SRC=$(cd "$(dirname "$0")/../.." && pwd)
CACHE=${SHAREMIG_XEN_CACHE:-$SRC/build/xen-lab}
XENVER=4.17

log() { echo "lab-image: $*" >&2; }

need_host_tools() {
	missing=
	for t in qemu-system-x86_64 cpio xz dpkg-deb apt-get depmod; do
		command -v "$t" >/dev/null 2>&1 || missing="$missing $t"
	done
	[ -x /bin/busybox ] || missing="$missing busybox-static"
	if [ -n "$missing" ]; then
		log "installing host tools (missing:$missing)"
		DEBIAN_FRONTEND=noninteractive apt-get install -y \
		    --no-install-recommends qemu-system-x86 busybox-static \
		    cpio xz-utils kmod >/dev/null || {
			apt-get update >/dev/null
			DEBIAN_FRONTEND=noninteractive apt-get install -y \
			    --no-install-recommends qemu-system-x86 \
			    busybox-static cpio xz-utils kmod >/dev/null
		}
	fi
}

# Bump when the image's contents change, so cached images are rebuilt.
IMAGE_VERSION=image-v2
if grep -qx "$IMAGE_VERSION" "$CACHE/image.stamp" 2>/dev/null &&
    [ "${1:-}" != "--force" ]; then
	need_host_tools
	exit 0
fi
need_host_tools
mkdir -p "$CACHE/debs"
cd "$CACHE/debs"

# The kernel package is whatever linux-image-amd64 points at today.
KPKG=$(apt-cache depends linux-image-amd64 2>/dev/null |
    awk '/Depends: linux-image-[0-9]/ { print $2; exit }')
if [ -z "$KPKG" ]; then
	apt-get update >/dev/null
	KPKG=$(apt-cache depends linux-image-amd64 |
	    awk '/Depends: linux-image-[0-9]/ { print $2; exit }')
fi
PKGS="xen-hypervisor-$XENVER-amd64 xen-utils-$XENVER xen-utils-common
    xenstore-utils libxenmisc$XENVER libxencall1 libxendevicemodel1
    libxenevtchn1 libxenforeignmemory1 libxengnttab1 libxenhypfs1
    libxenstore4 libxentoolcore1 libxentoollog1 libyajl2 busybox-static
    libgcc-s1 $KPKG"
log "downloading:" $PKGS
# shellcheck disable=SC2086
apt-get download $PKGS >/dev/null 2>&1 || {
	apt-get update >/dev/null
	# shellcheck disable=SC2086
	apt-get download $PKGS >/dev/null
}

rm -rf "$CACHE/root" "$CACHE/modules"
mkdir -p "$CACHE/root" "$CACHE/modules"
for d in "$CACHE"/debs/*.deb; do
	dpkg -x "$d" "$CACHE/root"
done
gunzip -c "$CACHE/root/boot/xen-$XENVER-amd64.gz" > "$CACHE/xen.elf"
cp "$CACHE"/root/boot/vmlinuz-* "$CACHE/vmlinuz"

# Modules dom0 needs: xenfs and the xen device drivers for the toolstack,
# netback + bridge + e1000 (the emulated NIC) for the two-host setup.  Dependencies come from
# modules.dep, loaded depth first.
KVER=$(ls "$CACHE/root/lib/modules")
MDIR=$CACHE/root/lib/modules/$KVER
# The package ships no modules.dep (depmod runs at install time).
depmod -b "$CACHE/root" "$KVER"
WANT="xenfs xen-privcmd xen-evtchn xen-gntdev xen-gntalloc xen-netback
    xen-blkback bridge e1000"
: > "$CACHE/modules/load-order"
add_mod() {
	local path deps dep dn base
	path=$(awk -F: -v m="$1" '{
		n = $1; sub(/.*\//, "", n); sub(/\.ko(\.xz)?$/, "", n);
		gsub(/_/, "-", n); mm = m; gsub(/_/, "-", mm);
		if (n == mm) { print $1; exit } }' "$MDIR/modules.dep")
	if [ -z "$path" ]; then
		log "module $1 not found (built in?)"
		return 0
	fi
	deps=$(awk -F: -v p="$path" '$1 == p { print $2; exit }' \
	    "$MDIR/modules.dep")
	for dep in $deps; do
		dn=$(basename "$dep"); dn=${dn%.xz}; dn=${dn%.ko}
		add_mod "$dn"
	done
	base=$(basename "$path"); base=${base%.xz}
	grep -qx "$base" "$CACHE/modules/load-order" && return 0
	case "$path" in
	*.xz)	xz -dc "$MDIR/$path" > "$CACHE/modules/$base" ;;
	*)	cp "$MDIR/$path" "$CACHE/modules/$base" ;;
	esac
	echo "$base" >> "$CACHE/modules/load-order"
}
for m in $WANT; do
	add_mod "$m"
done
log "modules: $(tr '\n' ' ' < "$CACHE/modules/load-order")"
echo "$IMAGE_VERSION" > "$CACHE/image.stamp"
log "image ready in $CACHE"
