package socks

import (
	"encoding/hex"
	"errors"
	"net/netip"
	"testing"
)

func unhex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// readAll feeds a direction's bytes to next until done or an error.
func readAll(t *testing.T, b []byte, next func([]byte) (int, error), done func() bool) error {
	t.Helper()
	for len(b) > 0 && !done() {
		n, err := next(b)
		if err != nil {
			return err
		}
		b = b[n:]
	}
	return nil
}

// TestHandshakes reads curl's and dante's bytes from TestRealProxiesAndUpgrades'
// capture (SOCKS5 with and without the proxy resolving, SOCKS4), and
// RFC 1928/1929's and the SOCKS4a protocol's layouts.
func TestHandshakes(t *testing.T) {
	for _, tc := range []struct {
		name, client, server string
		want                 Request
		granted              bool
	}{
		{"socks5 hostname (curl, dante)", "05020001" + "050100030c736f636b7335682e7465737401bb", "0500" + "050000010a500001e224",
			Request{Version: "socks5", Cmd: 1, Host: "socks5h.test", Port: 443}, true},
		{"socks5 address", "050100" + "050100010a50000101bb", "0500" + "050000010a500001e224",
			Request{Version: "socks5", Cmd: 1, Port: 443}, true},
		{"socks5 username/password", "050102" + "0104757365720470617373" + "050100040000000000000000000000000000000101bb",
			"0502" + "0100" + "05000001000000000000", Request{Version: "socks5", Cmd: 1, Port: 443}, true},
		{"socks5 refused", "050100" + "050100030161" + "0050", "0500" + "05020001000000000000", Request{Version: "socks5", Cmd: 1, Host: "a", Port: 80}, false},
		{"socks4 (curl)", "040101bb0a50000100", "005a01bb0a500001", Request{Version: "socks4", Cmd: 1, Port: 443}, true},
		{"socks4a", "040101bb000000017500" + hex.EncodeToString([]byte("socks4a.test")) + "00", "005a000000000000",
			Request{Version: "socks4a", Cmd: 1, Host: "socks4a.test", Port: 443}, true},
		{"socks4 rejected", "040101bb0a50000100", "005b000000000000", Request{Version: "socks4", Cmd: 1, Port: 443}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cb := unhex(t, tc.client)
			first := cb // SOCKS4: the request; SOCKS5: the greeting alone
			if cb[0] == 5 {
				first = cb[:2+int(cb[1])]
			}
			if !Looks(first) {
				t.Errorf("Looks(%x) = false", first)
			}
			var c Client
			if err := readAll(t, cb, c.Next, func() bool { return c.Done }); err != nil || !c.Done {
				t.Fatalf("client: done %v err %v", c.Done, err)
			}
			got := c.Request
			if got.Version != tc.want.Version || got.Cmd != tc.want.Cmd || got.Host != tc.want.Host || got.Port != tc.want.Port {
				t.Errorf("request %+v, want %+v", got, tc.want)
			}
			var s Server
			if err := readAll(t, unhex(t, tc.server), func(b []byte) (int, error) { return s.Next(b, got.Version) }, func() bool { return s.Done }); err != nil {
				t.Fatal(err)
			}
			if !s.Done || s.Granted != tc.granted {
				t.Errorf("reply done %v granted %v, want %v", s.Done, s.Granted, tc.granted)
			}
			// Every cut of the client's bytes is incomplete, never wrong.
			for n := 1; n < len(cb); n++ {
				var c Client
				if err := readAll(t, cb[:n], c.Next, func() bool { return c.Done }); err != nil && !errors.Is(err, ErrIncomplete) {
					t.Errorf("client bytes cut at %d: %v", n, err)
				}
			}
		})
	}
	if got := (&Request{Addr: mustAddr(t, "fd80::1"), Port: 443}).Target(); got != "[fd80::1]:443" {
		t.Errorf("Target = %q", got)
	}
	for _, b := range []string{"16030100", "474554202f", "0500", "05010a", "0401"} {
		if Looks(unhex(t, b)) {
			t.Errorf("Looks(%s) = true", b)
		}
	}
}

func FuzzSOCKS(f *testing.F) {
	f.Add(unhex(f, "05020001050100030c736f636b7335682e7465737401bb"), unhex(f, "0500050000010a500001e224"))
	f.Add(unhex(f, "040101bb000000017500736f636b7334612e7465737400"), unhex(f, "005a000000000000"))
	f.Add(unhex(f, "0501020104757365720470617373"), unhex(f, "05020100"))
	f.Fuzz(func(t *testing.T, client, server []byte) {
		Looks(client)
		var c Client
		for b := client; len(b) > 0 && !c.Done; {
			n, err := c.Next(b)
			if err != nil {
				break
			}
			if n <= 0 || n > len(b) {
				t.Fatalf("client message of %d bytes in %d", n, len(b))
			}
			b = b[n:]
		}
		_ = c.Request.Target()
		var s Server
		for b := server; len(b) > 0 && !s.Done; {
			n, err := s.Next(b, c.Request.Version)
			if err != nil {
				break
			}
			if n <= 0 || n > len(b) {
				t.Fatalf("server message of %d bytes in %d", n, len(b))
			}
			b = b[n:]
		}
	})
}

func mustAddr(t *testing.T, s string) netip.Addr {
	t.Helper()
	a, err := netip.ParseAddr(s)
	if err != nil {
		t.Fatal(err)
	}
	return a
}
