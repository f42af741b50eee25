package capfile

import (
	"bytes"
	"compress/gzip"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"
)

type rec struct {
	ts   time.Time
	data []byte
	orig int
}

func records() []rec {
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 123456789, time.UTC)
	var out []rec
	for i := 0; i < 50; i++ {
		d := bytes.Repeat([]byte{byte(i)}, 20+i*37%1500)
		out = append(out, rec{ts: t0.Add(time.Duration(i) * 1001 * time.Microsecond), data: d, orig: len(d) + i%3})
	}
	// A record bigger than the read buffer is returned through the copy path.
	out = append(out, rec{ts: t0.Add(time.Hour), data: bytes.Repeat([]byte{0xab}, bufSize+10), orig: bufSize + 10})
	return out
}

func pcapBytes(t *testing.T, nanos bool, rs []rec) []byte {
	var buf bytes.Buffer
	w := pcapgo.NewWriter(&buf)
	if nanos {
		w = pcapgo.NewWriterNanos(&buf)
	}
	if err := w.WriteFileHeader(1<<21, layers.LinkTypeEthernet); err != nil {
		t.Fatal(err)
	}
	for _, r := range rs {
		if err := w.WritePacket(gopacket.CaptureInfo{Timestamp: r.ts, CaptureLength: len(r.data), Length: r.orig}, r.data); err != nil {
			t.Fatal(err)
		}
	}
	return buf.Bytes()
}

func pcapngBytes(t *testing.T, rs []rec) []byte {
	var buf bytes.Buffer
	w, err := pcapgo.NewNgWriterInterface(&buf, pcapgo.NgInterface{LinkType: layers.LinkTypeEthernet, SnapLength: 1 << 21, TimestampResolution: 9}, pcapgo.NgWriterOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.AddInterface(pcapgo.NgInterface{LinkType: layers.LinkTypeLinuxSLL, SnapLength: 1 << 21, TimestampResolution: 6}); err != nil {
		t.Fatal(err)
	}
	for i, r := range rs {
		if err := w.WritePacket(gopacket.CaptureInfo{Timestamp: r.ts, CaptureLength: len(r.data), Length: r.orig, InterfaceIndex: i % 2}, r.data); err != nil {
			t.Fatal(err)
		}
	}
	w.Flush()
	return buf.Bytes()
}

func gz(b []byte) []byte {
	var buf bytes.Buffer
	w := gzip.NewWriter(&buf)
	w.Write(b)
	w.Close()
	return buf.Bytes()
}

// swapPcap rewrites a little-endian pcap as big-endian.
func swapPcap(b []byte) []byte {
	out := append([]byte{}, b...)
	sw := func(off int) { binary.BigEndian.PutUint32(out[off:], binary.LittleEndian.Uint32(b[off:])) }
	sw16 := func(off int) { binary.BigEndian.PutUint16(out[off:], binary.LittleEndian.Uint16(b[off:])) }
	sw(0)
	sw16(4)
	sw16(6)
	for _, o := range []int{8, 12, 16, 20} {
		sw(o)
	}
	for off := 24; off+16 <= len(b); {
		incl := int(binary.LittleEndian.Uint32(b[off+8:]))
		for _, o := range []int{0, 4, 8, 12} {
			sw(off + o)
		}
		off += 16 + incl
	}
	return out
}

func TestRead(t *testing.T) {
	rs := records()
	cases := []struct {
		name, format string
		data         []byte
		gzip         bool
		resolution   time.Duration
		links        int
	}{
		{"pcap-usec", "pcap", pcapBytes(t, false, rs), false, time.Microsecond, 1},
		{"pcap-nsec", "pcap", pcapBytes(t, true, rs), false, time.Nanosecond, 1},
		{"pcap-bigendian", "pcap", swapPcap(pcapBytes(t, true, rs)), false, time.Nanosecond, 1},
		{"pcapng", "pcapng", pcapngBytes(t, rs), false, time.Nanosecond, 2},
		{"pcap-gzip", "pcap", gz(pcapBytes(t, true, rs)), true, time.Nanosecond, 1},
		{"pcapng-gzip", "pcapng", gz(pcapngBytes(t, rs)), true, time.Nanosecond, 2},
	}
	for _, tc := range cases {
		for _, how := range []string{"stream", "mapped"} {
			t.Run(tc.name+"/"+how, func(t *testing.T) {
				r, err := openAs(t, how, tc.data, tc.name)
				if err != nil {
					t.Fatal(err)
				}
				defer r.Close()
				if mapped := r.mem != nil; mapped != (how == "mapped" && !tc.gzip) {
					t.Errorf("mapped %v: a mapped uncompressed file is read from memory, anything else through a buffer", mapped)
				}
				readAll(t, r, tc.format, tc.gzip, tc.resolution, tc.links, rs)
			})
		}
	}
}

// openAs opens data streamed (NewReader) or, written to a file, mapped
// (OpenMapped): both must read the same.
func openAs(t testing.TB, how string, data []byte, name string) (*Reader, error) {
	if how == "stream" {
		return NewReader(bytes.NewReader(data), name)
	}
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return OpenMapped(path)
}

// readAll reads every packet of r and checks it against rs.
func readAll(t *testing.T, r *Reader, format string, gzip bool, res time.Duration, links int, rs []rec) {
	t.Helper()
	if r.Format() != format || r.Gzip() != gzip {
		t.Errorf("format %s gzip %v", r.Format(), r.Gzip())
	}
	var p Packet
	i := 0
	for ; ; i++ {
		err := r.Next(&p)
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("packet %d: %v", i, err)
		}
		want := rs[i]
		if got := time.Unix(0, p.TS); !got.Equal(want.ts.Truncate(res)) || !bytes.Equal(p.Data, want.data) || p.OrigLen != want.orig {
			t.Fatalf("packet %d: ts %v (want %v), %d bytes (want %d), orig %d", i, got, want.ts, len(p.Data), len(want.data), p.OrigLen)
		}
	}
	if i != len(rs) {
		t.Errorf("read %d packets, want %d", i, len(rs))
	}
	if len(r.LinkTypes()) != links {
		t.Errorf("link types %v", r.LinkTypes())
	}
}

