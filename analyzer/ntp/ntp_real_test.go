package ntp

import (
	"encoding/hex"
	"os"
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

// tsharkTime parses tshark's rendering of an NTP timestamp ("NULL" for zero).
func tsharkTime(t *testing.T, s string) time.Time {
	t.Helper()
	if s == "NULL" || s == "" {
		return time.Time{}
	}
	v, err := time.Parse("Jan _2, 2006 15:04:05.999999999 MST", s)
	if err != nil {
		t.Fatalf("tshark time %q: %v", s, err)
	}
	return v
}

// era1 is the length of an NTP era: tshark maps timestamps whose top bit is
// clear to era 1 (2036-2104, RFC 4330 section 3); Parse uses era 0.
const era1 = time.Duration(1<<32) * time.Second

// TestRealNTP runs a chronyd server and a `chronyd -Q` client in a namespace
// (the server with -x: it never touches the clock) and compares every packet
// with tshark.
func TestRealNTP(t *testing.T) {
	testnet.Require(t, "chronyd", "tshark", "tcpdump", "ss")
	ns := testnet.New(t, "fbt")
	dir := t.TempDir()
	conf := filepath.Join(dir, "server.conf")
	must(t, os.WriteFile(conf, []byte(strings.Join([]string{
		"local stratum 3", "allow 127.0.0.0/8", "port 123", "cmdport 0",
		"pidfile " + filepath.Join(dir, "server.pid"),
		"driftfile " + filepath.Join(dir, "drift"), ""}, "\n")), 0o644))
	capture := testnet.NewCapture(t, ns, "lo", filepath.Join(dir, "capture.pcap"))
	ns.Background(t, "chronyd", "-x", "-d", "-u", "root", "-f", conf)
	// Wait until the server listens, then query it with a real client.
	ns.WaitListening(t, "udp", "123")
	ns.MustRun(t, "chronyd", "-Q", "-u", "root", "-f", "/dev/null", "-t", "10",
		"server 127.0.0.1 iburst maxsamples 4 minpoll -6 maxpoll -6",
		"pidfile "+filepath.Join(dir, "client.pid"), "cmdport 0")
	path := capture.Complete(t)

	fields := []string{"ntp.flags.vn", "ntp.flags.mode", "ntp.stratum", "ntp.ppoll", "ntp.precision", "ntp.refid",
		"ntp.reftime", "ntp.org", "ntp.rec", "ntp.xmt"}
	ts := testnet.FrameFields(t, path, "ntp", fields...)
	modes := map[string]int{}
	var seeds [][]byte
	for _, f := range testnet.ReadPcap(t, path) {
		u, ok := f.Packet.Layer(layers.LayerTypeUDP).(*layers.UDP)
		if !ok || (u.SrcPort != 123 && u.DstPort != 123) {
			continue
		}
		seeds = append(seeds, u.Payload)
		p, err := Parse(u.Payload)
		if err != nil {
			t.Errorf("frame %d: %v", f.Num, err)
			continue
		}
		modes[ModeName(p.Mode)]++
		want, ok := ts[f.Num]
		if !ok {
			t.Errorf("frame %d: tshark did not decode it as NTP", f.Num)
			continue
		}
		col := func(n string) string { return want[slices.Index(fields, n)] }
		check := func(what, got, w string) {
			if got != w {
				t.Errorf("frame %d %s: got %q, tshark %q", f.Num, what, got, w)
			}
		}
		check("version", strconv.Itoa(int(p.Version)), col("ntp.flags.vn"))
		check("mode", strconv.Itoa(int(p.Mode)), col("ntp.flags.mode"))
		check("stratum", strconv.Itoa(int(p.Stratum)), col("ntp.stratum"))
		check("poll", strconv.Itoa(int(uint8(p.Poll))), col("ntp.ppoll"))               // raw byte too
		check("precision", strconv.Itoa(int(uint8(p.Precision))), col("ntp.precision")) // tshark shows the raw byte
		// tshark prints the reference ID as hex bytes; render it our way.
		id, err := hex.DecodeString(col("ntp.refid"))
		if err != nil || len(id) != 4 {
			t.Fatalf("frame %d: tshark refid %q", f.Num, col("ntp.refid"))
		}
		check("refid", p.RefID, refID(p.Stratum, id))
		if p.Stratum > 1 || p.Mode == 3 {
			check("refid dotted", p.RefID, strconv.Itoa(int(id[0]))+"."+strconv.Itoa(int(id[1]))+"."+strconv.Itoa(int(id[2]))+"."+strconv.Itoa(int(id[3])))
		}
		for _, tc := range []struct {
			name string
			got  time.Time
		}{{"ntp.reftime", p.RefTime}, {"ntp.org", p.OrigTime}, {"ntp.rec", p.RecvTime}, {"ntp.xmt", p.XmitTime}} {
			w := tsharkTime(t, col(tc.name))
			if !w.IsZero() && w.Year() >= 2036 && tc.got.Year() < 1968 {
				w = w.Add(-era1) // documented difference: era 0 here, RFC 4330 era 1 in tshark
			}
			if d := tc.got.Sub(w); d < -time.Nanosecond || d > time.Nanosecond || tc.got.IsZero() != w.IsZero() {
				t.Errorf("frame %d %s: got %v, tshark %v", f.Num, tc.name, tc.got, w)
			}
		}
		if p.Mode == 4 && (p.XmitTime.Before(time.Now().Add(-time.Hour)) || p.XmitTime.After(time.Now().Add(time.Hour))) {
			t.Errorf("frame %d: server transmit time %v is not now", f.Num, p.XmitTime)
		}
	}
	corpus.Save(t, "FuzzNTP", seeds)
	if modes["client"] < 1 || modes["server"] < 1 {
		t.Errorf("captured modes %v, want client and server packets", modes)
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
