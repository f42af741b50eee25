package quic

import (
	"testing"
)

func FuzzParseInitials(f *testing.F) {
	f.Add(readHex(f, "rfc9001-a2-client-initial.hex"))
	f.Add(readHex(f, "rfc9369-a2-client-initial.hex"))
	for _, d := range readGolden(f, "quic-go-v1-initials") {
		f.Add(d)
	}
	f.Add([]byte{0xe0, 0, 0, 0, 1, 0, 0, 0x03, 0xaa, 0xbb, 0xcc})
	f.Fuzz(func(t *testing.T, dg []byte) {
		ins, err := ParseInitials(dg)
		if err != nil && ins != nil {
			t.Fatal("initials with error")
		}
		var cs CryptoStream
		total := 0
		for _, in := range ins {
			for _, fr := range in.Frames {
				total += len(fr.Data)
				cs.Add(fr, 1<<16)
			}
		}
		if total > len(dg) || len(cs.Bytes()) > total {
			t.Fatalf("more CRYPTO bytes (%d) than the datagram holds (%d)", total, len(dg))
		}
	})
}

// FuzzParseFrames reaches the frame parser directly: random bytes almost
// never pass AEAD authentication, so FuzzParseInitials rarely gets there.
func FuzzParseFrames(f *testing.F) {
	f.Add(append([]byte{0x02, 0x05, 0x00, 0x01, 0x00, 0x01, 0x02, 0x06, 0, 3}, "abc"...))
	f.Add([]byte{0x1c, 0x0a, 0x06, 0x02, 'h', 'i', 0x06, 0x40, 0x05, 0x01, 'x'})
	f.Fuzz(func(t *testing.T, p []byte) {
		var cs CryptoStream
		for _, fr := range parseFrames(p) {
			if len(fr.Data) > len(p) {
				t.Fatal("frame longer than payload")
			}
			cs.Add(fr, 4096)
		}
		if len(cs.Bytes()) > 4096 {
			t.Fatal("stream exceeds max")
		}
	})
}
