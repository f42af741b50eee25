package simnet

import (
	"encoding/binary"
	"net"
	"net/netip"
	"syscall"

	"golang.org/x/sys/unix"
)

// originalDst returns the destination the client addressed before an
// iptables REDIRECT (conntrack's SO_ORIGINAL_DST), or the local address when
// the connection was not redirected or is not TCP.
func originalDst(c net.Conn) string {
	local := c.LocalAddr().String()
	tc, ok := c.(*net.TCPConn)
	if !ok {
		return local
	}
	rc, err := tc.SyscallConn()
	if err != nil {
		return local
	}
	var dst netip.AddrPort
	rc.Control(func(fd uintptr) {
		// The kernel writes a struct sockaddr_in; IPv6Mreq is a 20-byte
		// buffer of the right size for it (the usual way to read this option).
		m, err := unix.GetsockoptIPv6Mreq(int(fd), unix.SOL_IP, unix.SO_ORIGINAL_DST)
		if err != nil {
			return // ENOENT: no NAT entry, the connection was not redirected
		}
		dst = sockaddrIn(m.Multiaddr[:])
	})
	if !dst.IsValid() {
		return local
	}
	return dst.String()
}

// sockaddrIn decodes a struct sockaddr_in (family, port big-endian, address).
func sockaddrIn(b []byte) netip.AddrPort {
	if len(b) < 8 || binary.NativeEndian.Uint16(b[0:2]) != unix.AF_INET {
		return netip.AddrPort{}
	}
	return netip.AddrPortFrom(netip.AddrFrom4([4]byte(b[4:8])), binary.BigEndian.Uint16(b[2:4]))
}

// transparentUDPControl prepares the catch-all UDP socket: IP_TRANSPARENT so
// the TPROXY rule may deliver datagrams for any address to it, and
// IP_RECVORIGDSTADDR so each datagram says where it was going. (An iptables
// REDIRECT would rewrite the header, and IP_ORIGDSTADDR reports the header's
// address, so UDP uses TPROXY, not REDIRECT.) IP_TRANSPARENT needs
// CAP_NET_ADMIN; without it the socket still works for traffic addressed to
// it directly, and *transparent reports what happened.
func transparentUDPControl(transparent *bool) func(network, address string, c syscall.RawConn) error {
	return func(network, address string, c syscall.RawConn) error {
		var serr error
		err := c.Control(func(fd uintptr) {
			*transparent = unix.SetsockoptInt(int(fd), unix.SOL_IP, unix.IP_TRANSPARENT, 1) == nil
			serr = unix.SetsockoptInt(int(fd), unix.SOL_IP, unix.IP_RECVORIGDSTADDR, 1)
		})
		if err != nil {
			return err
		}
		return serr
	}
}

// origDstFromOOB finds IP_ORIGDSTADDR in a datagram's control messages.
func origDstFromOOB(oob []byte) netip.AddrPort {
	msgs, err := unix.ParseSocketControlMessage(oob)
	if err != nil {
		return netip.AddrPort{}
	}
	for _, m := range msgs {
		if m.Header.Level == unix.SOL_IP && m.Header.Type == unix.IP_ORIGDSTADDR {
			return sockaddrIn(m.Data)
		}
	}
	return netip.AddrPort{}
}