// ngBlock builds a little-endian pcapng block.
func ngBlock(typ uint32, body []byte) []byte {
	for len(body)%4 != 0 {
		body = append(body, 0)
	}
	n := uint32(12 + len(body))
	b := binary.LittleEndian.AppendUint32(nil, typ)
	b = binary.LittleEndian.AppendUint32(b, n)
	b = append(b, body...)
	return binary.LittleEndian.AppendUint32(b, n)
}

// TestPcapngResolutions: the default microsecond resolution, a binary
// resolution (2^-10 s) and if_tsoffset, in a handmade file with a simple
// packet block and an unknown block type between packets.
func TestPcapngResolutions(t *testing.T) {
	shb := ngBlock(blockSHB, []byte{0x4d, 0x3c, 0x2b, 0x1a, 1, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff})
	idb := func(opts ...byte) []byte {
		body := []byte{1, 0, 0, 0, 0, 0, 4, 0}
		body = append(body, opts...)
		return ngBlock(blockIDB, body)
	}
	epb := func(iface uint32, units uint64, data []byte) []byte {
		b := binary.LittleEndian.AppendUint32(nil, iface)
		b = binary.LittleEndian.AppendUint32(b, uint32(units>>32))
		b = binary.LittleEndian.AppendUint32(b, uint32(units))
		b = binary.LittleEndian.AppendUint32(b, uint32(len(data)))
		b = binary.LittleEndian.AppendUint32(b, uint32(len(data)))
		return ngBlock(blockEPB, append(b, data...))
	}
	var f []byte
	f = append(f, shb...)
	f = append(f, idb()...)                                                                // microseconds
	f = append(f, idb(9, 0, 1, 0, 0x8a, 0, 0, 0, 14, 0, 8, 0, 10, 0, 0, 0, 0, 0, 0, 0)...) // 2^-10 s, offset 10 s
	f = append(f, epb(0, 1_500_000, []byte{1, 2, 3})...)
	f = append(f, ngBlock(0x0BAD, []byte{9, 9, 9, 9})...)
	f = append(f, epb(1, 2048+512, []byte{4})...)
	f = append(f, ngBlock(blockSPB, append(binary.LittleEndian.AppendUint32(nil, 5), 7, 7, 7, 7, 7))...)
	r, err := NewReader(bytes.NewReader(f), "hand.pcapng")
	if err != nil {
		t.Fatal(err)
	}
	want := []struct {
		ts    int64
		n     int
		iface int
	}{{1_500_000_000, 3, 0}, {12_500_000_000, 1, 1}, {0, 5, 0}}
	var p Packet
	for i, w := range want {
		if err := r.Next(&p); err != nil {
			t.Fatalf("packet %d: %v", i, err)
		}
		if p.TS != w.ts || len(p.Data) != w.n || p.Iface != w.iface {
			t.Errorf("packet %d: ts %d len %d iface %d, want %+v", i, p.TS, len(p.Data), p.Iface, w)
		}
	}
	if err := r.Next(&p); err != io.EOF {
		t.Errorf("end: %v", err)
	}
}

