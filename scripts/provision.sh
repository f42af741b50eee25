#!/usr/bin/env bash
# Brings a Debian 12 (bookworm) machine to what firstboot needs. `make demo`
# and `make test` run it first, .ci/run and the Vagrantfile too: one script,
# so a green CI means a new user's machine works. Idempotent, and quick when
# nothing is missing: it checks first (no apt, nothing written) and needs root
# only when something must be installed or set up.
set -euo pipefail

export DEBIAN_FRONTEND=noninteractive
repo=$(cd "$(dirname "$0")/.." && pwd)

# Packages, grouped by what needs them.
pkgs=(
  # build
  make git ca-certificates gcc
  # benchmarks (GNU time measures peak memory; iperf3 loads the capture
  # benchmark's link) and report rendering checks
  time iperf3 chromium
  # analyzer tests and benchmarks: independent readers and real clients
  tshark tcpdump p0f dnsutils curl openssl chrony iproute2 isc-dhcp-client
  # lab: libvirt + QEMU without systemd (see shared/LAB-FACTS.md); iptables must
  # be present before libvirtd starts, and the REDIRECT to the catch-all needs it too.
  iptables qemu-system-x86 qemu-utils libvirt-daemon libvirt-daemon-driver-qemu
  libvirt-clients dnsmasq-base ovmf
  # emulated TPM 2.0 (libvirt starts swtpm) and ISO images for CD-ROM media
  swtpm swtpm-tools xorriso
  # test guest and Debian images (binutils: readelf, the image tests' independent
  # reader of module dependencies and of qemu-ga's shared libraries)
  busybox-static cpio xz-utils zstd debootstrap binutils
  # a VNC viewer independent of firstboot's, for the --display tests
  vncsnapshot
  # reading the screen: wait_text and click_text run the tesseract command
  tesseract-ocr
  # the analyzer's real LAN announcers and proxies (analyzer/crosscheck), run by
  # the tests in network namespaces of their own: mDNS (avahi-daemon), NetBIOS
  # (samba's nmbd), WS-Discovery (wsdd), SSDP (miniupnpc's upnpc), ARP probes
  # (arping), HTTP CONNECT and SOCKS proxies (tinyproxy, dante). Installed
  # without starting their services (see no_service_starts).
  avahi-daemon samba wsdd miniupnpc iputils-arping tinyproxy dante-server
  # campaigns on many hosts: the tests start their own PostgreSQL server
  postgresql
)

qemu_conf=/etc/libvirt/qemu.conf
nat_autostart=/etc/libvirt/qemu/networks/autostart/default.xml

# missing_packages prints the packages of pkgs that are not installed (one
# dpkg-query for all of them).
missing_packages() {
  local installed
  # dpkg-query fails when one is unknown: the others are still listed.
  installed=$(dpkg-query -W -f='${Package} ${db:Status-Status}\n' "${pkgs[@]}" 2>/dev/null | awk '$2 == "installed" {print $1}' || true)
  for p in "${pkgs[@]}"; do
    grep -qxF "$p" <<<"$installed" || echo "$p"
  done
}

# libvirt_ready says whether what libvirt-daemon-system would have done is
# done (we avoid that package: it drags in systemd upgrades and the NAT
# 'default' network).
libvirt_ready() {
  [ -d /var/log/libvirt/qemu ] && [ -d /var/lib/libvirt/qemu ] && [ -d /var/run/libvirt ] &&
    getent group libvirt-qemu >/dev/null && getent passwd libvirt-qemu >/dev/null &&
    getent group libvirt >/dev/null &&
    { [ ! -f "$qemu_conf" ] || grep -q '^# firstboot' "$qemu_conf"; } &&
    [ ! -e "$nat_autostart" ]
}

# no_service_starts runs a command (apt-get install) with a policy-rc.d that
# forbids starting services, which Debian's maintainer scripts ask: the
# packages above would otherwise start avahi-daemon, nmbd, wsdd and the
# proxies on the host, announcing it on its real network.
no_service_starts() {
  local policy=/usr/sbin/policy-rc.d own=0 rc=0
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod 755 "$policy" && own=1
  fi
  "$@" || rc=$?
  if [ "$own" = 1 ]; then rm -f "$policy"; fi
  return "$rc"
}

