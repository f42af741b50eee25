package simuplink

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/firstboot/firstboot/internal/testnet"
)

// ipLink is one interface as `ip -d -j link` shows it.
type ipLink struct {
	Name     string `json:"ifname"`
	Master   string `json:"master"`
	NetnsID  *int   `json:"link_netnsid"`
	LinkInfo struct {
		Kind string `json:"info_kind"`
	} `json:"linkinfo"`
}

func links(t testing.TB, ns *testnet.Namespace) []ipLink {
	t.Helper()
	var ls []ipLink
	if err := json.Unmarshal(ns.MustRun(t, "ip", "-d", "-j", "link", "show"), &ls); err != nil {
		t.Fatalf("ip link in %s: %v", ns.Name, err)
	}
	return ls
}

// peers maps the namespace ids of ns to the names of the namespaces they are.
func peers(t testing.TB, ns *testnet.Namespace) map[int]string {
	t.Helper()
	var ids []struct {
		NSID int    `json:"nsid"`
		Name string `json:"name"`
	}
	_ = json.Unmarshal(ns.MustRun(t, "ip", "-j", "netns", "list-id"), &ids)
	m := map[int]string{}
	for _, id := range ids {
		m[id.NSID] = id.Name
	}
	return m
}

// CheckConfined checks, as structure, that whatever the host namespace sends
// ends in the ISP: the host's interfaces are lo, the two links and the bridge
// (whose only ports are the ISP link and firstboot's veths) and firstboot's
// uplink veths into labNetns; its routes lead only through them; and the ISP
// has no route beyond its own networks, forwards nothing and speaks no IPv6.
func (u *Uplink) CheckConfined(t testing.TB, labNetns string) {
	t.Helper()
	ids := peers(t, u.Host)
	for _, l := range links(t, u.Host) {
		peer := ""
		if l.NetnsID != nil {
			peer = ids[*l.NetnsID]
		}
		switch {
		case l.Name == "lo":
		case l.Name == Bridge && l.LinkInfo.Kind == "bridge":
		case l.LinkInfo.Kind == "tun" && l.Master == Bridge: // the host libvirtd's machines
		case (l.Name == Egress || l.Name == Port) && l.LinkInfo.Kind == "veth" && peer == u.ISP.Name:
			if l.Name == Port && l.Master != Bridge {
				t.Errorf("host: %s is not a port of %s", Port, Bridge)
			}
		case strings.HasPrefix(l.Name, "fbu") && l.LinkInfo.Kind == "veth" && peer == labNetns:
			if l.Master != "" && l.Master != Bridge {
				t.Errorf("host: firstboot's veth %s is a port of %s", l.Name, l.Master)
			}
		default:
			t.Errorf("host namespace: interface %s (kind %q, peer namespace %q) leads somewhere other than the simulated uplink or the lab", l.Name, l.LinkInfo.Kind, peer)
		}
	}
	var routes []struct {
		Dst     string `json:"dst"`
		Gateway string `json:"gateway"`
		Dev     string `json:"dev"`
	}
	_ = json.Unmarshal(u.Host.MustRun(t, "ip", "-4", "-j", "route", "show"), &routes)
	for _, r := range routes {
		ok := (r.Dst == "default" && r.Gateway == ISPGateway.String() && r.Dev == Egress) ||
			(r.Dst == HostAddr.Masked().String() && r.Dev == Egress) ||
			strings.HasPrefix(r.Dev, "fbu")
		if !ok {
			t.Errorf("host namespace: route %+v leads somewhere other than the simulated uplink or the lab", r)
		}
	}
	if out := strings.TrimSpace(string(u.Host.MustRun(t, "ip", "-6", "route", "show"))); out != "" {
		t.Errorf("host namespace has IPv6 routes: %s", out)
	}
	ispIDs := peers(t, u.ISP)
	for _, l := range links(t, u.ISP) {
		peer := ""
		if l.NetnsID != nil {
			peer = ispIDs[*l.NetnsID]
		}
		if l.Name != "lo" && !(peer == u.Host.Name && (l.Name == string(Routed) || l.Name == string(Bridged))) {
			t.Errorf("ISP namespace: interface %s (peer namespace %q) is not one of the two links", l.Name, peer)
		}
	}
	if out := strings.TrimSpace(string(u.ISP.MustRun(t, "ip", "-4", "route", "show", "default"))); out != "" {
		t.Errorf("ISP namespace has a default route: %s", out)
	}
	for key, want := range map[string]string{"net.ipv4.ip_forward": "0", "net.ipv6.conf.all.disable_ipv6": "1"} {
		if got := strings.TrimSpace(string(u.ISP.MustRun(t, "sysctl", "-n", key))); got != want {
			t.Errorf("ISP namespace: %s = %s, want %s", key, got, want)
		}
	}
}

// CheckClean checks that no run left anything in the host namespace: no
// firstboot veth or tap, no FBU- chain, forwarding off on the egress, and
// the bridge's only port its uplink.
func (u *Uplink) CheckClean(t testing.TB) {
	t.Helper()
	for _, l := range links(t, u.Host) {
		if strings.HasPrefix(l.Name, "fbu") {
			t.Errorf("host namespace: firstboot's veth %s is left", l.Name)
		}
		if l.Master == Bridge && l.Name != Port || l.LinkInfo.Kind == "tun" {
			t.Errorf("host bridge: port %s is left", l.Name)
		}
	}
	for _, table := range []string{"filter", "nat"} {
		out := string(u.Host.MustRun(t, "iptables", "-w", "-t", table, "-S"))
		if strings.Contains(out, "FBU-") {
			t.Errorf("host namespace: firstboot's %s rules are left:\n%s", table, out)
		}
	}
	for _, key := range []string{"net.ipv4.ip_forward", "net.ipv4.conf." + Egress + ".forwarding"} {
		if got := strings.TrimSpace(string(u.Host.MustRun(t, "sysctl", "-n", key))); got != "0" {
			t.Errorf("host namespace: %s = %s after the runs, want 0", key, got)
		}
	}
}
