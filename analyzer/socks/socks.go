// Package socks reads the handshake of a SOCKS proxy connection (SOCKS4,
// SOCKS4a and SOCKS5 with its authentication sub-negotiation, RFC 1928 and
// RFC 1929) from the two directions of a TCP stream, so the analyzer can
// tell where the proxy was asked to connect and where the tunnelled bytes
// start. It reads untrusted capture bytes: it never panics and never reads
// past what it is given.
package socks

import (
	"errors"
	"fmt"
	"net/netip"
	"strconv"
)

// ErrIncomplete means the message continues in bytes not yet seen.
var ErrIncomplete = errors.New("socks: incomplete message")

// ErrNotSOCKS means the bytes are not the SOCKS message expected.
var ErrNotSOCKS = errors.New("socks: not a SOCKS message")

// Request is where the client asked the proxy to connect.
type Request struct {
	// Version is "socks4", "socks4a" (a host name for the proxy to
	// resolve) or "socks5".
	Version string
	// Cmd is 1 (CONNECT), 2 (BIND) or 3 (UDP ASSOCIATE, SOCKS5).
	Cmd uint8
	// Host is the host name asked for (SOCKS4a, SOCKS5), Addr the address
	// (SOCKS4, SOCKS5); one of them is set.
	Host string
	Addr netip.Addr
	Port uint16
}

// Target is "host:port" (an IPv6 address in brackets).
func (r *Request) Target() string {
	h := r.Host
	if h == "" {
		h = r.Addr.String()
	}
	return netipJoin(h, r.Port)
}

func netipJoin(h string, port uint16) string {
	if a, err := netip.ParseAddr(h); err == nil && a.Is6() {
		h = "[" + h + "]"
	}
	return h + ":" + strconv.Itoa(int(port))
}

// Looks reports whether a client's first bytes can start a SOCKS
// handshake: a SOCKS4 CONNECT or BIND, or a SOCKS5 greeting listing its
// authentication methods and nothing after them.
func Looks(b []byte) bool {
	if len(b) < 2 {
		return false
	}
	switch b[0] {
	case 4:
		return (b[1] == 1 || b[1] == 2) && len(b) >= 9
	case 5:
		n := int(b[1])
		if n == 0 || len(b) != 2+n {
			return false
		}
		for _, m := range b[2:] {
			if m > 0x09 && m < 0x80 || m == 0xff { // unassigned, or "no acceptable methods"
				return false
			}
		}
		return true
	}
	return false
}

// Client reads the client's side of the handshake, one message at a time.
type Client struct {
	greeted bool // a SOCKS5 greeting was read
	Done    bool // the request was read
	Request Request
}

// Next reads the client's next message from the start of b and returns
// its length. After the request, Done is set and Request holds it.
func (c *Client) Next(b []byte) (int, error) {
	if c.Done {
		return 0, fmt.Errorf("%w: the request was read already", ErrNotSOCKS)
	}
	if len(b) < 1 {
		return 0, ErrIncomplete
	}
	switch {
	case !c.greeted && b[0] == 4:
		return c.socks4(b)
	case !c.greeted && b[0] == 5:
		if len(b) < 2 {
			return 0, ErrIncomplete
		}
		n := 2 + int(b[1])
		if len(b) < n {
			return 0, ErrIncomplete
		}
		c.greeted = true
		return n, nil
	case c.greeted && b[0] == 1: // username/password (RFC 1929)
		if len(b) < 2 {
			return 0, ErrIncomplete
		}
		n := 2 + int(b[1])
		if len(b) < n+1 {
			return 0, ErrIncomplete
		}
		n += 1 + int(b[n])
		if len(b) < n {
			return 0, ErrIncomplete
		}
		return n, nil
	case c.greeted && b[0] == 5:
		if len(b) < 4 {
			return 0, ErrIncomplete
		}
		c.Request = Request{Version: "socks5", Cmd: b[1]}
		n, err := readAddr(b[3:], &c.Request.Host, &c.Request.Addr)
		if err != nil {
			return 0, err
		}
		n += 3
		if len(b) < n+2 {
			return 0, ErrIncomplete
		}
		c.Request.Port = uint16(b[n])<<8 | uint16(b[n+1])
		c.Done = true
		return n + 2, nil
	}
	return 0, fmt.Errorf("%w: client message starts with %#x", ErrNotSOCKS, b[0])
}

