package scenarios

import (
	"context"
	"crypto/tls"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"golang.org/x/net/dns/dnsmessage"
)

// frame serializes an Ethernet/IPv4 packet around a TCP or UDP layer.
func frame(t *testing.T, dst net.IP, l4 gopacket.SerializableLayer, payload []byte) []byte {
	t.Helper()
	eth := &layers.Ethernet{SrcMAC: net.HardwareAddr{2, 0, 0, 0, 0, 1}, DstMAC: net.HardwareAddr{2, 0, 0, 0, 0, 2}, EthernetType: layers.EthernetTypeIPv4}
	ip := &layers.IPv4{Version: 4, TTL: 64, SrcIP: net.IP{10, 77, 0, 10}, DstIP: dst}
	switch l := l4.(type) {
	case *layers.TCP:
		ip.Protocol = layers.IPProtocolTCP
		l.SetNetworkLayerForChecksum(ip)
	case *layers.UDP:
		ip.Protocol = layers.IPProtocolUDP
		l.SetNetworkLayerForChecksum(ip)
	}
	buf := gopacket.NewSerializeBuffer()
	opts := gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}
	if err := gopacket.SerializeLayers(buf, opts, eth, ip, l4, gopacket.Payload(payload)); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// realClientHello records what Go's TLS client sends for serverName.
func realClientHello(t *testing.T, serverName string) []byte {
	t.Helper()
	c, s := net.Pipe()
	go func() {
		tls.Client(c, &tls.Config{ServerName: serverName, InsecureSkipVerify: true}).Handshake()
		c.Close()
	}()
	s.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 4096)
	n, err := io.ReadAtLeast(s, buf, 5)
	if err != nil {
		t.Fatal(err)
	}
	rec := 5 + int(buf[3])<<8 | int(buf[4])
	for n < rec {
		m, err := s.Read(buf[n:])
		if err != nil {
			t.Fatal(err)
		}
		n += m
	}
	s.Close()
	return buf[:n]
}

func TestLiveDecoderFeedsWaits(t *testing.T) {
	w := NewTrafficWatch()
	var p Progress
	var names []string
	w.OnNewName = func(name string, at time.Time) { names = append(names, name); p.newName(name, at) }
	d := NewLiveDecoder(w)
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	server := net.IP{10, 77, 0, 1}

	q := dnsmessage.NewBuilder(nil, dnsmessage.Header{ID: 7, RecursionDesired: true})
	q.StartQuestions()
	q.Question(dnsmessage.Question{Name: dnsmessage.MustNewName("Telemetry.Example.com."), Type: dnsmessage.TypeA, Class: dnsmessage.ClassINET})
	query, _ := q.Finish()

	d.Packet(frame(t, server, &layers.UDP{SrcPort: 40000, DstPort: 53}, query), t0)
	d.Packet(frame(t, net.IP{192, 0, 2, 9}, &layers.TCP{SrcPort: 40001, DstPort: 443, SYN: true, Window: 64240}, nil), t0.Add(time.Second))
	d.Packet(frame(t, net.IP{192, 0, 2, 9}, &layers.TCP{SrcPort: 40001, DstPort: 443, ACK: true, PSH: true, Seq: 1, Window: 64240}, realClientHello(t, "updates.firstboot.test")), t0.Add(2*time.Second))
	d.Packet(frame(t, server, &layers.TCP{SrcPort: 40002, DstPort: 80, ACK: true, PSH: true, Seq: 1, Window: 64240},
		[]byte("GET /generate_204 HTTP/1.1\r\nHost: Connectivity.firstboot.test\r\nUser-Agent: t\r\n\r\n")), t0.Add(3*time.Second))

	// The same query again is no new name.
	d.Packet(frame(t, server, &layers.UDP{SrcPort: 40003, DstPort: 53}, query), t0.Add(4*time.Second))
	// Each name is new once, in the order seen; the progress shows the last.
	if got := strings.Join(names, " "); got != "telemetry.example.com updates.firstboot.test connectivity.firstboot.test" {
		t.Errorf("new names %q", got)
	}
	if s := p.Snapshot(); s.LastNew != "connectivity.firstboot.test" || !s.LastNewAt.Equal(t0.Add(3*time.Second)) {
		t.Errorf("progress shows %q at %s as the last new name", s.LastNew, s.LastNewAt)
	}

	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	args := &TrafficArgs{DNS: "*.example.com", SNI: "updates.*", Host: "connectivity.firstboot.test", Dst: "192.0.2.9:443"}
	if err := w.WaitFor(ctx, args, t0); err != nil {
		t.Fatal(err)
	}
	// Events before `since` do not count.
	ctx2, cancel2 := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel2()
	if err := w.WaitFor(ctx2, &TrafficArgs{DNS: "*.example.com"}, t0.Add(time.Hour)); err == nil {
		t.Error("an event from before the action satisfied the wait")
	}
}

func TestWaitIdle(t *testing.T) {
	w := NewTrafficWatch()
	now := time.Now
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	go func() {
		for i := 0; i < 3; i++ {
			time.Sleep(50 * time.Millisecond)
			w.Observe(TrafficConn, "10.0.0.1:443", now())
		}
	}()
	start := now()
	if err := w.WaitIdle(ctx, 200*time.Millisecond, now); err != nil {
		t.Fatal(err)
	}
	// Three connections 50 ms apart, then 200 ms of quiet.
	if took := now().Sub(start); took < 340*time.Millisecond {
		t.Errorf("WaitIdle returned after %s, before the machine was quiet", took)
	}
	ctx3, cancel3 := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel3()
	if err := w.WaitIdle(ctx3, time.Hour, now); err == nil {
		t.Error("WaitIdle beyond its limit did not fail")
	}
}
