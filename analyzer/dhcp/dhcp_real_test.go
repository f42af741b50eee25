package dhcp

import (
	"context"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gopacket/gopacket/layers"

	"github.com/firstboot/firstboot/internal/testnet"
	"github.com/firstboot/firstboot/internal/testnet/corpus"
)

// TestRealDHCP runs dnsmasq as DHCP server in one namespace and busybox
// udhcpc (with a hostname and a vendor class) in another, joined by a veth
// pair, captures on the server side and compares every message with tshark.
func TestRealDHCP(t *testing.T) {
	testnet.Require(t, "dnsmasq", "busybox", "tshark", "tcpdump")
	srv, cli := testnet.New(t, "fbt"), testnet.New(t, "fbt")
	testnet.NewVeth(t, testnet.Link{NS: srv, Iface: "fbs0", Addrs: []string{"10.77.0.1/24"}},
		testnet.Link{NS: cli, Iface: "fbc0"})
	dir := t.TempDir()
	capture := testnet.NewCapture(t, srv, "fbs0", filepath.Join(dir, "capture.pcap"))
	srv.Background(t, "dnsmasq", "--no-daemon", "--conf-file=/dev/null", "--port=0", "--pid-file=",
		"--interface=fbs0", "--bind-interfaces", "--no-ping", "--dhcp-authoritative",
		"--dhcp-range=10.77.0.10,10.77.0.50,255.255.255.0,12h",
		"--dhcp-option=option:router,10.77.0.1",
		"--dhcp-option=option:dns-server,10.77.0.1,10.77.0.2",
		"--domain=lab.test",
		"--dhcp-leasefile="+filepath.Join(dir, "leases"))
	// dnsmasq needs a moment to bind; udhcpc retries (-t) cover it.
	const hostname, vendor = "fbguest", "firstboot-vendor/1.0"
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, err := cli.Run(ctx, "busybox", "udhcpc", "-i", "fbc0", "-f", "-q", "-n", "-t", "10", "-T", "1",
		"-s", "/bin/true", "-x", "hostname:"+hostname, "-V", vendor)
	if err != nil {
		t.Fatalf("udhcpc: %v", err)
	}
	// A second real client with another option list: ISC dhclient.
	var dhclientHost string
	if _, err := exec.LookPath("dhclient"); err == nil {
		dhclientHost = "dhclient-guest"
		conf := filepath.Join(dir, "dhclient.conf")
		must(t, os.WriteFile(conf, []byte(`send host-name "`+dhclientHost+`";`+"\n"+`send vendor-class-identifier "isc-vendor";`+"\n"), 0o644))
		leases := filepath.Join(dir, "dhclient.leases")
		// dhclient stays in the foreground (-d) after binding: run it in the
		// background and wait for the lease it writes after the ACK.
		cli.Background(t, "dhclient", "-1", "-d", "-sf", "/bin/true", "-cf", conf,
			"-lf", leases, "-pf", filepath.Join(dir, "dhclient.pid"), "fbc0")
		deadline := time.Now().Add(20 * time.Second)
		for {
			b, _ := os.ReadFile(leases)
			if strings.Contains(string(b), "fixed-address") {
				break
			}
			if time.Now().After(deadline) {
				t.Fatal("dhclient got no lease within 20s")
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	path := capture.Complete(t)

	fields := []string{"dhcp.option.dhcp", "dhcp.id", "dhcp.hw.mac_addr", "dhcp.ip.client", "dhcp.ip.your",
		"dhcp.option.hostname", "dhcp.option.vendor_class_id", "dhcp.option.request_list_item",
		"dhcp.option.requested_ip_address", "dhcp.option.dhcp_server_id", "dhcp.option.ip_address_lease_time",
		"dhcp.option.router", "dhcp.option.domain_name_server", "dhcp.option.domain_name"}
	ts := testnet.FrameFields(t, path, "dhcp", fields...)
	var types []string
	var seeds [][]byte
	sawDhclient := false
	for _, f := range testnet.ReadPcap(t, path) {
		u, ok := f.Packet.Layer(layers.LayerTypeUDP).(*layers.UDP)
		if !ok || (u.SrcPort != 67 && u.SrcPort != 68) {
			continue
		}
		seeds = append(seeds, u.Payload)
		m, err := Parse(u.Payload)
		if err != nil {
			t.Errorf("frame %d: %v", f.Num, err)
			continue
		}
		types = append(types, MessageTypeName(m.MessageType))
		want, ok := ts[f.Num]
		if !ok {
			t.Errorf("frame %d: tshark did not decode it as DHCP", f.Num)
			continue
		}
		col := func(n string) string { return want[slices.Index(fields, n)] }
		check := func(what, got, w string) {
			if got != w {
				t.Errorf("frame %d (%s) %s: got %q, tshark %q", f.Num, MessageTypeName(m.MessageType), what, got, w)
			}
		}
		addr := func(a interface {
			IsValid() bool
			String() string
		}) string {
			if !a.IsValid() {
				return ""
			}
			return a.String()
		}
		check("type", strconv.Itoa(int(m.MessageType)), col("dhcp.option.dhcp"))
		if xid, err := strconv.ParseUint(col("dhcp.id"), 0, 32); err != nil || uint32(xid) != m.XID {
			t.Errorf("frame %d xid %#x, tshark %q", f.Num, m.XID, col("dhcp.id"))
		}
		// tshark lists chaddr, then the MAC inside a type-1 client identifier.
		macs := strings.Split(col("dhcp.hw.mac_addr"), ",")
		check("mac", m.ClientMAC.String(), macs[0])
		if len(m.ClientID) == 7 && m.ClientID[0] == 1 {
			check("client id", net.HardwareAddr(m.ClientID[1:]).String(), macs[len(macs)-1])
		} else if len(macs) > 1 {
			t.Errorf("frame %d: client id %x, tshark saw a MAC in it", f.Num, m.ClientID)
		}
		check("ciaddr", m.ClientIP.String(), col("dhcp.ip.client"))
		check("yiaddr", m.YourIP.String(), col("dhcp.ip.your"))
		check("hostname", m.Hostname, col("dhcp.option.hostname"))
		check("vendor", m.VendorClass, col("dhcp.option.vendor_class_id"))
		var prl []string
		for _, p := range m.ParamList {
			prl = append(prl, strconv.Itoa(int(p)))
		}
		check("param list", strings.Join(prl, ","), col("dhcp.option.request_list_item"))
		check("requested ip", addr(m.RequestedIP), col("dhcp.option.requested_ip_address"))
		check("server id", addr(m.ServerID), col("dhcp.option.dhcp_server_id"))
		lease := ""
		if m.LeaseTime != 0 {
			lease = strconv.Itoa(int(m.LeaseTime))
		}
		check("lease", lease, col("dhcp.option.ip_address_lease_time"))
		check("router", addr(m.Router), col("dhcp.option.router"))
		var dns []string
		for _, d := range m.DNSServers {
			dns = append(dns, d.String())
		}
		check("dns", strings.Join(dns, ","), col("dhcp.option.domain_name_server"))
		check("domain", m.Domain, col("dhcp.option.domain_name"))
		if m.Op == 1 && m.Hostname == dhclientHost {
			sawDhclient = true
			if m.VendorClass != "isc-vendor" {
				t.Errorf("frame %d: dhclient vendor class %q", f.Num, m.VendorClass)
			}
		} else if m.Op == 1 && (m.Hostname != hostname || m.VendorClass != vendor) {
			t.Errorf("frame %d: client sent hostname %q vendor %q, udhcpc was given %q %q", f.Num, m.Hostname, m.VendorClass, hostname, vendor)
		}
	}
	corpus.Save(t, "FuzzDHCP", seeds)
	if dhclientHost != "" && !sawDhclient {
		t.Error("no message from dhclient captured")
	}
	for _, w := range []string{"DISCOVER", "OFFER", "REQUEST", "ACK"} {
		if !slices.Contains(types, w) {
			t.Errorf("no %s captured; got %v", w, types)
		}
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
