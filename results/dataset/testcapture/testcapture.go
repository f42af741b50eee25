// Package testcapture writes small but real run directories for tests: a
// pcapng (gopacket's pcapgo.NgWriter, packets serialised by gopacket with
// correct checksums) with a DHCP exchange carrying a hostname, DNS, HTTP over
// TCP and NTP, step markers as packet comments, and a manifest whose
// timeline's steps match the packets.
package testcapture

import (
	"encoding/binary"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"

	"github.com/firstboot/firstboot/results/manifest"
)

// Config describes one run. Zero fields take the defaults below.
type Config struct {
	RunID                                              string
	Start                                              time.Time
	MachineMAC, MachineIP, Gateway, GatewayMAC, Subnet string
	Hostname                                           string
	// Names are contacted over plain HTTP in the "browse" step, in order,
	// each after a DNS lookup (answered with the gateway's address, as the
	// lab's simulated DNS does).
	Names []string
	// Screenshot adds screenshots/boot.png (a few fixed bytes).
	Screenshot bool
}

func (c *Config) defaults() {
	if c.RunID == "" {
		c.RunID = "run-1"
	}
	if c.Start.IsZero() {
		c.Start = time.Date(2026, 11, 1, 10, 0, 0, 0, time.UTC)
	}
	if c.MachineMAC == "" {
		c.MachineMAC = "52:54:00:12:34:56"
	}
	if c.MachineIP == "" {
		c.MachineIP = "10.77.0.57"
	}
	if c.Gateway == "" {
		c.Gateway = "10.77.0.1"
	}
	if c.GatewayMAC == "" {
		c.GatewayMAC = "52:54:00:ab:cd:ef"
	}
	if c.Subnet == "" {
		c.Subnet = "10.77.0.0/24"
	}
	if c.Hostname == "" {
		c.Hostname = "labguest-7"
	}
	if c.Names == nil {
		c.Names = []string{"example.org"}
	}
}

// Counts are the packets written per step, for assertions.
type Counts struct {
	Boot, Browse, After int
}

// Steps: "boot" [Start, Start+10s), "browse" [Start+10s, Start+20s) — the
// timeline's last step ends at Start+20s; one NTP packet falls after it.
const (
	BootDur   = 10 * time.Second
	BrowseDur = 10 * time.Second
)

