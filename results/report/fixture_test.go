package report

import (
	"bytes"
	"image"
	"image/color"
	"image/png"
	"testing"
	"time"

	"github.com/firstboot/firstboot/results/expect"
	"github.com/firstboot/firstboot/results/manifest"
	"github.com/firstboot/firstboot/results/schema"
)

// t0 is the fixture capture's first packet; everything else is an offset from it.
var t0 = time.Date(2026, 11, 23, 9, 30, 0, 0, time.UTC)

func at(sec float64) time.Time { return t0.Add(time.Duration(sec * float64(time.Second))) }

const (
	me     = "10.77.0.10"
	gw     = "10.77.0.1"
	webIP  = "10.77.0.1" // simulated mode: the responders share the gateway address
	ja4Cur = "t13d1516h2_8daaf6152771_02713d6af862"
	synTD  = "S, win 64240, options [mss 1460,sackOK,TS,nop,wscale 7]"
	synP0f = "4:64+0:0:1460:mss*44,7:mss,sok,ts,nop,ws:df,id+:0"
)

// conn builds a conn record; bytes are IP bytes each way.
func conn(uid string, sec float64, proto string, port uint16, service, name, source, step string, dur float64, up, down int64) schema.Conn {
	return schema.Conn{ConnID: schema.ConnID{TS: at(sec), UID: uid, OrigH: me, OrigP: 40000, RespH: webIP, RespP: port}, Proto: proto, Service: service,
		Duration: dur, OrigIPBytes: up, RespIPBytes: down, OrigPkts: up / 100, RespPkts: down / 100, ConnState: "SF",
		Name: name, NameSource: source, Step: step}
}

