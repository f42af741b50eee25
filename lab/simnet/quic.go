package simnet

import (
	"context"
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"syscall"
	"time"

	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/http3"
)

// startQUIC runs a quic-go listener with the lab CA on udp port, serving
// HTTP/3 with the same answers as HTTP and HTTPS. Every Initial datagram
// is logged (size, version) before quic-go sees it, and the ClientHello
// (SNI, ALPN) through the TLS config, so a guest that does not trust the
// CA is still recorded.
func (r *Responders) startQUIC(ctx context.Context, port int) error {
	uc, err := r.listenUDP(ctx, "quic", port, nil)
	if err != nil {
		return err
	}
	r.ports.QUIC = uc.LocalAddr().(*net.UDPAddr).Port
	tr := &quic.Transport{Conn: &quicLogConn{PacketConn: uc, udp: uc, r: r}}
	ln, err := tr.ListenEarly(r.tlsConfig("quic", "udp", []string{"h3"}), &quic.Config{})
	if err != nil {
		tr.Close()
		return fmt.Errorf("simnet: start QUIC listener: %w", err)
	}
	srv := &http3.Server{
		Handler:     r.httpHandler("quic"),
		IdleTimeout: 30 * time.Second,
		ConnContext: func(ctx context.Context, c *quic.Conn) context.Context {
			st := c.ConnectionState()
			dst := r.udpDst(c.LocalAddr(), addrPort(c.RemoteAddr()))
			r.log.log(Event{Service: "quic", Proto: "udp", Client: c.RemoteAddr().String(), Dst: dst,
				SNI: st.TLS.ServerName, ALPN: nonEmpty(st.TLS.NegotiatedProtocol), Detail: "handshake complete"})
			return context.WithValue(ctx, connInfoKey{}, connInfo{dst: dst})
		},
	}
	// Closers run in reverse: server, listener, transport, then the socket.
	r.addCloser(tr)
	r.addCloser(ln)
	r.addCloser(srv)
	r.goServe(func() { srv.ServeListener(ln) })
	return nil
}

func nonEmpty(s string) []string {
	if s == "" {
		return nil
	}
	return []string{s}
}

// quicLogConn logs Initial packets on their way into quic-go. It exposes
// only the plain PacketConn methods (plus buffer sizing), so quic-go reads
// through ReadFrom rather than its batch/OOB path that would bypass the log.
type quicLogConn struct {
	net.PacketConn
	udp *net.UDPConn
	r   *Responders
}

func (q *quicLogConn) ReadFrom(b []byte) (int, net.Addr, error) {
	n, from, err := q.PacketConn.ReadFrom(b)
	if err == nil && n > 0 {
		if kind, version, ok := quicLongHeader(b[:n]); ok && kind != "Handshake" && kind != "Retry" {
			q.r.log.log(Event{Service: "quic", Proto: "udp", Client: from.String(), Dst: q.r.udpDst(q.udp.LocalAddr(), addrPort(from)),
				Size: n, Detail: fmt.Sprintf("%s packet, version 0x%08x", kind, version)})
		}
	}
	return n, from, err
}

func (q *quicLogConn) SetReadBuffer(n int) error             { return q.udp.SetReadBuffer(n) }
func (q *quicLogConn) SetWriteBuffer(n int) error            { return q.udp.SetWriteBuffer(n) }
func (q *quicLogConn) SyscallConn() (syscall.RawConn, error) { return q.udp.SyscallConn() }
func (q *quicLogConn) Close() error                          { return nil } // the socket's own closer closes it

// quicLongHeader reads the invariant long header (RFC 8999) and names the
// packet type for QUIC v1 (RFC 9000) and v2 (RFC 9369).
func quicLongHeader(b []byte) (kind string, version uint32, ok bool) {
	if len(b) < 5 || b[0]&0x80 == 0 {
		return "", 0, false
	}
	version = binary.BigEndian.Uint32(b[1:5])
	t := b[0] >> 4 & 3
	switch version {
	case 0:
		return "version negotiation", 0, true
	case 0x00000001:
		return [4]string{"Initial", "0-RTT", "Handshake", "Retry"}[t], version, true
	case 0x6b3343cf:
		return [4]string{"Retry", "Initial", "0-RTT", "Handshake"}[t], version, true
	}
	return "unknown-version long header", version, true
}

func addrPort(a net.Addr) netip.AddrPort {
	if u, ok := a.(*net.UDPAddr); ok {
		return u.AddrPort()
	}
	ap, _ := netip.ParseAddrPort(a.String())
	return ap
}