setup_libvirt() {
  mkdir -p /var/log/libvirt/qemu /var/lib/libvirt/qemu /var/run/libvirt
  getent group libvirt-qemu >/dev/null || groupadd --system libvirt-qemu
  getent passwd libvirt-qemu >/dev/null || useradd --system -g libvirt-qemu -d /var/lib/libvirt -s /usr/sbin/nologin libvirt-qemu
  getent group libvirt >/dev/null || groupadd --system libvirt
  if [ -f "$qemu_conf" ] && ! grep -q '^# firstboot' "$qemu_conf"; then
    cat >>"$qemu_conf" <<'CONF'
# firstboot: QEMU runs as root so it can read images anywhere and use the lab's taps.
user = "root"
group = "root"
dynamic_ownership = 0
CONF
  fi
  # Never let the NAT 'default' network start (network rule: nothing leaves the machine).
  rm -f "$nat_autostart"
}

mapfile -t missing < <(missing_packages)
if [ ${#missing[@]} -gt 0 ] || ! libvirt_ready; then
  if [ "$(id -u)" != 0 ]; then
    {
      echo "provision.sh: this machine lacks what firstboot needs:"
      [ ${#missing[@]} -eq 0 ] || echo "  Debian packages: ${missing[*]}"
      libvirt_ready || echo "  libvirt's set-up without systemd (users, directories, $qemu_conf)"
      echo "Installing needs root: run the same command as root (sudo make demo, sudo make test or sudo scripts/provision.sh)."
    } >&2
    exit 1
  fi
  if [ ${#missing[@]} -gt 0 ]; then
    echo "provision.sh: installing ${missing[*]}"
    # tshark asks whether non-root users may capture; answer it up front.
    echo "wireshark-common wireshark-common/install-setuid boolean false" | debconf-set-selections
    # iperf3 asks whether to run a server at boot: no.
    echo "iperf3 iperf3/start_daemon boolean false" | debconf-set-selections
    apt-get update -qq
    no_service_starts apt-get install -y -qq --no-install-recommends "${missing[@]}"
  fi
  setup_libvirt
fi

# Go: the machine image ships it in /usr/local/go (sudo's PATH may not have it).
if ! command -v go >/dev/null 2>&1 && [ -x /usr/local/go/bin/go ]; then
  export PATH=$PATH:/usr/local/go/bin
fi
want=$(awk '$1 == "go" {print $2; exit}' "$repo/go.mod")
if ! command -v go >/dev/null 2>&1; then
  echo "provision.sh: Go $want or newer is needed (go.mod) and none is installed: install it in /usr/local/go (Debian 12's golang-go is 1.19, too old)" >&2
  exit 1
fi
# Modules: nothing is fetched when the module cache has them all.
if ! (cd "$repo" && go mod download); then
  echo "provision.sh: could not download the Go modules with $(go version) (go.mod wants Go $want or newer and the Go module proxy)" >&2
  exit 1
fi

# Node and DuckDB (from the npm registry, pinned in scripts/parquet-reader):
# the export tests' independent Parquet reader. A machine whose Node comes
# with its own npm keeps it (Debian's npm package would conflict with it).
reader="$repo/scripts/parquet-reader"
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1 || [ ! -d "$reader/node_modules/@duckdb/node-api" ]; then
  if [ "$(id -u)" != 0 ]; then
    echo "provision.sh: Node, npm or DuckDB for the export tests is missing: run the same command as root" >&2
    exit 1
  fi
  if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
    echo "provision.sh: installing nodejs npm"
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends nodejs npm
  fi
  echo "provision.sh: installing DuckDB for node in $reader"
  (cd "$reader" && npm ci --no-audit --no-fund --loglevel=error)
fi

echo "provision.sh: machine ready"
