#!/usr/bin/env bash
# Installs everything firstboot needs on a fresh Debian 12 (bookworm) machine.
# Used by the README's set-up, by .ci/run and by the Vagrantfile: one script, so a
# green CI means a new user's machine works too. Idempotent; run as root.
set -euo pipefail

if [ "$(id -u)" != 0 ]; then
  echo "provision.sh: run as root (sudo scripts/provision.sh)" >&2
  exit 1
fi

export DEBIAN_FRONTEND=noninteractive
repo=$(cd "$(dirname "$0")/.." && pwd)

# Packages, grouped by what needs them.
pkgs=(
  # build
  make git ca-certificates gcc
  # benchmarks (GNU time measures peak memory) and report rendering checks
  time chromium
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
)

missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  # tshark asks whether non-root users may capture; answer it up front.
  echo "wireshark-common wireshark-common/install-setuid boolean false" | debconf-set-selections
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# What libvirt-daemon-system would have done (we avoid it: it drags in systemd
# upgrades and the NAT 'default' network).
mkdir -p /var/log/libvirt/qemu /var/lib/libvirt/qemu /var/run/libvirt
getent group libvirt-qemu >/dev/null || groupadd --system libvirt-qemu
getent passwd libvirt-qemu >/dev/null || useradd --system -g libvirt-qemu -d /var/lib/libvirt -s /usr/sbin/nologin libvirt-qemu
getent group libvirt >/dev/null || groupadd --system libvirt
qemu_conf=/etc/libvirt/qemu.conf
if [ -f "$qemu_conf" ] && ! grep -q '^# firstboot' "$qemu_conf"; then
  cat >>"$qemu_conf" <<'CONF'
# firstboot: QEMU runs as root so it can read images anywhere and use the lab's taps.
user = "root"
group = "root"
dynamic_ownership = 0
CONF
fi
# Never let the NAT 'default' network start (network rule: nothing leaves the machine).
rm -f /etc/libvirt/qemu/networks/autostart/default.xml

# Go toolchain: the machine image ships one; say so clearly when it does not.
if ! command -v go >/dev/null 2>&1; then
  if [ -x /usr/local/go/bin/go ]; then export PATH=$PATH:/usr/local/go/bin; else
    apt-get install -y -qq --no-install-recommends golang-go
  fi
fi
(cd "$repo" && go mod download)

echo "provision.sh: done"
