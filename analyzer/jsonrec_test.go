package analyzer

import (
	"bytes"
	"encoding/json"
	"math"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/firstboot/firstboot/results/schema"
)

// TestConnJSON compares the reflection-free conn encoder with encoding/json
// (SetEscapeHTML(false)) on random records with awkward strings, times and
// floats.
func TestConnJSON(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 9))
	strs := []string{"", "C1", "10.0.0.1", "fd00::2", "ShADadFf", "a\"b", `back\slash`, "tab\tnl\n", "\x00\x1f\x7f",
		"é ü", "\u2028\u2029", "<&>", "bad\xffutf8", "02:fb:00:00:00:01", "q4.host34.example.org"}
	floats := []float64{0, 1, 0.5, 1e-7, 1e-6, 123.456789, 1e20, 1e21, 1e22, -3.25, 5e-324, math.MaxFloat64, 1.0 / 3}
	times := []time.Time{{}, time.Unix(1795451748, 397535123).UTC(), time.Unix(0, 1).UTC(), time.Unix(1800000000, 0).In(time.FixedZone("x", 5400)),
		time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC), time.Date(-1, 1, 1, 0, 0, 0, 0, time.UTC), time.Unix(100, 0).In(time.FixedZone("odd", 61))}
	s := func() string { return strs[rng.IntN(len(strs))] }
	re := newRecordEncoder()
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
	floats := []float64{0, 1, 0.5, 1e-7, 86400, 1e21, 1.0 / 3}
	s := func() string { return strs[rng.IntN(len(strs))] }
	re := newRecordEncoder()
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
		var want bytes.Buffer
		enc := json.NewEncoder(&want)
		enc.SetEscapeHTML(false)
		if err := enc.Encode(&d); err != nil {
			t.Fatal(err)
		}
		got, err := re.dns(nil, &d)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, bytes.TrimSuffix(want.Bytes(), []byte("\n"))) {
			t.Fatalf("record %d:\n got %s\nwant %s", i, got, want.Bytes())
		}
	}
}