// fixtureAnalysis is a small first boot: DHCP and DNS, an NTP query and a
// plain-HTTP connectivity check in first-boot, HTTPS (TCP and QUIC) to a news
// site and an OCSP check in browse, a plain-HTTP update check in update.
func fixtureAnalysis() *schema.Analysis {
	conns := []schema.Conn{
		conn("C1", 0.2, "udp", 67, "dhcp", "255.255.255.255", "ip", "first-boot", 1.1, 656, 650),
		conn("C2", 2.0, "udp", 53, "dns", gw, "ip", "first-boot", 0.01, 71, 103),
		conn("C3", 2.1, "udp", 123, "ntp", "pool.ntp.example", "dns", "first-boot", 0.02, 76, 76),
		conn("C4", 2.5, "tcp", 80, "http", "connectivity.firstboot.test", "http_host", "first-boot", 0.3, 480, 612),
		conn("C5", 31.0, "tcp", 443, "ssl", "news.example.com", "sni", "browse", 4.2, 2300, 48800),
		conn("C6", 33.5, "udp", 443, "quic", "news.example.com", "sni", "browse", 2.0, 3900, 14800),
		conn("C7", 31.4, "tcp", 80, "http", "ocsp.ca.example", "http_host", "browse", 0.2, 790, 1900),
		conn("C8", 61.0, "tcp", 80, "http", "updates.firstboot.test", "http_host", "update", 0.5, 520, 3400),
	}
	dest := func(name, org, party string, protos, ports []string, cs ...schema.Conn) schema.Destination {
		d := schema.Destination{Name: name, Org: org, Party: party, Protocols: protos, Ports: ports, Addresses: []string{cs[0].RespH}, NameSources: []string{cs[0].NameSource}}
		for _, c := range cs {
			d.Connections++
			d.BytesUp += c.OrigIPBytes
			d.BytesDown += c.RespIPBytes
			end := c.TS.Add(time.Duration(c.Duration * float64(time.Second)))
			if d.FirstSeen.IsZero() || c.TS.Before(d.FirstSeen) {
				d.FirstSeen = c.TS
			}
			if end.After(d.LastSeen) {
				d.LastSeen = end
			}
			d.Steps = append(d.Steps, c.Step)
		}
		return d
	}
	dhcp := dest("255.255.255.255", "", "local", []string{"dhcp"}, []string{"udp/67"}, conns[0])
	dns := dest(gw, "", "local", []string{"dns"}, []string{"udp/53"}, conns[1])
	ntp := dest("pool.ntp.example", "ntp.example", "third", []string{"ntp"}, []string{"udp/123"}, conns[2])
	conn4 := dest("connectivity.firstboot.test", "firstboot.test", "first", []string{"http"}, []string{"tcp/80"}, conns[3])
	news := dest("news.example.com", "example.com", "third", []string{"quic", "ssl"}, []string{"tcp/443", "udp/443"}, conns[4], conns[5])
	ocsp := dest("ocsp.ca.example", "ca.example", "third", []string{"http"}, []string{"tcp/80"}, conns[6])
	upd := dest("updates.firstboot.test", "firstboot.test", "first", []string{"http"}, []string{"tcp/80"}, conns[7])
	for _, d := range []*schema.Destination{&dhcp, &dns, &ntp, &conn4, &upd} {
		d.Steps = d.Steps[:1]
	}
	news.Steps = news.Steps[:1]

	sum := func(first, last float64, pkts, frames, ip, dnsq, tcp, udp, remote int64) schema.Summary {
		return schema.Summary{FirstTS: at(first), LastTS: at(last), Duration: last - first, Packets: pkts, FrameBytes: frames,
			CapturedBytes: frames, IPBytes: ip, DNSQueries: dnsq, TCPConnections: tcp, UDPFlows: udp, DistinctRemoteHosts: remote}
	}
	synFP := schema.Fingerprint{Host: me, Kind: "syn", Tcpdump: synTD, P0f: synP0f, TTL: 64, ITTL: 64, DF: true, Count: 4, FirstTS: at(2.5), Step: "first-boot"}
	synAck := schema.Fingerprint{Host: webIP, Kind: "syn-ack", Tcpdump: "S., win 65160, options [mss 1460,sackOK,TS,nop,wscale 7]", TTL: 64, ITTL: 64, DF: true, Count: 4, FirstTS: at(2.5), Step: "first-boot"}
	rcode := uint8(0)
	rtt := 0.004
	whole := sum(0, 75, 412, 83200, 77600, 6, 4, 4, 2)
	// What a clean lab capture has: checksums left to the tap's offload, ARP.
	whole.Warnings = &schema.Warnings{OffloadTCPChecksums: 240, OffloadUDPChecksums: 160}
	whole.NonIPFrames = map[string]int64{"arp": 2}
	mdnsName := schema.LANIdentifier{Kind: "hostname", Value: "fbguest.local", Protocols: []string{"mdns"}, Senders: []string{me},
		Host: true, Count: 3, FirstTS: at(1.5), Step: "first-boot"}
	printer := schema.LANIdentifier{Kind: "service_instance", Value: "office printer._ipp._tcp.local", Protocols: []string{"mdns"},
		Senders: []string{"192.168.122.30"}, Count: 1, FirstTS: at(4), Step: "first-boot"}
	lan := []schema.LANIdentifier{mdnsName, printer}
	return &schema.Analysis{
		SchemaVersion:    schema.Version,
		Input:            schema.Input{File: "capture.pcapng", Format: "pcapng", LinkTypes: []string{"ETHERNET"}, Interfaces: 1},
		Summary:          whole,
		Host:             schema.Host{IP: me, OtherIPs: []string{"fe80::5054:ff:fe12:3456"}, MAC: "52:54:00:12:34:56", DHCPHostname: "fbguest", Method: "dhcp"},
		Destinations:     []schema.Destination{dns, dhcp, conn4, news, ntp, ocsp, upd},
		Fingerprints:     []schema.Fingerprint{synFP, synAck},
		LANAnnouncements: lan,
		Steps: []schema.StepView{
			// Power-on: the machine's first packet comes seconds after the step starts.
			{Name: "first-boot", Start: at(-4.25), End: at(30), Summary: sum(0, 29.5, 61, 9800, 8900, 3, 1, 3, 2),
				Destinations: []schema.Destination{dhcp, dns, ntp, conn4}, Fingerprints: []schema.Fingerprint{synFP, synAck}, LANAnnouncements: lan},
			{Name: "browse", Start: at(30), End: at(60), Summary: sum(30.1, 40, 280, 71000, 67000, 2, 2, 1, 1),
				Destinations: []schema.Destination{news, ocsp}},
			{Name: "update", Start: at(60), End: at(70), Summary: sum(60.2, 62, 41, 4300, 4100, 1, 1, 0, 1),
				Destinations: []schema.Destination{upd}},
			{Name: "shutdown", Start: at(70), End: at(75), Summary: sum(70.5, 75, 30, 1800, 1600, 0, 0, 0, 0)},
		},
		Conns: conns,
		DNS: []schema.DNS{{ConnID: schema.ConnID{TS: at(2.0), UID: "C2", OrigH: me, RespH: gw, RespP: 53}, Proto: "udp", Kind: "dns", Query: "connectivity.firstboot.test",
			QClass: 1, QType: 1, QTypeName: "A", Rcode: &rcode, RcodeName: "NOERROR", RTT: &rtt, Answers: []string{webIP}, TTLs: []float64{60}, Step: "first-boot"}},
		TLS: []schema.TLS{
			{ConnID: schema.ConnID{TS: at(31.0), UID: "C5", OrigH: me, RespH: webIP, RespP: 443}, Transport: "tcp", Version: "TLSv13", ServerName: "news.example.com",
				Established: true, JA3: "e7d705a3286e19ea42f587b344ee6865", JA4: ja4Cur, Step: "browse"},
			{ConnID: schema.ConnID{TS: at(33.5), UID: "C6", OrigH: me, RespH: webIP, RespP: 443}, Transport: "quic", Version: "TLSv13", ServerName: "news.example.com",
				Established: true, JA4: "q13d0310h3_55b375c5d22e_cd85d2d88918", Step: "browse"},
		},
		HTTP: []schema.HTTP{
			{ConnID: schema.ConnID{TS: at(2.6), UID: "C4", OrigH: me, RespH: webIP, RespP: 80}, TransDepth: 1, Method: "GET", Host: "connectivity.firstboot.test",
				URI: "/check?v=1&os=fbguest", Version: "1.1", UserAgent: "fbguest/1 (connectivity)", StatusCode: 204, StatusMsg: "No Content", Step: "first-boot"},
			{ConnID: schema.ConnID{TS: at(31.5), UID: "C7", OrigH: me, RespH: webIP, RespP: 80}, TransDepth: 1, Method: "POST", Host: "ocsp.ca.example", URI: "/",
				Version: "1.1", UserAgent: "fbguest/1", StatusCode: 200, StatusMsg: "OK", RequestContentType: "application/ocsp-request",
				OCSP: true, OCSPResponder: "ocsp.ca.example", Step: "browse"},
			{ConnID: schema.ConnID{TS: at(61.1), UID: "C8", OrigH: me, RespH: webIP, RespP: 80}, TransDepth: 1, Method: "GET", Host: "updates.firstboot.test",
				URI: "/check", Version: "1.1", UserAgent: "fbguest/1 (update)", Step: "update"},
		},
		NTP: []schema.NTP{
			{ConnID: schema.ConnID{TS: at(2.1), UID: "C3", OrigH: me, RespH: webIP, RespP: 123}, Sender: me, Version: 4, Mode: 3, ModeName: "client", Step: "first-boot"},
			{ConnID: schema.ConnID{TS: at(2.12), UID: "C3", OrigH: me, RespH: webIP, RespP: 123}, Sender: webIP, Version: 4, Mode: 4, ModeName: "server", Stratum: 2, Step: "first-boot"},
		},
		DHCP: []schema.DHCP{{TS: at(0.2), UIDs: []string{"C1"}, ClientAddr: "0.0.0.0", ServerAddr: gw, MAC: "52:54:00:12:34:56", HostName: "fbguest",
			AssignedAddr: me, LeaseTime: 3600, MsgTypes: []string{"DISCOVER", "OFFER", "REQUEST", "ACK"}, Step: "first-boot"}},
	}
}

