package analyzer

import (
	"bytes"
	"context"
	"encoding/json"
	"math"
	"math/rand/v2"
	"path/filepath"
	"testing"
	"time"

	"github.com/gopacket/gopacket/layers"

	"github.com/firstboot/firstboot/analyzer/zeeklog"
	"github.com/firstboot/firstboot/results/schema"
)

// TestConnJSON compares the reflection-free conn encoder with encoding/json
// (SetEscapeHTML(false)) on random records with awkward strings, times and
// floats.
func TestConnJSON(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 9))
	strs := []string{"", "C1", "10.0.0.1", "fd00::2", "ShADadFf", "a\"b", `back\slash`, "tab\tnl\n", "\x00\x1f\x7f",
		"é ü", "\u2028\u2029", "<&>", "bad\xffutf8", "02:fb:00:00:00:01", "q4.host34.example.org"}
	floats := []float64{0, 1, 0.5, 1e-7, 1e-6, 123.456789, 1e20, 1e21, 1e22, -3.25, 5e-324, math.MaxFloat64, 1.0 / 3, math.NaN(), math.Inf(-1)}
	times := []time.Time{{}, time.Unix(1795451748, 397535123).UTC(), time.Unix(0, 1).UTC(), time.Unix(1800000000, 0).In(time.FixedZone("x", 5400)),
		time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC), time.Date(-1, 1, 1, 0, 0, 0, 0, time.UTC), time.Unix(100, 0).In(time.FixedZone("odd", 61))}
	s := func() string { return strs[rng.IntN(len(strs))] }
	re := newRecordEncoder(false)
	for i := 0; i < 5000; i++ {
		c := schema.Conn{ConnID: schema.ConnID{TS: times[rng.IntN(len(times))], UID: s(), OrigH: s(), OrigP: uint16(rng.Uint32()), RespH: s(), RespP: uint16(rng.Uint32())},
			Proto: s(), Service: s(), Duration: floats[rng.IntN(len(floats))], OrigBytes: rng.Int64() - rng.Int64(), RespBytes: rng.Int64N(1e9),
			ConnState: s(), MissedBytes: rng.Int64N(10), History: s(), OrigPkts: rng.Int64N(100), OrigIPBytes: rng.Int64N(1e6),
			RespPkts: rng.Int64N(100), RespIPBytes: rng.Int64N(1e6), OrigL2Addr: s(), RespL2Addr: s(), Name: s(), NameSource: s(), Step: s()}
		var want bytes.Buffer
		enc := json.NewEncoder(&want)
		enc.SetEscapeHTML(false)
		wantErr := enc.Encode(&c)
		got, err := re.conn(nil, &c)
		if (err != nil) != (wantErr != nil) {
			t.Fatalf("record %+v: error %v, encoding/json %v", c, err, wantErr)
		}
		if err == nil && !bytes.Equal(got, bytes.TrimSuffix(want.Bytes(), []byte("\n"))) {
			t.Fatalf("record %d:\n got %s\nwant %s", i, got, want.Bytes())
		}
	}
}

// TestDNSJSON: the same for DNS records, with and without the optional fields.
func TestDNSJSON(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	strs := []string{"", "C1", "10.0.0.1", "example.org", "a\"b", "tab\tnl\n", "\u2028", "bad\xffutf8", "NOERROR", "A"}
	floats := []float64{0, math.Copysign(0, -1), 1, 0.5, 1e-7, 86400, 4294967295, 1<<53 - 1, 1 << 53, 1e21, 1.0 / 3, math.NaN(), math.Inf(1)}
	s := func() string { return strs[rng.IntN(len(strs))] }
	re := newRecordEncoder(false)
	for i := 0; i < 5000; i++ {
		d := schema.DNS{ConnID: schema.ConnID{TS: time.Unix(1795451748, rng.Int64N(1e9)).UTC(), UID: s(), OrigH: s(), OrigP: uint16(rng.Uint32()), RespH: s(), RespP: 53}, Proto: s(), Kind: s(), TransID: uint16(rng.Uint32()), Query: s(), QClass: 1, QType: uint16(rng.IntN(300)),
			QTypeName: s(), RcodeName: s(), TC: rng.IntN(2) == 0, Step: s()}
		if rng.IntN(2) == 0 {
			f := floats[rng.IntN(len(floats))]
			d.RTT = &f
		}
		if rng.IntN(2) == 0 {
			rc := uint8(rng.IntN(24))
			d.Rcode = &rc
		}
		switch rng.IntN(3) {
		case 0: // nil lists: null
		case 1:
			d.Answers, d.TTLs = []string{}, []float64{}
		default:
			for j := rng.IntN(4); j >= 0; j-- {
				d.Answers = append(d.Answers, s())
				d.TTLs = append(d.TTLs, floats[rng.IntN(len(floats))])
			}
		}
		got, err := re.dns([]byte("x"), &d)
		sameJSON(t, i, &d, got, err)
	}
}

