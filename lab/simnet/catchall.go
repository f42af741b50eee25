package simnet

import (
	"errors"
	"net"
	"os"
	"time"
)

const (
	catchAllMax     = 4096                   // bytes read from a catch-all connection
	catchAllWait    = 2 * time.Second        // longest wait for a client to speak
	catchAllLinger  = 250 * time.Millisecond // after the first bytes, wait this long for more
	catchAllHexMax  = 128                    // bytes shown as hex in the log
	catchAllTextMax = 1024                   // bytes shown as text in the log
)

// serveCatchAllTCP records what a client sends first to an address/port the
// lab has no service for, then closes the connection.
func (r *Responders) serveCatchAllTCP(c net.Conn) {
	defer c.Close()
	client, dst := c.RemoteAddr().String(), originalDst(c)
	start := time.Now()
	c.SetReadDeadline(start.Add(catchAllWait))
	buf := make([]byte, catchAllMax)
	n := 0
	var rerr error
	for n < len(buf) {
		m, err := c.Read(buf[n:])
		if m > 0 && n == 0 {
			// Most clients send one message and wait for an answer: do not
			// hold them for the full wait once they have spoken.
			c.SetReadDeadline(minTime(start.Add(catchAllWait), time.Now().Add(catchAllLinger)))
		}
		n += m
		if err != nil {
			rerr = err
			break
		}
	}
	e := Event{Service: "tcp", Proto: "tcp", Client: client, Dst: dst, Size: n}
	e.Hex, _ = firstBytes(buf[:n], catchAllHexMax)
	_, e.Text = firstBytes(buf[:n], catchAllTextMax)
	switch {
	case n == 0 && errors.Is(rerr, os.ErrDeadlineExceeded):
		e.Detail = "client sent nothing within " + catchAllWait.String()
	case rerr != nil && !errors.Is(rerr, os.ErrDeadlineExceeded) && !errors.Is(rerr, net.ErrClosed) && rerr.Error() != "EOF":
		e.Detail = "read: " + rerr.Error()
	}
	r.log.log(e)
}

func minTime(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

// serveCatchAllUDP records every datagram the TPROXY rule delivers, with the
// destination it was sent to. It never replies.
func (r *Responders) serveCatchAllUDP(c *net.UDPConn) {
	buf := make([]byte, 65535)
	oob := make([]byte, 256)
	for {
		n, oobn, _, from, err := c.ReadMsgUDPAddrPort(buf, oob)
		if err != nil {
			if r.closing() {
				return
			}
			r.log.log(Event{Service: "udp", Proto: "udp", Detail: "read: " + err.Error()})
			time.Sleep(10 * time.Millisecond)
			continue
		}
		dst := c.LocalAddr().String()
		if d := origDstFromOOB(oob[:oobn]); d.IsValid() {
			dst = d.String()
		}
		e := Event{Service: "udp", Proto: "udp", Client: from.String(), Dst: dst, Size: n}
		e.Hex, _ = firstBytes(buf[:n], catchAllHexMax)
		_, e.Text = firstBytes(buf[:n], catchAllTextMax)
		r.log.log(e)
	}
}