// socks4 reads a SOCKS4 or SOCKS4a request: version, command, port,
// address, user id and, for 4a (address 0.0.0.x), the host name.
func (c *Client) socks4(b []byte) (int, error) {
	if len(b) < 9 {
		return 0, ErrIncomplete
	}
	c.Request = Request{Version: "socks4", Cmd: b[1], Port: uint16(b[2])<<8 | uint16(b[3]),
		Addr: netip.AddrFrom4([4]byte(b[4:8]))}
	end := indexZero(b[8:])
	if end < 0 {
		if len(b) > 8+255 {
			return 0, fmt.Errorf("%w: SOCKS4 user id longer than 255 bytes", ErrNotSOCKS)
		}
		return 0, ErrIncomplete
	}
	n := 8 + end + 1
	if a := c.Request.Addr.As4(); a[0] == 0 && a[1] == 0 && a[2] == 0 && a[3] != 0 {
		end := indexZero(b[n:])
		if end < 0 {
			if len(b) > n+255 {
				return 0, fmt.Errorf("%w: SOCKS4a host name longer than 255 bytes", ErrNotSOCKS)
			}
			return 0, ErrIncomplete
		}
		c.Request.Version, c.Request.Host, c.Request.Addr = "socks4a", string(b[n:n+end]), netip.Addr{}
		n += end + 1
	}
	c.Done = true
	return n, nil
}

func indexZero(b []byte) int {
	for i, c := range b {
		if c == 0 {
			return i
		}
	}
	return -1
}

// readAddr reads a SOCKS5 address (type byte, then IPv4, a length-prefixed
// host name or IPv6) into host or addr and returns its length.
func readAddr(b []byte, host *string, addr *netip.Addr) (int, error) {
	if len(b) < 1 {
		return 0, ErrIncomplete
	}
	switch b[0] {
	case 1:
		if len(b) < 5 {
			return 0, ErrIncomplete
		}
		*addr = netip.AddrFrom4([4]byte(b[1:5]))
		return 5, nil
	case 3:
		if len(b) < 2 || len(b) < 2+int(b[1]) {
			return 0, ErrIncomplete
		}
		*host = string(b[2 : 2+int(b[1])])
		return 2 + int(b[1]), nil
	case 4:
		if len(b) < 17 {
			return 0, ErrIncomplete
		}
		*addr = netip.AddrFrom16([16]byte(b[1:17]))
		return 17, nil
	}
	return 0, fmt.Errorf("%w: address type %d", ErrNotSOCKS, b[0])
}

// Server reads the proxy's side of the handshake, one message at a time.
type Server struct {
	selected bool // SOCKS5: the method selection was read
	Done     bool // the reply to the request was read
	// Granted is the reply's verdict: the proxy opened the connection and
	// the bytes after the reply are the tunnel's.
	Granted bool
}

// Next reads the proxy's next message from the start of b; version is the
// client's request version ("socks4", "socks4a", "socks5", or "" when the
// client's request was not read: then the first byte decides).
func (s *Server) Next(b []byte, version string) (int, error) {
	if s.Done {
		return 0, fmt.Errorf("%w: the reply was read already", ErrNotSOCKS)
	}
	if len(b) < 1 {
		return 0, ErrIncomplete
	}
	v4 := version == "socks4" || version == "socks4a" || version == "" && b[0] == 0
	switch {
	case v4:
		if b[0] != 0 {
			return 0, fmt.Errorf("%w: SOCKS4 reply version %d", ErrNotSOCKS, b[0])
		}
		if len(b) < 8 {
			return 0, ErrIncomplete
		}
		s.Done, s.Granted = true, b[1] == 0x5a
		return 8, nil
	case !s.selected && b[0] == 5:
		if len(b) < 2 {
			return 0, ErrIncomplete
		}
		s.selected = true
		if b[1] == 0xff { // no acceptable method: the proxy closes
			s.Done = true
		}
		return 2, nil
	case s.selected && b[0] == 1: // username/password status
		if len(b) < 2 {
			return 0, ErrIncomplete
		}
		if b[1] != 0 {
			s.Done = true
		}
		return 2, nil
	case s.selected && b[0] == 5:
		if len(b) < 4 {
			return 0, ErrIncomplete
		}
		var host string
		var addr netip.Addr
		n, err := readAddr(b[3:], &host, &addr)
		if err != nil {
			return 0, err
		}
		n += 3 + 2
		if len(b) < n {
			return 0, ErrIncomplete
		}
		s.Done, s.Granted = true, b[1] == 0
		return n, nil
	}
	return 0, fmt.Errorf("%w: proxy message starts with %#x", ErrNotSOCKS, b[0])
}
