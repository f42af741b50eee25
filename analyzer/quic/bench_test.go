package quic

import "testing"

func BenchmarkParseInitials(b *testing.B) {
	dg := readHex(b, "rfc9001-a2-client-initial.hex")
	b.ReportAllocs()
	b.SetBytes(int64(len(dg)))
	for b.Loop() {
		if _, err := ParseInitials(dg); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkRejectShortHeader is the common case on UDP/443: 1-RTT packets
// that must be turned away cheaply.
func BenchmarkRejectShortHeader(b *testing.B) {
	dg := make([]byte, 1200)
	dg[0] = 0x41
	b.ReportAllocs()
	for b.Loop() {
		if _, err := ParseInitials(dg); err == nil {
			b.Fatal("accepted a short header packet")
		}
	}
}
