package dataset

import (
	"bytes"
	"io"
	"os"
	"path/filepath"
	"testing"
)

// FuzzFrame: the anonymiser never panics and never changes a frame's length.
func FuzzFrame(f *testing.F) {
	f.Add(uint32(1), []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x52, 0x54, 0, 0x12, 0x34, 0x56, 0x08, 0x00, 0x45, 0, 0, 20})
	f.Add(uint32(101), []byte{0x60, 0, 0, 0, 0, 8, 17, 64})
	f.Add(uint32(276), make([]byte, 60))
	f.Add(uint32(113), make([]byte, 40))
	f.Fuzz(func(t *testing.T, link uint32, data []byte) {
		an, err := newAnonymizer(identifiers{MachineMAC: "52:54:00:12:34:56", MachineIP: "10.77.0.57", Gateway: "10.77.0.1", Subnet: "10.77.0.0/24", Hostname: "labguest-7"})
		if err != nil {
			t.Fatal(err)
		}
		d := append([]byte(nil), data...)
		an.frame(link%300, d)
		if len(d) != len(data) {
			t.Fatalf("length changed")
		}
		an.text(string(data))
	})
}

// FuzzSplit: splitting any bytes never panics.
func FuzzSplit(f *testing.F) {
	f.Add([]byte{0x0A, 0x0D, 0x0D, 0x0A, 0x1c, 0, 0, 0, 0x4D, 0x3C, 0x2B, 0x1A})
	f.Add([]byte{0xd4, 0xc3, 0xb2, 0xa1, 2, 0, 4, 0})
	f.Fuzz(func(t *testing.T, data []byte) {
		p := filepath.Join(t.TempDir(), "c")
		os.WriteFile(p, data, 0o644)
		splitCapture(p, []Span{{Name: "a"}}, func(string) (io.Writer, error) { return &bytes.Buffer{}, nil })
	})
}

func TestContainsIPv4(t *testing.T) {
	for s, want := range map[string]bool{
		"ip 10.0.0.5 here": true, "10.0.0.5": true, "10.0.0.5.": true, "(10.0.0.5)": true, "10.0.0.5/24": true,
		"10.0.0.50": false, "110.0.0.5": false, "10.0.0.5.1": false, "1.10.0.0.5": false, "": false,
	} {
		if got := containsIPv4(s, "10.0.0.5"); got != want {
			t.Errorf("containsIPv4(%q) = %v", s, got)
		}
	}
}
