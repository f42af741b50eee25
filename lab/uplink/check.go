package uplink

import (
	"context"
	"fmt"
	"os"
	"strings"
)

// Finding is one check of what a real-internet mode needs (firstboot doctor
// prints them).
type Finding struct {
	Check  string // short name
	OK     bool
	Detail string
	Fix    string // what to do when not OK
}

// CheckRouted checks what routed mode needs in the namespace firstboot runs
// in: a way out (the default route, or the egress interface named), the nat
// table, resolvers for the DNS forwarder; it reports the forwarding settings
// a run will change and what dead runs left behind.
func CheckRouted(ctx context.Context, egress string) []Finding {
	var fs []Finding
	e, err := FindEgress(egress)
	if err != nil {
		fs = append(fs, Finding{Check: "egress", Detail: err.Error(),
			Fix: "connect this host (a default route), or name the interface to leave by: --egress IFACE or egress: in firstboot.yaml"})
	} else {
		public := "public address unknown (private space: another NAT follows)"
		if p := e.Public(); p.IsValid() {
			public = "public address " + p.String()
		}
		fs = append(fs, Finding{Check: "egress", OK: true, Detail: fmt.Sprintf("%s via %v, address %v; %s", e.Interface, e.Gateway, e.Addr, public)})
		global, _ := readConf("ipv4", "all", "forwarding")
		own, _ := readConf("ipv4", e.Interface, "forwarding")
		fs = append(fs, Finding{Check: "forwarding", OK: true, Detail: fmt.Sprintf(
			"ip_forward=%s, %s forwarding=%s: a routed run switches forwarding on for %s and its own veth only, and restores it after the last run",
			global, e.Interface, own, e.Interface)})
	}
	if _, err := iptables(ctx, "-t", "nat", "-S", "POSTROUTING"); err != nil {
		fs = append(fs, Finding{Check: "nat", Detail: err.Error(), Fix: "apt-get install iptables (scripts/provision.sh); the kernel needs nf_nat (modprobe nf_nat)"})
	} else {
		detail := "iptables nat table available"
		if pol := forwardPolicy(ctx); pol == "DROP" {
			detail += "; FORWARD policy DROP (Docker sets it): a run's own chain accepts its guests' traffic ahead of it"
		}
		fs = append(fs, Finding{Check: "nat", OK: true, Detail: detail})
	}
	if rs, err := Resolvers("/etc/resolv.conf"); err != nil {
		fs = append(fs, Finding{Check: "resolvers", Detail: err.Error(), Fix: "the lab's DNS forwarder asks the resolvers in /etc/resolv.conf: configure one"})
	} else {
		var s []string
		for _, r := range rs {
			s = append(s, r.String())
		}
		fs = append(fs, Finding{Check: "resolvers", OK: true, Detail: "guests' DNS is forwarded to " + strings.Join(s, ", ")})
	}
	return append(fs, leftoverFinding(ctx))
}

// CheckBridged checks what bridged mode with firstboot's own libvirtd needs in
// the namespace firstboot runs in: the host bridge up with an uplink port
// that has carrier, and no bridge netfilter that would drop its frames.
func CheckBridged(ctx context.Context, bridge string) []Finding {
	var fs []Finding
	if bridge == "" {
		var bridges []string
		if ls, err := links(""); err == nil {
			for _, l := range ls {
				if l.Kind == "bridge" {
					bridges = append(bridges, l.Name)
				}
			}
		}
		have := "this host has no bridge"
		if len(bridges) > 0 {
			have = "bridges here: " + strings.Join(bridges, ", ")
		}
		return append(fs, Finding{Check: "bridge", Detail: "no host bridge named; " + have,
			Fix: "create a bridge on the wired uplink (README, \"Bridged mode\") and name it: --bridge BR or bridge: in firstboot.yaml"})
	}
	st := bridgeState("", bridge, "")
	f := Finding{Check: "bridge", OK: st.Up, Detail: st.Detail}
	if !st.Up {
		f.Fix = "the bridge needs the wired interface as a port, up, with a cable in (README, \"Bridged mode\")"
	}
	fs = append(fs, f)
	if v, err := os.ReadFile("/proc/sys/net/bridge/bridge-nf-call-iptables"); err == nil && strings.TrimSpace(string(v)) == "1" && forwardPolicy(ctx) == "DROP" {
		fs = append(fs, Finding{Check: "br_netfilter", Detail: "bridged frames pass iptables FORWARD, whose policy is DROP (Docker sets it): the machine would get no address",
			Fix: "sysctl -w net.bridge.bridge-nf-call-iptables=0, or iptables -I FORWARD -m physdev --physdev-is-bridged -j ACCEPT"})
	}
	return append(fs, leftoverFinding(ctx))
}

// forwardPolicy is the filter table's FORWARD policy ("" when unknown).
func forwardPolicy(ctx context.Context) string {
	out, err := iptables(ctx, "-S", "FORWARD")
	if err != nil {
		return ""
	}
	for _, line := range strings.Split(string(out), "\n") {
		if p, ok := strings.CutPrefix(line, "-P FORWARD "); ok {
			return strings.TrimSpace(p)
		}
	}
	return ""
}

func leftoverFinding(ctx context.Context) Finding {
	lo, err := FindLeftovers(ctx)
	switch {
	case err != nil:
		return Finding{Check: "leftovers", Detail: err.Error(), Fix: "check iptables and ip work here"}
	case lo.Empty():
		return Finding{Check: "leftovers", OK: true, Detail: "nothing left by earlier runs"}
	}
	return Finding{Check: "leftovers", Detail: fmt.Sprintf("left by runs that died: veths %v, chains %v, forwarding on %v", lo.Veths, lo.Chains, lo.Forwarding),
		Fix: "the next routed or bridged run removes them; by hand: ip link del VETH, iptables -F/-X the chains"}
}