// sameJSON fails unless got (appended to "x") and err are what encoding/json
// (SetEscapeHTML(false)) gives for v.
func sameJSON(t *testing.T, i int, v any, got []byte, err error) {
	t.Helper()
	var want bytes.Buffer
	enc := json.NewEncoder(&want)
	enc.SetEscapeHTML(false)
	wantErr := enc.Encode(v)
	if (err != nil) != (wantErr != nil) {
		t.Fatalf("record %d %+v: error %v, encoding/json %v", i, v, err, wantErr)
	}
	if err == nil && !bytes.Equal(got, append([]byte("x"), bytes.TrimSuffix(want.Bytes(), []byte("\n"))...)) {
		t.Fatalf("record %d:\n got %s\nwant x%s", i, got, want.Bytes())
	}
}

// Awkward values for the record encoders: escapes, control bytes, non-ASCII,
// invalid UTF-8, HTML characters (not escaped with SetEscapeHTML(false)).
var (
	awkwardStrs = []string{"", "C1", "10.0.0.1", "fd00::2", "a\"b", `back\slash`, "tab\tnl\n\r", "\x00\x1f\x7f", "é ü",
		"\u2028\u2029", "<&>", "bad\xffutf8", "h2", "TLS_AES_128_GCM_SHA256", "771,4865-4866,0-23,29-23,0", "Mozilla/5.0 (X11)"}
	awkwardTimes = []time.Time{{}, time.Unix(1795451748, 397535123).UTC(), time.Unix(1795451748, 0).UTC(), time.Unix(1795451748, 100).UTC(),
		time.Unix(0, 1).UTC(), time.Unix(-1, 0).UTC(), time.Unix(1800000000, 0).In(time.FixedZone("x", 5400)),
		time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC), time.Date(-1, 1, 1, 0, 0, 0, 0, time.UTC), time.Unix(100, 0).In(time.FixedZone("odd", 61)),
		time.Date(0, 1, 1, 0, 0, 0, 0, time.UTC), time.Date(9999, 12, 31, 23, 59, 59, 999999999, time.UTC)}
	awkwardFloats = []float64{0, math.Copysign(0, -1), 1, 0.5, -1, 1e-7, 1.0 / 3, 64, 1.52587890625e-05, 9.5367431640625e-07, 1<<53 - 1, 1 << 53, 1e21, math.NaN(), math.Inf(1)}
)

func awkwardList(rng *rand.Rand) []string {
	switch rng.IntN(3) {
	case 0:
		return nil // null
	case 1:
		return []string{}
	}
	var l []string
	for j := rng.IntN(4); j >= 0; j-- {
		l = append(l, awkwardStrs[rng.IntN(len(awkwardStrs))])
	}
	return l
}

func awkwardID(rng *rand.Rand) schema.ConnID {
	s := func() string { return awkwardStrs[rng.IntN(len(awkwardStrs))] }
	return schema.ConnID{TS: awkwardTimes[rng.IntN(len(awkwardTimes))], UID: s(), OrigH: s(), OrigP: uint16(rng.Uint32()), RespH: s(), RespP: uint16(rng.Uint32())}
}

func TestTLSJSON(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	s := func() string { return awkwardStrs[rng.IntN(len(awkwardStrs))] }
	re := newRecordEncoder(false)
	for i := 0; i < 5000; i++ {
		r := schema.TLS{ConnID: awkwardID(rng), Transport: s(), Version: s(), Cipher: s(), ServerName: s(), NextProtocol: s(),
			Established: rng.IntN(2) == 0, ClientALPN: awkwardList(rng), ClientVersions: awkwardList(rng), ECH: rng.IntN(2) == 0,
			JA3: s(), JA3String: s(), JA4: s(), Step: s()}
		got, err := re.tls([]byte("x"), &r)
		sameJSON(t, i, &r, got, err)
	}
}

