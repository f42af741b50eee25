package ntp

import (
	"encoding/binary"
	"errors"
	"testing"
	"time"
)

// packet builds a 48-byte header (RFC 5905 figure 8).
func packet(li, vn, mode, stratum uint8, poll, prec int8, refid [4]byte, xmitSec, xmitFrac uint32) []byte {
	b := make([]byte, HeaderLen)
	b[0] = li<<6 | vn<<3 | mode
	b[1] = stratum
	b[2] = byte(poll)
	b[3] = byte(prec)
	copy(b[12:], refid[:])
	binary.BigEndian.PutUint32(b[40:], xmitSec)
	binary.BigEndian.PutUint32(b[44:], xmitFrac)
	return b
}

func TestParse(t *testing.T) {
	// 3913056000 s after 1900-01-01 is 2024-01-01T00:00:00Z (RFC 5905
	// section 6: NTP epoch 1900; 2208988800 s before the Unix epoch).
	const sec2024 = 3913056000
	tests := []struct {
		name    string
		in      []byte
		version uint8
		mode    string
		refID   string
		xmit    time.Time
	}{
		{"client v4", packet(0, 4, 3, 0, 6, -20, [4]byte{}, sec2024, 1<<31), 4, "client", "0.0.0.0",
			time.Date(2024, 1, 1, 0, 0, 0, 500000000, time.UTC)},
		{"server stratum 2 ip refid", packet(0, 4, 4, 2, 6, -24, [4]byte{192, 0, 2, 1}, sec2024, 0), 4, "server", "192.0.2.1",
			time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)},
		{"stratum 1 GPS", packet(0, 3, 4, 1, 4, -20, [4]byte{'G', 'P', 'S', 0}, sec2024, 0), 3, "server", "GPS",
			time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)},
		{"kiss of death RATE", packet(3, 4, 4, 0, 4, 0, [4]byte{'R', 'A', 'T', 'E'}, 0, 0), 4, "server", "RATE", time.Time{}},
		{"stratum 1 non-printable", packet(0, 4, 4, 1, 4, 0, [4]byte{127, 127, 1, 1}, 0, 0), 4, "server", "127.127.1.1", time.Time{}},
		{"v1 symmetric active", packet(0, 1, 1, 3, 6, 0, [4]byte{10, 0, 0, 1}, 0, 0), 1, "symmetric-active", "10.0.0.1", time.Time{}},
		{"broadcast with extension", append(packet(0, 4, 5, 2, 6, 0, [4]byte{1, 2, 3, 4}, 0, 0), make([]byte, 20)...), 4, "broadcast", "1.2.3.4", time.Time{}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p, err := Parse(tc.in)
			if err != nil {
				t.Fatal(err)
			}
			if p.Version != tc.version || ModeName(p.Mode) != tc.mode || p.RefID != tc.refID || !p.XmitTime.Equal(tc.xmit) {
				t.Errorf("got %+v", p)
			}
			if p.Poll != int8(tc.in[2]) || p.Precision != int8(tc.in[3]) || p.Stratum != tc.in[1] {
				t.Errorf("poll/precision/stratum %+v", p)
			}
		})
	}
}

func TestParseErrors(t *testing.T) {
	if _, err := Parse(make([]byte, 47)); !errors.Is(err, ErrShort) {
		t.Errorf("47 bytes: %v", err)
	}
	for _, v := range []uint8{0, 5, 7} {
		if _, err := Parse(packet(0, v, 3, 0, 0, 0, [4]byte{}, 0, 0)); !errors.Is(err, ErrVersion) {
			t.Errorf("version %d: %v", v, err)
		}
	}
}

func TestModeName(t *testing.T) {
	want := []string{"reserved", "symmetric-active", "symmetric-passive", "client", "server", "broadcast", "control", "private"}
	for m, w := range want {
		if got := ModeName(uint8(m)); got != w {
			t.Errorf("ModeName(%d) = %q, want %q", m, got, w)
		}
	}
	if got := ModeName(9); got != "mode-9" {
		t.Errorf("ModeName(9) = %q", got)
	}
}

func FuzzNTP(f *testing.F) {
	f.Add(packet(0, 4, 3, 0, 6, -20, [4]byte{}, 3913056000, 1<<31))
	f.Add(packet(3, 4, 4, 0, 4, 0, [4]byte{'R', 'A', 'T', 'E'}, 0, 0))
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := Parse(b)
		if err != nil {
			return
		}
		if p.Version < 1 || p.Version > 4 || p.Mode > 7 || len(p.RefID) == 0 || len(p.RefID) > 15 {
			t.Fatalf("%+v", p)
		}
		for _, ts := range []time.Time{p.RefTime, p.OrigTime, p.RecvTime, p.XmitTime} {
			if !ts.IsZero() && (ts.Year() < 1900 || ts.Year() > 2036) {
				t.Fatalf("timestamp %v outside era 0", ts)
			}
		}
	})
}
