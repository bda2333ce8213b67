#!/usr/bin/env bash
# Prepares the QEMU test VM of xtask/src/vm.rs: qemu-system-x86, busybox-static, and Debian's
# Linux 6.1 kernel (kprobes, fentry/fexit, BTF, BPF LSM), which this host's kernel lacks.
# Idempotent: packages are installed only when missing, and the kernel is downloaded only when
# $CACHE/vmlinuz is absent. The kernel is never committed; it lands in the cache at test time.
#
# Result: $CACHE/vmlinuz (plus $CACHE/config and $CACHE/kernel-package, the package name), and
# $CACHE/vmlinux, the same kernel decompressed: QEMU boots that ELF through its PVH entry point,
# skipping the xz decompression that takes ~7 s under TCG (boot: ~4 s instead of ~11 s).
set -euo pipefail

CACHE=${CAPPROF_VM_CACHE:-/var/cache/capprof-vm}
log() { printf 'vm-setup: %s\n' "$*" >&2; }

[ "$(id -u)" -eq 0 ] || { echo "vm-setup: must run as root (apt-get)" >&2; exit 1; }
export DEBIAN_FRONTEND=noninteractive

# qemu-system-x86 pulls seabios and ipxe-qemu as hard dependencies; recommends (GUI, OVMF) are not needed.
# xz-utils decompresses the kernel for the fast PVH boot.
PKGS=(qemu-system-x86 busybox-static xz-utils)
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
updated=0
if [ "${#missing[@]}" -gt 0 ]; then
  log "installing ${missing[*]}"
  apt-get update -qq
  updated=1
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# The uncompressed kernel, from the xz stream inside the bzImage (what the kernel's
# scripts/extract-vmlinux does). Optional: without it the harness boots vmlinuz, only slower.
extract_vmlinux() {
  local off
  off=$(LC_ALL=C grep -obUaP '\xfd7zXZ\x00' "$CACHE/vmlinuz" | head -1 | cut -d: -f1) || true
  # Process substitution, not a pipe: xz stops at the stream's end, and tail's SIGPIPE would fail pipefail.
  if [ -n "$off" ] && xz -dc --single-stream <(tail -c +"$((off + 1))" "$CACHE/vmlinuz") >"$CACHE/vmlinux.new" &&
    [ "$(head -c 4 "$CACHE/vmlinux.new" | od -An -tx1 | tr -d ' ')" = 7f454c46 ]; then
    mv "$CACHE/vmlinux.new" "$CACHE/vmlinux"
  else
    rm -f "$CACHE/vmlinux.new"
    log "could not extract an ELF vmlinux from vmlinuz; the VM will boot vmlinuz (slower)"
  fi
}

if [ -s "$CACHE/vmlinuz" ]; then
  [ -s "$CACHE/vmlinux" ] || extract_vmlinux
  exit 0
fi

# Candidates, newest first: linux-image-6.1.0-N-amd64 and its -unsigned twin (same kernel).
candidates() {
  apt-cache search --names-only '^linux-image-6\.1\.0-[0-9]+-amd64(-unsigned)?$' |
    awk '{print $1}' | sort -rV
}
list=$(candidates)
if [ -z "$list" ] && [ "$updated" -eq 0 ]; then
  apt-get update -qq
  list=$(candidates)
fi
[ -n "$list" ] || { echo "vm-setup: apt-cache lists no linux-image-6.1.0-*-amd64 package" >&2; exit 1; }

mkdir -p "$CACHE"
tmp=$(mktemp -d "$CACHE/tmp.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
chown _apt "$tmp" 2>/dev/null || true # lets apt-get download run sandboxed, without a warning

# A listed version may have left the mirror: take the newest one that downloads.
pkg=
for cand in $list; do
  log "downloading $cand"
  if (cd "$tmp" && apt-get download -qq "$cand" >/dev/null); then pkg=$cand; break; fi
done
[ -n "$pkg" ] || { echo "vm-setup: no linux-image-6.1.0 package could be downloaded" >&2; exit 1; }

# Only ./boot is needed (vmlinuz, config): skip the ~400 MB of modules. Debian's System.map is a
# stub; the VM's /proc/kallsyms has the real symbols.
mkdir "$tmp/x"
dpkg-deb --fsys-tarfile "$tmp"/*.deb | tar -x -C "$tmp/x" --wildcards './boot/*'
cp "$tmp"/x/boot/config-* "$CACHE/config"
echo "$pkg" >"$CACHE/kernel-package"
cp "$tmp"/x/boot/vmlinuz-* "$CACHE/vmlinuz.new"
mv "$CACHE/vmlinuz.new" "$CACHE/vmlinuz" # after the rest, so a half-done run is retried
rm -f "$CACHE/vmlinux"                       # from an older kernel, if any
extract_vmlinux
log "kernel $pkg ready at $CACHE/vmlinuz"
