#!/usr/bin/env bash
# Regenerates analyzer/testdata/seed-lan.pcap, the capture the analyzer's
# fuzz targets and TestGoldenLAN start from: one frame of each LAN announcement
# from TestRealLAN's capture (real avahi, nmbd, wsdd, upnpc, dig, arping,
# dhclient -6), whole proxy, STARTTLS and HelloRetryRequest connections and
# DTLS and VXLAN datagrams from TestRealProxiesAndUpgrades' capture, and the
# first frames of Zeek's GTP (outer fragments), VXLAN, PPPoE-over-QinQ, SNAP and
# MPLS captures. Needs root and what scripts/provision.sh installs.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$repo"
FIRSTBOOT_KEEP_CAPTURE=$work/lan.pcap go test -count=1 -run 'TestRealLAN$' ./analyzer/crosscheck
FIRSTBOOT_KEEP_CAPTURE=$work/proxies.pcap go test -count=1 -run 'TestRealProxiesAndUpgrades$' ./analyzer/crosscheck

first() { tshark -r "$1" -Y "$2" -T fields -e "$3" 2>/dev/null | head -"${4:-1}"; }
frames=()
for f in "arp.src.proto_ipv4==0.0.0.0" "arp.src.proto_ipv4==arp.dst.proto_ipv4" "nbns.flags.opcode==5" \
  "nbns.flags.opcode==0" "browser.command==1" "ssdp" "udp.dstport==3702" "dhcpv6.msgtype==1" "dhcpv6.msgtype==7" \
  "mdns && dns.flags.response==0 && dns.count.auth_rr>0" "mdns && dns.flags.response==1" "llmnr" "igmp.type==0x22" \
  "icmpv6.type==143" "icmpv6.type==135" "icmpv6.type==133"; do
  frames+=("$(first "$work/lan.pcap" "$f" frame.number)")
done
editcap -r "$work/lan.pcap" "$work/1.pcap" "${frames[@]}"
streams=()
for p in 1080 3128 25 143 5222 8443; do
  streams+=("tcp.stream==$(first "$work/proxies.pcap" "tcp.port==$p" tcp.stream)")
done
filter=$(IFS='|'; echo "${streams[*]}" | sed 's/|/ || /g')
tshark -r "$work/proxies.pcap" -Y "$filter" -w "$work/2.pcap"
editcap -r "$work/proxies.pcap" "$work/3.pcap" $(first "$work/proxies.pcap" "udp.port==4433" frame.number 4) \
  $(first "$work/proxies.pcap" "udp.port==4789" frame.number 6)
i=4
for c in gtp-outer-ip-frag:8 vxlan-http:4 pppoe-over-qinq:6 snap-tcp:4 mixed-vlan-mpls:6; do
  zcat "analyzer/crosscheck/testdata/zeek/${c%%:*}.pcap.gz" >"$work/z.pcap"
  editcap -r "$work/z.pcap" "$work/$i.pcap" "1-${c##*:}"
  i=$((i + 1))
done
mergecap -F pcap -w analyzer/testdata/seed-lan.pcap "$work"/[0-9].pcap
capinfos -c analyzer/testdata/seed-lan.pcap