func TestHTTPJSON(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	s := func() string { return awkwardStrs[rng.IntN(len(awkwardStrs))] }
	re := newRecordEncoder(false)
	for i := 0; i < 5000; i++ {
		r := schema.HTTP{ConnID: awkwardID(rng), TransDepth: rng.IntN(5) - 1, Method: s(), Host: s(), URI: s(), Version: s(), UserAgent: s(),
			RequestBodyLen: rng.Int64() - rng.Int64(), ResponseBodyLen: rng.Int64N(1e9), StatusCode: rng.IntN(600), StatusMsg: s(),
			RequestContentType: s(), ResponseContentType: s(), OCSP: rng.IntN(2) == 0, OCSPResponder: s(), Step: s()}
		got, err := re.http([]byte("x"), &r)
		sameJSON(t, i, &r, got, err)
	}
}

func TestNTPJSON(t *testing.T) {
	rng := rand.New(rand.NewPCG(9, 10))
	s := func() string { return awkwardStrs[rng.IntN(len(awkwardStrs))] }
	f := func() float64 { return awkwardFloats[rng.IntN(len(awkwardFloats))] }
	re := newRecordEncoder(false)
	for i := 0; i < 5000; i++ {
		r := schema.NTP{ConnID: awkwardID(rng), Sender: s(), Version: uint8(rng.Uint32()), Mode: uint8(rng.Uint32()), ModeName: s(),
			Stratum: uint8(rng.Uint32()), Poll: f(), Precision: f(), RefID: s(), Step: s()}
		if rng.IntN(2) == 0 {
			x := awkwardTimes[rng.IntN(len(awkwardTimes))]
			r.XmtTime = &x // the zero time too: omitempty leaves out only nil
		}
		got, err := re.ntp([]byte("x"), &r)
		sameJSON(t, i, &r, got, err)
	}
}

// TestAppendTime: the hand-made RFC 3339 of UTC times is AppendFormat's, over
// all of years 0–9999, at day and year boundaries and with every fraction length.
func TestAppendTime(t *testing.T) {
	rng := rand.New(rand.NewPCG(11, 12))
	lo, hi := time.Date(0, 1, 1, 0, 0, 0, 0, time.UTC).Unix(), time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC).Unix()
	var times []time.Time
	for y := 0; y < 10000; y += 1 + rng.IntN(7) {
		times = append(times, time.Date(y, 1, 1, 0, 0, 0, 0, time.UTC), time.Date(y, 2, 29, 23, 59, 59, 1, time.UTC), time.Date(y, 12, 31, 23, 59, 59, 999999999, time.UTC))
	}
	for range 100000 {
		ns := rng.Int64N(1e9)
		for range rng.IntN(9) {
			ns -= ns % 10 // trailing zeros
		}
		times = append(times, time.Unix(lo+rng.Int64N(hi-lo), ns).UTC())
	}
	times = append(times, time.Time{}, time.Unix(0, 0).UTC(), time.Unix(-1, 999999999).UTC(), time.Unix(1795451748, 0).In(time.FixedZone("x", -3600)))
	for i := range int64(2000) { // in order, as records come: the encoder reuses the hour
		times = append(times, time.Unix(1795451748+i*7, i*1000).UTC())
	}
	re := newRecordEncoder(false)
	for _, tm := range times {
		if !timeOK(tm) {
			t.Fatalf("%v: not timeOK", tm)
		}
		want := tm.AppendFormat(nil, time.RFC3339Nano)
		if got := appendTime(nil, tm); !bytes.Equal(got, want) {
			t.Fatalf("%d s %d ns: got %s, want %s", tm.Unix(), tm.Nanosecond(), got, want)
		}
		if got := re.time([]byte("x"), tm); !bytes.Equal(got, append([]byte("x"), want...)) {
			t.Fatalf("%d s %d ns: recordEncoder.time: got %s, want x%s", tm.Unix(), tm.Nanosecond(), got, want)
		}
	}
	for _, tm := range []time.Time{time.Unix(lo-1, 999999999).UTC(), time.Unix(hi, 0).UTC(), time.Unix(1<<40, 0).UTC()} {
		if timeOK(tm) {
			t.Errorf("%v: timeOK", tm)
		}
	}
}