func TestErrors(t *testing.T) {
	good := pcapBytes(t, false, records()[:3])
	ng := pcapngBytes(t, records()[:3])
	cases := []struct {
		name   string
		data   []byte
		open   string // error text from NewReader
		damage string // error text from Next
	}{
		{name: "empty", data: nil, open: "empty file at byte offset 0"},
		{name: "gzip empty", data: gz(nil), open: "empty file inside gzip"},
		{name: "bad gzip", data: []byte{0x1f, 0x8b, 0, 0}, open: "bad gzip header"},
		{name: "text", data: []byte("GET / HTTP/1.1\r\n"), open: "not a pcap or pcapng file"},
		{name: "short pcap header", data: good[:20], open: "truncated pcap file header"},
		{name: "cut record header", data: good[:24+8], damage: "truncated record header at byte offset 24"},
		{name: "cut record", data: good[:len(good)-3], damage: "truncated record"},
		{name: "bad ng byte order", data: append(append([]byte{}, ng[:8]...), 1, 2, 3, 4), open: "bad pcapng byte-order magic"},
		{name: "cut ng block", data: ng[:len(ng)-5], damage: "truncated block"},
		{name: "cut gzip", data: gz(good)[:60], damage: "decompressed byte offset"},
	}
	for _, tc := range cases {
		for _, how := range []string{"stream", "mapped"} {
			t.Run(tc.name+"/"+how, func(t *testing.T) { checkError(t, how, tc.data, tc.open, tc.damage) })
		}
	}
}

// checkError reads data to its end and checks the error: openErr is the
// text of an error opening it, damage that of the error reading it.
func checkError(t *testing.T, how string, data []byte, openErr, damage string) {
	r, err := openAs(t, how, data, "f.pcap")
	if openErr != "" {
		var e *Error
		if err == nil || !strings.Contains(err.Error(), openErr) || !strings.Contains(err.Error(), "f.pcap") || !errors.As(err, &e) {
			t.Fatalf("open error %v, want %q", err, openErr)
		}
		return
	}
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	var p Packet
	for {
		err = r.Next(&p)
		if err != nil {
			break
		}
	}
	if !errors.Is(err, ErrDamaged) || !strings.Contains(err.Error(), damage) {
		t.Fatalf("error %v, want damage %q", err, damage)
	}
	if r.Next(&p) != io.EOF {
		t.Error("reading goes on after damage")
	}
}

// FuzzReader reads any input streamed and mapped: neither panics, and both
// give the same packets and the same error.
func FuzzReader(f *testing.F) {
	f.Add(pcapBytes(&testing.T{}, false, records()[:2]))
	f.Add(pcapngBytes(&testing.T{}, records()[:2]))
	f.Fuzz(func(t *testing.T, b []byte) {
		var got [2]string
		for i, how := range []string{"stream", "mapped"} {
			got[i] = readTrace(t, how, b)
		}
		if got[0] != got[1] {
			t.Fatalf("streamed and mapped reads differ:\n%s\n%s", got[0], got[1])
		}
	})
}

// readTrace reads data and describes what it read: each packet and the
// error that ended reading.
func readTrace(t *testing.T, how string, data []byte) string {
	r, err := openAs(t, how, data, "fuzz")
	if err != nil {
		return "open: " + describe(err)
	}
	defer r.Close()
	var trace strings.Builder
	var p Packet
	for i := 0; i < 1<<16; i++ {
		if err := r.Next(&p); err != nil {
			trace.WriteString(describe(err))
			break
		}
		if len(p.Data) > p.OrigLen {
			t.Fatalf("captured %d > original %d", len(p.Data), p.OrigLen)
		}
		fmt.Fprintf(&trace, "%d %d %d %d %x\n", p.TS, p.Iface, p.LinkType, p.Offset, p.Data)
	}
	return trace.String()
}

// describe is an error without the file name, which differs between the ways
// of opening.
func describe(err error) string {
	var e *Error
	if errors.As(err, &e) {
		return fmt.Sprintf("%s at %d (gzip %v, damaged %v)", e.Msg, e.Offset, e.Gzip, errors.Is(err, ErrDamaged))
	}
	return err.Error()
}
