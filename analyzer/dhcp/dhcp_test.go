package dhcp

import (
	"errors"
	"net/netip"
	"slices"
	"testing"
)

// bootp builds a BOOTP header (RFC 2131 figure 1) followed by the magic
// cookie and the given raw options.
func bootp(op byte, opts ...byte) []byte {
	b := make([]byte, bootpLen)
	b[0], b[1], b[2] = op, 1, 6 // Ethernet, 6-byte address
	copy(b[4:], []byte{0xde, 0xad, 0xbe, 0xef})
	copy(b[16:], []byte{10, 0, 0, 9}) // yiaddr
	copy(b[28:], []byte{0x52, 0x54, 0, 0x12, 0x34, 0x56})
	b = append(b, magicCookie[:]...)
	return append(b, opts...)
}

func TestParse(t *testing.T) {
	offer := bootp(2,
		53, 1, 2,
		54, 4, 10, 0, 0, 1,
		51, 4, 0, 0, 0x0e, 0x10,
		3, 8, 10, 0, 0, 1, 10, 0, 0, 254,
		6, 8, 10, 0, 0, 1, 10, 0, 0, 2,
		15, 9, 'l', 'a', 'b', '.', 't', 'e', 's', 't', 0,
		0, 0, // pads
		255)
	m, err := Parse(offer)
	if err != nil {
		t.Fatal(err)
	}
	if m.Op != 2 || m.XID != 0xdeadbeef || m.ClientMAC.String() != "52:54:00:12:34:56" || m.YourIP != netip.MustParseAddr("10.0.0.9") ||
		MessageTypeName(m.MessageType) != "OFFER" || m.ServerID != netip.MustParseAddr("10.0.0.1") || m.LeaseTime != 3600 ||
		m.Router != netip.MustParseAddr("10.0.0.1") || len(m.DNSServers) != 2 || m.DNSServers[1] != netip.MustParseAddr("10.0.0.2") ||
		m.Domain != "lab.test" {
		t.Errorf("offer: %+v", m)
	}

	discover := bootp(1,
		53, 1, 1,
		61, 7, 1, 0x52, 0x54, 0, 0x12, 0x34, 0x56,
		12, 4, 'h', 'o', 's', 't',
		60, 4, 'M', 'S', 'F', 'T',
		55, 4, 1, 3, 6, 15,
		50, 4, 10, 0, 0, 9,
		12, 5, 'o', 't', 'h', 'e', 'r', // repeated: first wins
		255, 'x', 'y') // bytes after END are ignored
	m, err = Parse(discover)
	if err != nil {
		t.Fatal(err)
	}
	if MessageTypeName(m.MessageType) != "DISCOVER" || m.Hostname != "host" || m.VendorClass != "MSFT" ||
		!slices.Equal(m.ParamList, []uint8{1, 3, 6, 15}) || len(m.ClientID) != 7 || m.RequestedIP != netip.MustParseAddr("10.0.0.9") {
		t.Errorf("discover: %+v", m)
	}

	plain := bootp(1)[:bootpLen] // no cookie: plain BOOTP
	m, err = Parse(plain)
	if err != nil || m.MessageType != 0 || MessageTypeName(0) != "BOOTP" {
		t.Errorf("plain bootp: %+v %v", m, err)
	}

	// Option overload (52) is not followed, but must not break parsing.
	over := bootp(1, 52, 1, 3, 53, 1, 3, 255)
	copy(over[44:], []byte{12, 3, 'a', 'b', 'c', 255}) // options in sname
	m, err = Parse(over)
	if err != nil || MessageTypeName(m.MessageType) != "REQUEST" || m.Hostname != "" {
		t.Errorf("overload: %+v %v", m, err)
	}

	// Wrong-size fixed options are ignored, not misread.
	m, err = Parse(bootp(1, 53, 2, 1, 1, 50, 3, 1, 2, 3, 51, 1, 9, 3, 2, 1, 1, 255))
	if err != nil || m.MessageType != 0 || m.RequestedIP.IsValid() || m.LeaseTime != 0 || m.Router.IsValid() {
		t.Errorf("bad sizes: %+v %v", m, err)
	}
}

func TestParseErrors(t *testing.T) {
	if _, err := Parse(make([]byte, 100)); !errors.Is(err, ErrShort) {
		t.Errorf("short: %v", err)
	}
	b := bootp(3)
	if _, err := Parse(b); !errors.Is(err, ErrNotBOOTP) {
		t.Errorf("op 3: %v", err)
	}
	b = bootp(1)
	b[2] = 17
	if _, err := Parse(b); !errors.Is(err, ErrNotBOOTP) {
		t.Errorf("hlen 17: %v", err)
	}
	m, err := Parse(bootp(1, 53, 1, 1, 12, 10, 'a'))
	if !errors.Is(err, ErrOptions) || m == nil || m.MessageType != 1 {
		t.Errorf("truncated option: %+v %v", m, err)
	}
	m, err = Parse(bootp(1, 53, 1, 1, 12))
	if !errors.Is(err, ErrOptions) || m == nil {
		t.Errorf("option without length: %+v %v", m, err)
	}
}

func TestMessageTypeName(t *testing.T) {
	want := map[uint8]string{1: "DISCOVER", 2: "OFFER", 3: "REQUEST", 4: "DECLINE", 5: "ACK", 6: "NAK", 7: "RELEASE", 8: "INFORM", 200: "TYPE200"}
	for in, w := range want {
		if got := MessageTypeName(in); got != w {
			t.Errorf("MessageTypeName(%d) = %q, want %q", in, got, w)
		}
	}
}

func FuzzDHCP(f *testing.F) {
	f.Add(bootp(1, 53, 1, 1, 12, 4, 'h', 'o', 's', 't', 55, 3, 1, 3, 6, 255))
	f.Add(bootp(2, 53, 1, 2, 6, 8, 10, 0, 0, 1, 10, 0, 0, 2, 52, 1, 3, 255))
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := Parse(b)
		if m == nil {
			return
		}
		_ = err
		if len(m.ClientMAC) > 16 || len(m.ParamList) > 255 || len(m.DNSServers) > 64 {
			t.Fatalf("%+v", m)
		}
	})
}