// TestEngineMadeFields: the fields the engine's records write without an
// escape scan (uids, addresses, protocol, state and kind names) need none,
// in every record of captures holding every kind of flow, over IPv4 and IPv6
// and the link types (the golden and fuzz seeds, the test conversation).
func TestEngineMadeFields(t *testing.T) {
	var paths []string
	for _, n := range []string{"seed.pcap", "seed.pcapng"} {
		paths = append(paths, filepath.Join("testdata", n))
	}
	conv := tempFile(t, "c.pcap")
	writePcap(t, conv, layers.LinkTypeEthernet, conversation(t))
	bench := tempFile(t, "b.pcap")
	writePcap(t, bench, layers.LinkTypeEthernet, benchPackets(t, 50))
	// Names with quotes, backslashes and tabs: were one of these fields
	// taken for an engine-made one, its two encodings would differ.
	awkward := tempFile(t, "awkward.pcap")
	t0 := time.Date(2026, 11, 23, 11, 0, 0, 0, time.UTC)
	q := "we\"ird\\na\tme.example"
	req := []byte("GET /\"x HTTP/1.1\r\nHost: h\"o\\st\r\n\r\n")
	writePcap(t, awkward, layers.LinkTypeEthernet, []capPkt{
		{ts: t0, data: ether(macGuest, macRouter, buildIP(t, ipPkt{src: ipGuest, dst: ipRouter, proto: "udp", sport: 40001, dport: 53, payload: dnsMsg(t, 1, q, false)}))},
		{ts: t0.Add(time.Millisecond), data: ether(macRouter, macGuest, buildIP(t, ipPkt{src: ipRouter, dst: ipGuest, proto: "udp", sport: 53, dport: 40001, payload: dnsMsg(t, 1, q, true, aRecord(q, ipWeb, 60))}))},
		{ts: t0.Add(2 * time.Millisecond), data: ether(macGuest, macRouter, buildIP(t, ipPkt{src: ipGuest, dst: ipWeb, sport: 50000, dport: 80, flags: "S", seq: 1}))},
		{ts: t0.Add(3 * time.Millisecond), data: ether(macRouter, macGuest, buildIP(t, ipPkt{src: ipWeb, dst: ipGuest, sport: 80, dport: 50000, flags: "SA", seq: 9, ack: 2}))},
		{ts: t0.Add(4 * time.Millisecond), data: ether(macGuest, macRouter, buildIP(t, ipPkt{src: ipGuest, dst: ipWeb, sport: 50000, dport: 80, flags: "PA", seq: 2, ack: 10, payload: req}))},
	})
	paths = append(paths, conv, bench, awkward)
	for _, p := range paths {
		a, err := AnalyzeFile(context.Background(), p, Options{})
		if err != nil {
			t.Fatal(err)
		}
		if len(a.Conns) == 0 || len(a.DNS)+len(a.TLS)+len(a.HTTP) == 0 {
			t.Fatalf("%s: too few records to check (%d conns)", p, len(a.Conns))
		}
		checkMadeFields(t, a)
	}
}

// checkMadeFields checks that the engine's records encode the same with
// and without the escape scan of their engine-made fields, in analysis.json
// and in the logs, TSV and JSON.
func checkMadeFields(t *testing.T, a *schema.Analysis) {
	t.Helper()
	var out [2]bytes.Buffer // everything encoded, without and with the scan skipped
	for i, made := range []bool{false, true} {
		re := newRecordEncoder(made)
		// put encodes one record: its analysis.json element and its log rows.
		put := func(raw []byte, err error, cols []zeeklog.Column, row []zeeklog.Value) {
			if err != nil {
				t.Fatal(err)
			}
			out[i].Write(raw)
			for _, asJSON := range []bool{false, true} {
				w := zeeklog.NewRows(&out[i], cols, asJSON)
				if err := w.Row(row); err != nil {
					t.Fatal(err)
				}
			}
		}
		for j := range a.Conns {
			raw, err := re.conn(nil, &a.Conns[j])
			put(raw, err, connCols, connRow(nil, &a.Conns[j], made))
		}
		for j := range a.DNS {
			raw, err := re.dns(nil, &a.DNS[j])
			put(raw, err, dnsCols, dnsRow(nil, &a.DNS[j], made))
		}
		for j := range a.TLS {
			raw, err := re.tls(nil, &a.TLS[j])
			put(raw, err, sslCols, sslRow(nil, &a.TLS[j], made))
		}
		for j := range a.HTTP {
			raw, err := re.http(nil, &a.HTTP[j])
			put(raw, err, httpCols, httpRow(nil, &a.HTTP[j], made, tlsColNone))
		}
		for j := range a.NTP {
			raw, err := re.ntp(nil, &a.NTP[j])
			put(raw, err, ntpCols, ntpRow(nil, &a.NTP[j], made))
		}
	}
	if !bytes.Equal(out[0].Bytes(), out[1].Bytes()) {
		t.Errorf("records encode differently with the engine-made fields unscanned:\n%s\n%s", out[0].Bytes(), out[1].Bytes())
	}
}
