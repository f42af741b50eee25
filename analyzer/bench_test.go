package analyzer

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"runtime"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"
)

// benchPackets builds a capture of many flows: TCP connections with handshake,
// request, a few full-size response segments and FIN exchange (every eighth
// carrying a real TLS ClientHello and ServerHello), and DNS lookups.
func benchPackets(tb testing.TB, flows int) []capPkt {
	return benchPacketsSegs(tb, 0, flows, 3, time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC))
}

// benchPacketsSegs builds connections first..first+flows-1 with segs
// full-size response segments each, starting at t0.
func benchPacketsSegs(tb testing.TB, first, flows, segs int, t0 time.Time) []capPkt {
	tb.Helper()
	ch, sh := tlsHellos(tb, "bench.example.com")
	req := []byte("GET /index.html HTTP/1.1\r\nHost: bench.example.org\r\nUser-Agent: bench\r\n\r\n")
	body := make([]byte, 1400)
	var out []capPkt
	n := 0
	emit := func(fromClient bool, p ipPkt) {
		src, dst := macGuest, macRouter
		if !fromClient {
			src, dst = macRouter, macGuest
		}
		out = append(out, capPkt{ts: t0.Add(time.Duration(n) * 50 * time.Microsecond), data: ether(src, dst, buildIP(tb, p))})
		n++
	}
	for i := first; i < first+flows; i++ {
		client := net.IP{10, 0, byte(i >> 8 % 4), byte(2 + i%200)}
		server := net.IP{93, 184, byte(i % 100), 34}
		cport := uint16(20000 + i%40000)
		if i%4 == 0 {
			q := fmt.Sprintf("host%d.example.com", i%500)
			emit(true, ipPkt{src: client, dst: ipRouter, proto: "udp", sport: cport, dport: 53, payload: dnsMsg(tb, uint16(i), q, false)})
			emit(false, ipPkt{src: ipRouter, dst: client, proto: "udp", sport: 53, dport: cport, payload: dnsMsg(tb, uint16(i), q, true, aRecord(q, server, 60))})
		}
		cs, ss := uint32(i*7919), uint32(i*104729)
		dport, creq := uint16(80), req
		var sresp [][]byte
		for j := 0; j < segs; j++ {
			sresp = append(sresp, body)
		}
		if i%8 == 0 {
			dport, creq, sresp[0] = 443, ch, sh
		} else {
			// A real response head announcing the bytes of all segments.
			headFor := func(cl int) string {
				return fmt.Sprintf("HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: %d\r\n\r\n", cl)
			}
			cl := segs * len(body)
			for k := 0; k < 3; k++ {
				cl = segs*len(body) - len(headFor(cl))
			}
			head := headFor(cl)
			sresp[0] = append([]byte(head), body[:len(body)-len(head)]...)
		}
		emit(true, ipPkt{src: client, dst: server, sport: cport, dport: dport, flags: "S", seq: cs})
		emit(false, ipPkt{src: server, dst: client, sport: dport, dport: cport, flags: "SA", seq: ss, ack: cs + 1})
		emit(true, ipPkt{src: client, dst: server, sport: cport, dport: dport, flags: "A", seq: cs + 1, ack: ss + 1})
		emit(true, ipPkt{src: client, dst: server, sport: cport, dport: dport, flags: "PA", seq: cs + 1, ack: ss + 1, payload: creq})
		cn := cs + 1 + uint32(len(creq))
		sn := ss + 1
		for _, seg := range sresp {
			emit(false, ipPkt{src: server, dst: client, sport: dport, dport: cport, flags: "A", seq: sn, ack: cn, payload: seg})
			sn += uint32(len(seg))
		}
		emit(true, ipPkt{src: client, dst: server, sport: cport, dport: dport, flags: "A", seq: cn, ack: sn})
		emit(true, ipPkt{src: client, dst: server, sport: cport, dport: dport, flags: "FA", seq: cn, ack: sn})
		emit(false, ipPkt{src: server, dst: client, sport: dport, dport: cport, flags: "FA", seq: sn, ack: cn + 1})
		emit(true, ipPkt{src: client, dst: server, sport: cport, dport: dport, flags: "A", seq: cn + 1, ack: sn + 1})
	}
	return out
}

// BenchmarkAnalyze reports packets per second and allocations per packet over
// generated captures (written once, read from the page cache): "short" has
// 20000 short connections (the per-flow costs dominate), "bulk" 200 long ones
// (the per-packet path dominates).
func BenchmarkAnalyze(b *testing.B) {
	for _, bc := range []struct {
		name        string
		flows, segs int
	}{{"short", 20000, 3}, {"bulk", 200, 1000}} {
		b.Run(bc.name, func(b *testing.B) {
			path := b.TempDir() + "/bench.pcap"
			pkts := benchPacketsSegs(b, 0, bc.flows, bc.segs, time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC))
			writePcap(b, path, layers.LinkTypeEthernet, pkts)
			st, _ := os.Stat(path)
			b.SetBytes(st.Size())
			b.ReportAllocs()
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				a, err := AnalyzeFile(context.Background(), path, Options{})
				if err != nil {
					b.Fatal(err)
				}
				if a.Summary.Packets != int64(len(pkts)) {
					b.Fatalf("packets %d, want %d", a.Summary.Packets, len(pkts))
				}
			}
			b.StopTimer()
			runtime.ReadMemStats(&after)
			b.ReportMetric(float64(len(pkts))*float64(b.N)/b.Elapsed().Seconds(), "packets/s")
			b.ReportMetric(float64(after.Mallocs-before.Mallocs)/float64(len(pkts)*b.N), "allocs/packet")
		})
	}
}

// TestWriteBenchCapture writes a large capture for measuring the command
// against tcpdump (skipped unless FIRSTBOOT_BENCH_CAPTURE names the file):
// FIRSTBOOT_BENCH_MB megabytes (default 1024) of long downloads mixed with
// short connections and DNS, written as it is generated.
func TestWriteBenchCapture(t *testing.T) {
	path := os.Getenv("FIRSTBOOT_BENCH_CAPTURE")
	if path == "" {
		t.Skip("set FIRSTBOOT_BENCH_CAPTURE=/path/to/file.pcap")
	}
	mb := 1024
	if v := os.Getenv("FIRSTBOOT_BENCH_MB"); v != "" {
		fmt.Sscan(v, &mb)
	}
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	bw := bufio.NewWriterSize(f, 1<<20)
	w := pcapgo.NewWriterNanos(bw)
	if err := w.WriteFileHeader(262144, layers.LinkTypeEthernet); err != nil {
		t.Fatal(err)
	}
	t0 := time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)
	var written int64
	for chunk := 0; written < int64(mb)<<20; chunk++ {
		// Per chunk: 5 long downloads and 500 short connections.
		pkts := benchPacketsSegs(t, chunk*505, 5, 1000, t0)
		pkts = append(pkts, benchPacketsSegs(t, chunk*505+5, 500, 3, t0.Add(300*time.Millisecond))...)
		for _, p := range pkts {
			ts := p.ts.Add(time.Duration(chunk) * time.Minute)
			if err := w.WritePacket(gopacket.CaptureInfo{Timestamp: ts, CaptureLength: len(p.data), Length: len(p.data)}, p.data); err != nil {
				t.Fatal(err)
			}
			written += int64(len(p.data)) + 16
		}
	}
	if err := bw.Flush(); err != nil {
		t.Fatal(err)
	}
}
