package crosscheck

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/firstboot/firstboot/analyzer"
	"github.com/firstboot/firstboot/internal/testnet"
	"github.com/firstboot/firstboot/results/schema"
)

// TestRealLAN runs the programs that make a Linux machine announce itself on
// its LAN, inside a test namespace joined to a "LAN" namespace by a veth
// pair, captures the LAN side and checks every LAN announcement firstboot
// reads against tshark's dissection and against what the programs were
// told to announce: avahi-daemon (mDNS probes and announcements: host name,
// HINFO, a service with TXT keys), samba's nmbd (NetBIOS name registrations,
// browser host announcements), nmblookup (an NBNS query), wsdd (WS-Discovery
// Hello), upnpc (SSDP M-SEARCH), dig (an mDNS and an LLMNR query), arping
// (ARP probe, announcement, gratuitous reply), ISC dhclient -6 against
// dnsmasq (DHCPv6 with a client FQDN), and the kernel's own router
// solicitations, duplicate address detection and IGMP/MLD reports.
func TestRealLAN(t *testing.T) {
	testnet.Require(t, "tcpdump", "tshark", "avahi-daemon", "nmbd", "nmblookup", "wsdd", "upnpc", "dig", "arping",
		"dnsmasq", "dhclient", "mount")
	dir := t.TempDir()
	host, lan := testnet.New(t, "fbl"), testnet.New(t, "fbl")
	testnet.NewVeth(t, testnet.Link{NS: lan, Iface: "fbm0", Addrs: []string{"10.79.0.1/24", "fd79::1/64"}},
		testnet.Link{NS: host, Iface: "fbl0", Addrs: []string{"10.79.0.2/24"}, MAC: "02:79:00:00:00:02"})
	// Multicast leaves through the LAN link (the namespace has no default route).
	host.MustRun(t, "ip", "route", "add", "224.0.0.0/4", "dev", "fbl0")
	capture := testnet.NewCapture(t, lan, "fbm0", filepath.Join(dir, "lan.pcap"))

	// The LAN's DHCPv6 server and router advertisements.
	lan.Background(t, "dnsmasq", "--no-daemon", "--conf-file=/dev/null", "--port=0", "--pid-file=",
		"--interface=fbm0", "--bind-interfaces", "--enable-ra", "--dhcp-range=fd79::100,fd79::1ff,64,1h",
		"--dhcp-leasefile="+filepath.Join(dir, "dnsmasq.leases"))

	// avahi-daemon, without D-Bus, with a private /run and a services
	// directory of its own (ip netns exec gives each command a private
	// mount namespace, so the mounts stay there).
	write(t, filepath.Join(dir, "avahi.conf"), "[server]\nhost-name=fbhost\ndomain-name=local\nallow-interfaces=fbl0\nenable-dbus=no\n"+
		"[publish]\npublish-hinfo=yes\npublish-workstation=yes\n")
	svc := filepath.Join(dir, "services")
	write(t, filepath.Join(svc, "printer.service"), `<?xml version="1.0" standalone='no'?>
<!DOCTYPE service-group SYSTEM "avahi-service.dtd">
<service-group><name>Firstboot Test Printer</name>
<service><type>_ipp._tcp</type><port>631</port><txt-record>ty=Firstboot Model 9000</txt-record><txt-record>note=lab</txt-record></service>
</service-group>
`)
	host.Background(t, "sh", "-c", "mount -t tmpfs tmpfs /run && mkdir /run/avahi-daemon && mount --bind "+svc+
		" /etc/avahi/services && exec avahi-daemon --no-drop-root --no-chroot --no-rlimits -f "+filepath.Join(dir, "avahi.conf"))

	// nmbd: NetBIOS names FBHOST and the workgroup FBWORKGROUP, every
	// directory of its own.
	smb := filepath.Join(dir, "smb")
	conf := "[global]\nnetbios name = FBHOST\nworkgroup = FBWORKGROUP\nserver string = Firstboot test host\n" +
		"interfaces = fbl0\nbind interfaces only = yes\nlocal master = yes\npreferred master = yes\nos level = 65\n"
	for _, d := range []string{"lock", "state", "cache", "pid", "private", "log"} {
		if err := os.MkdirAll(filepath.Join(smb, d), 0o755); err != nil {
			t.Fatal(err)
		}
		name := d + " directory"
		switch d {
		case "private":
			name = "private dir"
		case "log":
			conf += "log file = " + filepath.Join(smb, d, "log.%m") + "\n"
			continue
		}
		conf += name + " = " + filepath.Join(smb, d) + "\n"
	}
	smbConf := filepath.Join(dir, "smb.conf")
	write(t, smbConf, conf)
	host.Background(t, "nmbd", "-F", "--no-process-group", "-s", smbConf)
	host.Background(t, "wsdd", "-i", "fbl0", "-4", "-n", "FBHOST", "-w", "FBWORKGROUP")

	// DHCPv6 with a client FQDN, once the link-local address is usable.
	dhconf := filepath.Join(dir, "dhclient6.conf")
	write(t, dhconf, "send fqdn.fqdn \"fbhost.lab.test.\";\nsend fqdn.server-update off;\n")
	time.Sleep(3 * time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Second)
	defer cancel()
	if out, err := host.Run(ctx, "dhclient", "-6", "-1", "-v", "-sf", "/bin/true", "-cf", dhconf,
		"-lf", filepath.Join(dir, "dhclient6.leases"), "-pf", filepath.Join(dir, "dhclient6.pid"), "fbl0"); err != nil {
		t.Fatalf("dhclient -6: %v\n%s", err, out)
	}
	// One-shot queries and ARP announcements. They expect no answer.
	for _, c := range [][]string{
		{"nmblookup", "-s", smbConf, "-B", "10.79.0.255", "WPAD"},
		{"upnpc", "-m", "fbl0", "-l"},
		{"dig", "+tries=1", "+time=1", "-p", "5353", "@224.0.0.251", "fbpeer.local"},
		{"dig", "+tries=1", "+time=1", "+norecurse", "-p", "5355", "@224.0.0.252", "wpad"},
		{"arping", "-D", "-c", "1", "-w", "1", "-I", "fbl0", "10.79.0.9"},
		{"arping", "-U", "-c", "1", "-I", "fbl0", "10.79.0.2"},
		{"arping", "-A", "-c", "1", "-I", "fbl0", "10.79.0.2"},
	} {
		_, _ = host.Run(ctx, c[0], c[1:]...)
	}
	time.Sleep(2 * time.Second) // the last retransmissions
	path := capture.Complete(t)
	if keep := os.Getenv("FIRSTBOOT_KEEP_CAPTURE"); keep != "" {
		b, _ := os.ReadFile(path)
		_ = os.WriteFile(keep, b, 0o644)
	}

	a, err := analyzer.AnalyzeFile(context.Background(), path, analyzer.Options{})
	if err != nil {
		t.Fatal(err)
	}
	ids := map[string][]string{} // kind → values the host revealed
	for _, id := range a.LANAnnouncements {
		if id.Host {
			ids[id.Kind] = append(ids[id.Kind], id.Value)
		}
	}
	want := map[string][]string{
		"hostname":         {"fbhost.local"},
		"service_type":     {"_ipp._tcp.local", "_workstation._tcp.local"},
		"service_instance": {"firstboot test printer._ipp._tcp.local"},
		"txt":              {"ty=Firstboot Model 9000", "note=lab"},
		"hinfo":            {"X86_64 LINUX"},
		"netbios_name":     {"FBHOST<00>", "FBHOST<20>", "FBHOST"},
		"netbios_group":    {"FBWORKGROUP<00>"},
		"query":            {"WPAD<00>", "fbpeer.local", "wpad", "urn:schemas-upnp-org:device:InternetGatewayDevice:1"},
		"address":          {"10.79.0.9", "10.79.0.2"},
		"group":            {"224.0.0.251", "ff02::fb"},
		"os_version":       {"6.1"},
		"comment":          {"Firstboot test host"},
		"location":         {},
		"endpoint":         {},
	}
	if a.Host.MAC != "02:79:00:00:00:02" && !slices.Contains(ids["mac"], "02:79:00:00:00:02") {
		t.Errorf("the host's MAC is not among the identifiers: %v (host %+v)", ids["mac"], a.Host)
	}
	for k, vs := range want {
		if len(ids[k]) == 0 {
			t.Errorf("no %s identifier from the host", k)
		}
		for _, v := range vs {
			if !slices.Contains(ids[k], v) {
				t.Errorf("%s %q missing from the host's identifiers %q", k, v, ids[k])
			}
		}
	}
	if !slices.Contains(ids["fqdn"], "fbhost.lab.test") || len(ids["duid"]) == 0 {
		t.Errorf("DHCPv6: fqdn %q duid %q", ids["fqdn"], ids["duid"])
	}

	// Against tshark, value by value (sets of distinct values).
	byProto := func(proto, kind string, msgs ...string) []string {
		var out []string
		for _, l := range a.LAN {
			if l.Proto != proto || len(msgs) > 0 && !slices.Contains(msgs, l.Msg) {
				continue
			}
			for _, id := range l.Identifiers {
				if k, v, _ := strings.Cut(id, "="); k == kind || kind == "" {
					out = append(out, v)
				}
			}
		}
		return sortedSet(lower(out))
	}
	msgKinds := func(proto string) []string {
		var out []string
		for _, l := range a.LAN {
			if l.Proto == proto {
				out = append(out, l.Msg)
			}
		}
		return sortedSet(out)
	}
	ts := func(field, filter string) []string { return testnet.FieldSet(t, path, field, filter) }
	names := func(kinds ...string) []string {
		var out []string
		for _, k := range kinds {
			out = append(out, byProto("nbns", k, "registration")...)
		}
		return sortedSet(out)
	}
	// tshark names a record's name with what its suffix means: "FBHOST<20> (Server service)".
	nbnsNames := func(filter string) []string {
		var out []string
		for _, v := range ts("nbns.name", filter) {
			n, _, _ := strings.Cut(v, " (")
			out = append(out, n)
		}
		return sortedSet(out)
	}
	expectSame(t, "NBNS registered names", names("netbios_name", "netbios_group"), nbnsNames("nbns.flags.opcode == 5 && nbns.flags.response == 0"))
	expectSame(t, "NBNS queried names", byProto("nbns", "query", "query"), nbnsNames("nbns.flags.opcode == 0 && nbns.flags.response == 0"))
	expectSame(t, "browser announcement", byProto("nbds", "netbios_name"), ts("browser.server", "browser"))
	expectSame(t, "IGMP groups", byProto("igmp", "group"), ts("igmp.maddr", "igmp.type == 0x22 || igmp.type == 0x16 || igmp.type == 0x17"))
	mld := sortedSet(append(ts("icmpv6.mldr.mar.multicast_address", "icmpv6.type == 143"), ts("icmpv6.mld.multicast_address", "icmpv6.type == 131 || icmpv6.type == 132")...))
	expectSame(t, "MLD groups", byProto("mld", "group"), mld)
	var duids []string // tshark shows the hex without colons
	for _, d := range byProto("dhcpv6", "duid") {
		duids = append(duids, strings.ReplaceAll(d, ":", ""))
	}
	expectSame(t, "DHCPv6 client DUIDs", duids, ts("dhcpv6.duid.bytes", "dhcpv6.msgtype == 1")) // a REQUEST has the server's too
	expectSame(t, "DHCPv6 client FQDN", byProto("dhcpv6", "fqdn"), lower(ts("dhcpv6.client_domain", "dhcpv6.msgtype == 1 || dhcpv6.msgtype == 3")))
	expectSame(t, "ARP probed addresses", byProto("arp", "address", "probe"), ts("arp.dst.proto_ipv4", "arp.opcode == 1 && arp.src.proto_ipv4 == 0.0.0.0"))
	expectSame(t, "ARP announced addresses", byProto("arp", "address", "announcement", "gratuitous"), ts("arp.src.proto_ipv4", "arp.src.proto_ipv4 == arp.dst.proto_ipv4"))
	var st []string // tshark shows SSDP's headers as HTTP request lines
	for _, l := range testnet.FieldValues(t, path, "http.request.line", "ssdp && http.request") {
		if v, ok := strings.CutPrefix(l, "ST: "); ok {
			st = append(st, strings.TrimSuffix(v, `\r\n`))
		}
	}
	expectSame(t, "SSDP search targets", byProto("ssdp", "query", "M-SEARCH"), sortedSet(lower(st)))
	expectSame(t, "DAD targets", byProto("ndp", "address", "dad"), ts("icmpv6.nd.ns.target_address", "icmpv6.type == 135 && ipv6.src == ::"))
	if got := msgKinds("ndp"); !slices.Contains(got, "router_solicitation") {
		t.Errorf("ndp messages %v, want a router_solicitation", got)
	}
	if got := msgKinds("wsd"); !slices.Contains(got, "Hello") {
		t.Errorf("wsd messages %v, want Hello", got)
	}
	for _, e := range byProto("wsd", "endpoint") {
		if !strings.HasPrefix(e, "urn:uuid:") {
			t.Errorf("WS-Discovery endpoint %q", e)
		}
	}

	// Names and HTTP hosts (SSDP) agree with tshark, as for the corpus.
	report := newAgreementReport()
	report.add(t, "lan", "lan", firstbootValues(a), tsharkValues(t, path))
	report.check(t, 99)
	if n := a.Summary.NonIPFrames["arp"]; n < 3 {
		t.Errorf("non-IP frames %v, want the ARP frames counted", a.Summary.NonIPFrames)
	}
	if len(a.Summary.Warnings.DecodeErrors) > 0 || len(a.Summary.Warnings.ParserErrors) > 0 {
		t.Errorf("decode errors %v, parser errors %v", a.Summary.Warnings.DecodeErrors, a.Summary.Warnings.ParserErrors)
	}
	checkLANRecords(t, a)
}

// checkLANRecords checks the per-step section matches the records.
func checkLANRecords(t *testing.T, a *schema.Analysis) {
	t.Helper()
	n := int64(0)
	for _, id := range a.LANAnnouncements {
		if id.Count <= 0 || len(id.Protocols) == 0 || len(id.Senders) == 0 || id.FirstTS.IsZero() {
			t.Errorf("identifier %+v", id)
		}
		n += id.Count
	}
	items := int64(0)
	for _, l := range a.LAN {
		items += int64(len(l.Identifiers))
	}
	if n != items {
		t.Errorf("identifiers count %d messages' items, the records hold %d", n, items)
	}
}

func write(t *testing.T, path, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func lower(vs []string) []string {
	out := make([]string, len(vs))
	for i, v := range vs {
		out[i] = strings.TrimSuffix(strings.ToLower(v), ".")
	}
	return out
}