// Write writes the run directory dir (created) and returns its manifest and per-step packet counts.
func Write(dir string, c Config) (*manifest.Manifest, Counts, error) {
	c.defaults()
	var counts Counts
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, counts, err
	}
	f, err := os.Create(filepath.Join(dir, "capture.pcapng"))
	if err != nil {
		return nil, counts, err
	}
	defer f.Close()
	w, err := pcapgo.NewNgWriterInterface(f, pcapgo.NgInterface{
		Name: "vnet0", LinkType: layers.LinkTypeEthernet, SnapLength: 262144, TimestampResolution: 9,
	}, pcapgo.NgWriterOptions{SectionInfo: pcapgo.NgSectionInfo{Application: "firstboot-test", OS: "linux"}})
	if err != nil {
		return nil, counts, err
	}
	mMAC, _ := net.ParseMAC(c.MachineMAC)
	gMAC, _ := net.ParseMAC(c.GatewayMAC)
	mIP, gIP := net.ParseIP(c.MachineIP).To4(), net.ParseIP(c.Gateway).To4()
	bcastMAC := net.HardwareAddr{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}
	t := c.Start.Add(500 * time.Millisecond)
	var werr error
	emit := func(comment string, ls ...gopacket.SerializableLayer) {
		if werr != nil {
			return
		}
		buf := gopacket.NewSerializeBuffer()
		if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, ls...); err != nil {
			werr = err
			return
		}
		data := buf.Bytes()
		var opts pcapgo.NgPacketOptions
		if comment != "" {
			opts.Comments = []string{comment}
		}
		werr = w.WritePacketWithOptions(gopacket.CaptureInfo{Timestamp: t, CaptureLength: len(data), Length: len(data)}, data, opts)
		t = t.Add(100 * time.Millisecond)
	}
	eth := func(src, dst net.HardwareAddr) *layers.Ethernet {
		return &layers.Ethernet{SrcMAC: src, DstMAC: dst, EthernetType: layers.EthernetTypeIPv4}
	}
	ip4 := func(src, dst net.IP, proto layers.IPProtocol) *layers.IPv4 {
		return &layers.IPv4{Version: 4, TTL: 64, Protocol: proto, SrcIP: src, DstIP: dst, Flags: layers.IPv4DontFragment}
	}
	udp := func(ip *layers.IPv4, sp, dp uint16) *layers.UDP {
		u := &layers.UDP{SrcPort: layers.UDPPort(sp), DstPort: layers.UDPPort(dp)}
		u.SetNetworkLayerForChecksum(ip)
		return u
	}

	// Step "boot": DHCP DISCOVER/OFFER/REQUEST/ACK with the hostname.
	clientID := append([]byte{1}, mMAC...)
	dhcp := func(op layers.DHCPOp, typ layers.DHCPMsgType, yi net.IP, extra ...layers.DHCPOption) *layers.DHCPv4 {
		d := &layers.DHCPv4{Operation: op, HardwareType: layers.LinkTypeEthernet, HardwareLen: 6, Xid: 0x1234abcd,
			ClientIP: net.IPv4zero, YourClientIP: yi, NextServerIP: net.IPv4zero, RelayAgentIP: net.IPv4zero, ClientHWAddr: mMAC}
		d.Options = append(d.Options, layers.NewDHCPOption(layers.DHCPOptMessageType, []byte{byte(typ)}))
		d.Options = append(d.Options, extra...)
		return d
	}
	bcast, zero := net.IPv4bcast.To4(), net.IPv4zero.To4()
	req := []layers.DHCPOption{
		layers.NewDHCPOption(layers.DHCPOptHostname, []byte(c.Hostname)),
		layers.NewDHCPOption(layers.DHCPOptClientID, clientID),
		layers.NewDHCPOption(layers.DHCPOptParamsRequest, []byte{1, 3, 6, 15, 42}),
	}
	server := []layers.DHCPOption{
		layers.NewDHCPOption(layers.DHCPOptServerID, gIP),
		layers.NewDHCPOption(layers.DHCPOptSubnetMask, []byte{255, 255, 255, 0}),
		layers.NewDHCPOption(layers.DHCPOptRouter, gIP),
		layers.NewDHCPOption(layers.DHCPOptDNS, gIP),
		layers.NewDHCPOption(layers.DHCPOptLeaseTime, []byte{0, 0, 0x0e, 0x10}),
	}
	{
		ip := ip4(zero, bcast, layers.IPProtocolUDP)
		emit("firstboot: step boot begins", eth(mMAC, bcastMAC), ip, udp(ip, 68, 67), dhcp(layers.DHCPOpRequest, layers.DHCPMsgTypeDiscover, zero, req...))
		ip = ip4(gIP, mIP, layers.IPProtocolUDP)
		emit("", eth(gMAC, mMAC), ip, udp(ip, 67, 68), dhcp(layers.DHCPOpReply, layers.DHCPMsgTypeOffer, mIP, server...))
		ip = ip4(zero, bcast, layers.IPProtocolUDP)
		emit("", eth(mMAC, bcastMAC), ip, udp(ip, 68, 67), dhcp(layers.DHCPOpRequest, layers.DHCPMsgTypeRequest, zero,
			append([]layers.DHCPOption{layers.NewDHCPOption(layers.DHCPOptRequestIP, mIP), layers.NewDHCPOption(layers.DHCPOptServerID, gIP)}, req...)...))
		ip = ip4(gIP, mIP, layers.IPProtocolUDP)
		emit("", eth(gMAC, mMAC), ip, udp(ip, 67, 68), dhcp(layers.DHCPOpReply, layers.DHCPMsgTypeAck, mIP, server...))
		// ARP for the gateway.
		emit("", &layers.Ethernet{SrcMAC: mMAC, DstMAC: bcastMAC, EthernetType: layers.EthernetTypeARP},
			&layers.ARP{AddrType: layers.LinkTypeEthernet, Protocol: layers.EthernetTypeIPv4, HwAddressSize: 6, ProtAddressSize: 4,
				Operation: layers.ARPRequest, SourceHwAddress: mMAC, SourceProtAddress: mIP, DstHwAddress: make([]byte, 6), DstProtAddress: gIP})
		emit("", &layers.Ethernet{SrcMAC: gMAC, DstMAC: mMAC, EthernetType: layers.EthernetTypeARP},
			&layers.ARP{AddrType: layers.LinkTypeEthernet, Protocol: layers.EthernetTypeIPv4, HwAddressSize: 6, ProtAddressSize: 4,
				Operation: layers.ARPReply, SourceHwAddress: gMAC, SourceProtAddress: gIP, DstHwAddress: mMAC, DstProtAddress: mIP})
		counts.Boot = 6
	}

	// Step "browse": the machine looks its own name up, then each name, then fetches it over HTTP.
	t = c.Start.Add(BootDur + 200*time.Millisecond)
	dnsPair := func(id uint16, name string, answer net.IP, sport uint16) {
		q := &layers.DNS{ID: id, RD: true, Questions: []layers.DNSQuestion{{Name: []byte(name), Type: layers.DNSTypeA, Class: layers.DNSClassIN}}}
		ip := ip4(mIP, gIP, layers.IPProtocolUDP)
		emit("", eth(mMAC, gMAC), ip, udp(ip, sport, 53), q)
		r := &layers.DNS{ID: id, QR: true, RD: true, RA: true, AA: true, Questions: q.Questions,
			Answers: []layers.DNSResourceRecord{{Name: []byte(name), Type: layers.DNSTypeA, Class: layers.DNSClassIN, TTL: 60, IP: answer}}}
		ip = ip4(gIP, mIP, layers.IPProtocolUDP)
		emit("", eth(gMAC, mMAC), ip, udp(ip, 53, sport), r)
		counts.Browse += 2
	}
	first := true
	comment := func() string {
		if first {
			first = false
			return "firstboot: step browse begins"
		}
		return ""
	}
	{
		q := &layers.DNS{ID: 7, RD: true, Questions: []layers.DNSQuestion{{Name: []byte(c.Hostname + ".lan"), Type: layers.DNSTypeA, Class: layers.DNSClassIN}}}
		ip := ip4(mIP, gIP, layers.IPProtocolUDP)
		emit(comment(), eth(mMAC, gMAC), ip, udp(ip, 40000, 53), q)
		r := &layers.DNS{ID: 7, QR: true, RD: true, RA: true, Questions: q.Questions,
			Answers: []layers.DNSResourceRecord{{Name: []byte(c.Hostname + ".lan"), Type: layers.DNSTypeA, Class: layers.DNSClassIN, TTL: 60, IP: mIP}}}
		ip = ip4(gIP, mIP, layers.IPProtocolUDP)
		emit("", eth(gMAC, mMAC), ip, udp(ip, 53, 40000), r)
		counts.Browse += 2
	}
	for i, name := range c.Names {
		dnsPair(uint16(100+i), name, gIP, uint16(41000+i))
		sport := layers.TCPPort(50000 + i)
		seqC, seqS := uint32(1000), uint32(5000)
		tcp := func(src, dst net.IP, sp, dp layers.TCPPort, seq, ack uint32, syn, ackf, psh, fin bool, payload []byte) {
			ip := ip4(src, dst, layers.IPProtocolTCP)
			tc := &layers.TCP{SrcPort: sp, DstPort: dp, Seq: seq, Ack: ack, SYN: syn, ACK: ackf, PSH: psh, FIN: fin, Window: 64240}
			if syn {
				tc.Options = []layers.TCPOption{
					{OptionType: layers.TCPOptionKindMSS, OptionLength: 4, OptionData: []byte{0x05, 0xb4}},
					{OptionType: layers.TCPOptionKindSACKPermitted, OptionLength: 2},
					{OptionType: layers.TCPOptionKindWindowScale, OptionLength: 3, OptionData: []byte{7}},
				}
			}
			tc.SetNetworkLayerForChecksum(ip)
			src2, dst2 := mMAC, gMAC
			if src.Equal(gIP) {
				src2, dst2 = gMAC, mMAC
			}
			ls := []gopacket.SerializableLayer{eth(src2, dst2), ip, tc}
			if len(payload) > 0 {
				ls = append(ls, gopacket.Payload(payload))
			}
			emit(comment(), ls...)
			counts.Browse++
		}
		get := []byte(fmt.Sprintf("GET /check HTTP/1.1\r\nHost: %s\r\nUser-Agent: testguest/1.0\r\n\r\n", name))
		resp := []byte("HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Type: text/plain\r\n\r\nok")
		tcp(mIP, gIP, sport, 80, seqC, 0, true, false, false, false, nil)
		tcp(gIP, mIP, 80, sport, seqS, seqC+1, true, true, false, false, nil)
		tcp(mIP, gIP, sport, 80, seqC+1, seqS+1, false, true, false, false, nil)
		tcp(mIP, gIP, sport, 80, seqC+1, seqS+1, false, true, true, false, get)
		tcp(gIP, mIP, 80, sport, seqS+1, seqC+1+uint32(len(get)), false, true, true, false, resp)
		tcp(mIP, gIP, sport, 80, seqC+1+uint32(len(get)), seqS+1+uint32(len(resp)), false, true, false, true, nil)
		tcp(gIP, mIP, 80, sport, seqS+1+uint32(len(resp)), seqC+2+uint32(len(get)), false, true, false, true, nil)
		tcp(mIP, gIP, sport, 80, seqC+2+uint32(len(get)), seqS+2+uint32(len(resp)), false, true, false, false, nil)
	}

	// After the last step: one NTP client packet.
	t = c.Start.Add(BootDur + BrowseDur + 5*time.Second)
	{
		ntp := make([]byte, 48)
		ntp[0] = 0x23 // v4, client
		binary.BigEndian.PutUint32(ntp[40:44], 0xe8d4a510)
		ip := ip4(mIP, gIP, layers.IPProtocolUDP)
		emit("", eth(mMAC, gMAC), ip, udp(ip, 123, 123), gopacket.Payload(ntp))
		counts.After = 1
	}
	if werr != nil {
		return nil, counts, werr
	}
	if err := w.Flush(); err != nil {
		return nil, counts, err
	}
	if err := f.Close(); err != nil {
		return nil, counts, err
	}

	end := c.Start.Add(BootDur + BrowseDur + 6*time.Second)
	m := &manifest.Manifest{
		RunID:  c.RunID,
		Status: manifest.StatusComplete,
		Scenario: manifest.Scenario{Name: "testguest-basic", File: "scenarios/testguest.yaml", SHA256: "00",
			OS: manifest.OS{Family: "linux", Product: "firstboot testguest", Release: "1.0", Build: "tg-1"}, FirstParty: []string{"example.org"}},
		Image:   manifest.Image{Kind: "kernel", Name: "testguest", Files: []string{"vmlinux"}, SHA256: []string{"11"}},
		Tools:   manifest.Tools{Firstboot: "test", QEMU: "7.2", Accelerator: "tcg"},
		Network: manifest.Network{Mode: "simulated", Name: "fb-test", Bridge: "fbbr0", Subnet: c.Subnet, Gateway: c.Gateway},
		Machine: manifest.Machine{Name: "fb-" + c.Hostname, MAC: c.MachineMAC, IP: c.MachineIP, CPUs: 1, MemoryMiB: 256, Firmware: "bios"},
		Capture: manifest.Capture{File: "capture.pcapng", Interface: "vnet0", Start: c.Start, End: end,
			Packets: uint64(counts.Boot + counts.Browse + counts.After), StoppedBy: "steps-done"},
		Timeline: []manifest.Entry{
			{Name: "lab-up", Kind: manifest.KindSetup, Start: c.Start.Add(-5 * time.Second), End: c.Start},
			{Name: "boot", Kind: manifest.KindStep, Start: c.Start, End: c.Start.Add(BootDur - time.Second)},
			{Name: "browse", Kind: manifest.KindStep, Start: c.Start.Add(BootDur), End: c.Start.Add(BootDur + BrowseDur)},
		},
		Files: []string{"capture.pcapng", "console.log", "scenario.yaml"},
	}
	if err := manifest.Write(dir, m); err != nil {
		return nil, counts, err
	}
	console := fmt.Sprintf("[    0.000000] Linux version 6.1.0\nudhcpc: lease of %s obtained from %s\n%s login: \neth0 HWaddr %s\n",
		c.MachineIP, c.Gateway, c.Hostname, c.MachineMAC)
	if err := os.WriteFile(filepath.Join(dir, "console.log"), []byte(console), 0o644); err != nil {
		return nil, counts, err
	}
	resp := fmt.Sprintf(`{"ts":"%s","kind":"dns","client":"%s","query":"%s.lan"}`+"\n", c.Start.Add(BootDur).Format(time.RFC3339Nano), c.MachineIP, c.Hostname)
	if err := os.WriteFile(filepath.Join(dir, "responders.jsonl"), []byte(resp), 0o644); err != nil {
		return nil, counts, err
	}
	if err := os.WriteFile(filepath.Join(dir, "scenario.yaml"), []byte("name: testguest-basic\nsteps:\n  - name: boot\n  - name: browse\n"), 0o644); err != nil {
		return nil, counts, err
	}
	if c.Screenshot {
		if err := os.MkdirAll(filepath.Join(dir, "screenshots"), 0o755); err != nil {
			return nil, counts, err
		}
		if err := os.WriteFile(filepath.Join(dir, "screenshots", "boot.png"), []byte("\x89PNG\r\n\x1a\nnot really"), 0o644); err != nil {
			return nil, counts, err
		}
	}
	return m, counts, nil
}
