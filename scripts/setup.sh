#!/usr/bin/env bash
# Installs everything capprof needs to build and test on a fresh Debian 12 machine.
# Idempotent: safe to run again; slow steps are skipped when already done.
set -euo pipefail

log() { printf 'setup: %s\n' "$*" >&2; }

[ "$(id -u)" -eq 0 ] || { echo "setup: must run as root (apt-get, tracefs mount)" >&2; exit 1; }

export DEBIAN_FRONTEND=noninteractive
PKGS=(
  # Rust eBPF toolchain from Debian: prebuilt core for bpfel-unknown-none, LLVM 22 for bpf-linker.
  rustc-web cargo-web libstd-rust-web-dev-bpf rust-web-src
  llvm-22-dev libpolly-22-dev zlib1g-dev libzstd-dev
  # Workloads and container engines for the tests, and the compose validator.
  busybox-static docker.io podman runc docker-compose containerd crun
  # Real programs for the accuracy tests (tests/tests/corpus.rs, kernel_sites.rs) and clients.
  iputils-ping nginx-light lighttpd haproxy redis-server redis-tools memcached chrony dnsmasq-base
  tcpdump openssh-server openssh-client postgresql curl python3
  # One-shot administration tools of the corpus: copies and archives that keep attributes;
  # vsftpd, a server that tries namespaces; mtr, whose helper has a file capability; setcap
  # for an image whose ping keeps its file capability (tests/tests/containers.rs).
  attr rsync cpio vsftpd mtr-tiny libcap2-bin
  # An independent YAML parser for the injection tests (tests/tests/hostile.rs).
  python3-yaml
  # Real Debian images without a registry (tests/src/lib.rs: debian_python_image).
  mmdebstrap
  # Peer for the benchmark; load generator; the cluster-wide view's aggregation point.
  bpftrace wrk prometheus
)
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  log "installing ${missing[*]}"
  # The servers' maintainer scripts would start them (no systemd here: through init.d); the
  # tests start them themselves, on their own ports.
  own_policy=0
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d && own_policy=1
  fi
  apt-get -o DPkg::Lock::Timeout=600 update -qq
  apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  [ "$own_policy" -eq 0 ] || rm -f /usr/sbin/policy-rc.d
fi

# bpf-linker links the eBPF object; its LLVM must match Debian rustc's (22).
if ! command -v bpf-linker >/dev/null 2>&1 && [ ! -x "$HOME/.cargo/bin/bpf-linker" ]; then
  log "building bpf-linker (about 2 minutes)"
  LLVM_PREFIX=/usr/lib/llvm-22 cargo install --locked bpf-linker --version 0.13.0 --no-default-features --features llvm-22
fi

# Debian's rustc (with a prebuilt BPF core) as a rustup toolchain, used by capprof/build.rs.
if ! rustup toolchain list | grep -q '^debian-bpf'; then
  log "linking Debian's rustc as rustup toolchain debian-bpf"
  rustup toolchain link debian-bpf /usr
fi

# The capability:cap_capable tracepoint lives in tracefs.
if [ ! -d /sys/kernel/tracing/events ]; then
  log "mounting tracefs"
  mount -t tracefs tracefs /sys/kernel/tracing
fi
# Sockets and pid files outlive their daemons here: /run is on the machine's disk, not a tmpfs,
# and a machine can start from a disk whose processes were stopped. dockerd uses any
# /run/containerd/containerd.sock it finds instead of starting its own containerd, and dies
# dialling a dead one: remove what no live daemon owns.
if ! ctr version >/dev/null 2>&1; then
  rm -f /run/containerd/containerd.sock /run/containerd/containerd.sock.ttrpc
fi
if ! docker info >/dev/null 2>&1; then
  pid_file=/run/docker/containerd/containerd.pid
  if [ -f "$pid_file" ] && ! grep -qs containerd "/proc/$(cat "$pid_file")/comm"; then rm -f "$pid_file"; fi
fi
failed() { # name, log
  echo "setup: $1 did not start; the end of $2:" >&2
  tail -n 15 "$2" >&2 || true
  exit 1
}
# Docker Engine for the container tests: no registry and no iptables here (ENVIRONMENT.md).
# Started before the system containerd, so that it runs its own (on /run/docker/containerd).
if ! docker info >/dev/null 2>&1; then
  log "starting dockerd"
  nohup dockerd --iptables=false --ip6tables=false --bridge=none >/var/log/capprof-dockerd.log 2>&1 &
  # Usually ready in 2 s, but it first removes the network sandboxes of containers it lost
  # track of (0.15 s each: a minute for 400 left by a killed engine).
  for _ in $(seq 1 600); do docker info >/dev/null 2>&1 && break; sleep 0.5; done
  docker info >/dev/null 2>&1 || failed dockerd /var/log/capprof-dockerd.log
fi

# containerd for `ctr` (tests/tests/runtimes.rs), beside Docker's own: the kubelet's CRI
# talks to this one in a cluster.
if ! ctr version >/dev/null 2>&1; then
  log "starting containerd"
  nohup containerd >/var/log/capprof-containerd.log 2>&1 &
  for _ in $(seq 1 120); do ctr version >/dev/null 2>&1 && break; sleep 0.5; done
  ctr version >/dev/null 2>&1 || failed containerd /var/log/capprof-containerd.log
fi

# Kubernetes schema validation for the generated manifests (offline, schemas ship in the package).
if ! python3 -c 'import kubernetes_validate' 2>/dev/null; then
  log "installing kubernetes-validate"
  python3 -m pip install --quiet kubernetes-validate
fi
log "ok"