func fixtureManifest() *manifest.Manifest {
	step := func(name string, a, b float64) manifest.Entry {
		return manifest.Entry{Name: name, Kind: manifest.KindStep, Start: at(a), End: at(b)}
	}
	upd := step("update", 60, 70)
	upd.Error = "action 2 (console_expect, line 33): timed out"
	upd.Artifacts = []string{"screenshots/failed-update.png", "console-tail-update.txt"}
	return &manifest.Manifest{
		SchemaVersion: manifest.SchemaVersion, RunID: "20261123T093000Z-testguest", Status: manifest.StatusIncomplete,
		Reason: "step update failed", FailedStep: "update",
		Scenario: manifest.Scenario{Name: "testguest", File: "scenario.yaml", SHA256: "9f2c", OS: manifest.OS{Family: "linux", Product: "firstboot test guest", Release: "1"},
			FirstParty: []string{"firstboot.test"}},
		Image:   manifest.Image{Kind: "kernel", Name: "testguest", Files: []string{"vmlinuz", "initrd.img"}, SHA256: []string{"aa11", "bb22"}},
		Tools:   manifest.Tools{Firstboot: "dev", Libvirt: "9.0.0", QEMU: "7.2.0", Accelerator: "tcg"},
		Network: manifest.Network{Mode: "simulated", Subnet: "10.77.0.0/24", Gateway: gw},
		Machine: manifest.Machine{Name: "fb-testguest", CPUs: 1, MemoryMiB: 256, Firmware: "bios"},
		Capture: manifest.Capture{File: "capture.pcapng", Start: at(0), End: at(75), Packets: 412, StoppedBy: "machine-stopped"},
		Timeline: []manifest.Entry{
			step("first-boot", 0, 30),
			{Name: "screenshot login", Kind: manifest.KindAction, Step: "first-boot", Start: at(29), End: at(29)},
			step("browse", 30, 60), upd, step("shutdown", 70, 75),
		},
	}
}

