package simnet

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// ctnetlink message and attribute numbers (linux/netfilter/nfnetlink_conntrack.h);
// x/sys/unix does not define them.
const (
	ipctnlMsgCtGet   = 1
	ctaTupleOrig     = 1
	ctaTupleReply    = 2
	ctaTupleIP       = 1
	ctaTupleProto    = 2
	ctaIPv4Src       = 1
	ctaIPv4Dst       = 2
	ctaProtoNum      = 1
	ctaProtoSrcPort  = 2
	ctaProtoDstPort  = 3
	conntrackTimeout = 200 * time.Millisecond
)

// conntrack asks the kernel's connection tracker where a REDIRECTed UDP
// datagram was originally going. conntrack is the only record of it: the
// REDIRECT rewrote the header, and SO_ORIGINAL_DST works for TCP only. The
// netlink socket is opened by Start, so it queries the namespace the
// responders live in.
type conntrack struct {
	mu  sync.Mutex
	fd  int
	seq uint32
}

func openConntrack() (*conntrack, error) {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_NETFILTER)
	if err != nil {
		return nil, fmt.Errorf("open conntrack netlink socket: %w", err)
	}
	tv := unix.NsecToTimeval(conntrackTimeout.Nanoseconds())
	if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("conntrack socket timeout: %w", err)
	}
	if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("bind conntrack netlink socket: %w", err)
	}
	return &conntrack{fd: fd}, nil
}

func (c *conntrack) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.fd < 0 {
		return nil
	}
	err := unix.Close(c.fd)
	c.fd = -1
	return err
}

// origDstUDP looks up the entry whose reply direction is local → client and
// returns its original destination. ok is false when there is no entry (the
// datagram was not NATed, or conntrack is not loaded).
func (c *conntrack) origDstUDP(local, client netip.AddrPort) (netip.AddrPort, bool) {
	if c == nil || !local.Addr().Is4() || !client.Addr().Unmap().Is4() {
		return netip.AddrPort{}, false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.fd < 0 {
		return netip.AddrPort{}, false
	}
	c.seq++
	req := ctGetRequest(c.seq, local, netip.AddrPortFrom(client.Addr().Unmap(), client.Port()))
	if err := unix.Sendto(c.fd, req, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return netip.AddrPort{}, false
	}
	buf := make([]byte, 8192)
	for {
		n, _, err := unix.Recvfrom(c.fd, buf, 0)
		if err != nil {
			return netip.AddrPort{}, false
		}
		dst, seq, done, err := parseCtReply(buf[:n])
		if seq != c.seq { // a late answer to an earlier, timed-out query
			continue
		}
		if err != nil || !done {
			return netip.AddrPort{}, false
		}
		return dst, dst.IsValid()
	}
}

func nlAttr(typ uint16, payload []byte) []byte {
	l := 4 + len(payload)
	b := make([]byte, 4, (l+3)&^3)
	binary.NativeEndian.PutUint16(b[0:], uint16(l))
	binary.NativeEndian.PutUint16(b[2:], typ)
	b = append(b, payload...)
	for len(b)%4 != 0 {
		b = append(b, 0)
	}
	return b
}

func nested(typ uint16, attrs ...[]byte) []byte {
	var p []byte
	for _, a := range attrs {
		p = append(p, a...)
	}
	return nlAttr(typ|unix.NLA_F_NESTED, p)
}

func be16(v uint16) []byte { return binary.BigEndian.AppendUint16(nil, v) }

// ctGetRequest builds IPCTNL_MSG_CT_GET for the UDP tuple src → dst in the
// reply direction.
func ctGetRequest(seq uint32, src, dst netip.AddrPort) []byte {
	s4, d4 := src.Addr().As4(), dst.Addr().As4()
	tuple := nested(ctaTupleReply,
		nested(ctaTupleIP, nlAttr(ctaIPv4Src, s4[:]), nlAttr(ctaIPv4Dst, d4[:])),
		nested(ctaTupleProto, nlAttr(ctaProtoNum, []byte{unix.IPPROTO_UDP}),
			nlAttr(ctaProtoSrcPort, be16(src.Port())), nlAttr(ctaProtoDstPort, be16(dst.Port()))))
	body := append([]byte{unix.AF_INET, unix.NFNETLINK_V0, 0, 0}, tuple...)
	msg := make([]byte, unix.NLMSG_HDRLEN, unix.NLMSG_HDRLEN+len(body))
	binary.NativeEndian.PutUint32(msg[0:], uint32(unix.NLMSG_HDRLEN+len(body)))
	binary.NativeEndian.PutUint16(msg[4:], unix.NFNL_SUBSYS_CTNETLINK<<8|ipctnlMsgCtGet)
	binary.NativeEndian.PutUint16(msg[6:], unix.NLM_F_REQUEST)
	binary.NativeEndian.PutUint32(msg[8:], seq)
	return append(msg, body...)
}

// parseCtReply reads the first netlink message in b: an error message, or
// a conntrack entry whose original-direction destination it returns.
func parseCtReply(b []byte) (dst netip.AddrPort, seq uint32, done bool, err error) {
	if len(b) < unix.NLMSG_HDRLEN {
		return dst, 0, false, errors.New("short netlink message")
	}
	l := int(binary.NativeEndian.Uint32(b[0:]))
	typ := binary.NativeEndian.Uint16(b[4:])
	seq = binary.NativeEndian.Uint32(b[8:])
	if l < unix.NLMSG_HDRLEN || l > len(b) {
		return dst, seq, false, errors.New("bad netlink length")
	}
	b = b[unix.NLMSG_HDRLEN:l]
	if typ == unix.NLMSG_ERROR {
		if len(b) >= 4 {
			if e := int32(binary.NativeEndian.Uint32(b)); e != 0 {
				return dst, seq, true, unix.Errno(-e)
			}
		}
		return dst, seq, true, errors.New("no conntrack entry")
	}
	if len(b) < 4 {
		return dst, seq, true, errors.New("short conntrack message")
	}
	orig := findAttr(b[4:], ctaTupleOrig)
	ip, proto := findAttr(orig, ctaTupleIP), findAttr(orig, ctaTupleProto)
	a, p := findAttr(ip, ctaIPv4Dst), findAttr(proto, ctaProtoDstPort)
	if len(a) != 4 || len(p) != 2 {
		return dst, seq, true, errors.New("conntrack entry without an IPv4 original destination")
	}
	return netip.AddrPortFrom(netip.AddrFrom4([4]byte(a)), binary.BigEndian.Uint16(p)), seq, true, nil
}

// findAttr returns the payload of the first attribute of type typ (flags
// ignored) in a run of netlink attributes, or nil.
func findAttr(b []byte, typ uint16) []byte {
	for len(b) >= 4 {
		l := int(binary.NativeEndian.Uint16(b[0:]))
		t := binary.NativeEndian.Uint16(b[2:]) &^ (unix.NLA_F_NESTED | unix.NLA_F_NET_BYTEORDER)
		if l < 4 || l > len(b) {
			return nil
		}
		if t == typ {
			return b[4:l]
		}
		l = (l + 3) &^ 3
		if l > len(b) {
			return nil
		}
		b = b[l:]
	}
	return nil
}