// testPNG draws a small deterministic picture (a fake console).
func testPNG(t testing.TB, w, h int) []byte {
	t.Helper()
	img := image.NewRGBA(image.Rect(0, 0, w, h))
	for y := 0; y < h; y++ {
		for x := 0; x < w; x++ {
			c := color.RGBA{20, 20, 30, 255}
			if y%16 < 10 && x < (y*7)%w {
				c = color.RGBA{200, 200, 200, 255}
			}
			img.Set(x, y, c)
		}
	}
	var buf bytes.Buffer
	if err := png.Encode(&buf, img); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func intp(n int) *int { return &n }

// fixtureExpects is what the testguest scenario could state: some met, one not.
func fixtureExpects() []expect.Expect {
	return []expect.Expect{
		{Absent: []string{"*.tencent.com"}},
		{Step: "browse", Present: []string{"news.example.com"}},
		{Step: "update", MaxPlainHTTP: intp(0)},
		{SYN: synTD, JA4: []string{ja4Cur, "q13d*"}},
	}
}

func fixtureInput(t testing.TB) *Input {
	a := fixtureAnalysis()
	return &Input{
		Analysis:     a,
		Manifest:     fixtureManifest(),
		Expectations: expect.Evaluate(fixtureExpects(), a),
		HasScenario:  true,
		Screenshots: []Screenshot{
			{Name: "login", Path: "screenshots/login.png", Step: "first-boot", Data: testPNG(t, 64, 48), Size: 1234},
			{Name: "failed-update", Path: "screenshots/failed-update.png", Step: "update", Size: 9 << 20},
		},
	}
}
