package simnet

import (
	"encoding/binary"
	"net"
	"strconv"
	"time"
)

// ntpEpochOffset is the number of seconds from 1900-01-01 (NTP era 0) to 1970-01-01.
const ntpEpochOffset = 2208988800

// ntpRefID is the reference ID in replies. For stratum 2 it is by convention
// the IPv4 address of the upstream server; a documentation address (RFC 5737)
// is used because echoing the lab address back would make a guest that
// synchronises to the lab think it found a loop (chrony drops such a source).
const ntpRefID = 0xc000027b // 192.0.2.123

func ntpTime(t time.Time) uint64 {
	secs := uint64(t.Unix() + ntpEpochOffset)
	frac := (uint64(t.Nanosecond()) << 32) / 1e9
	return secs<<32 | frac
}

// ntpReply answers a client (mode 3) request per RFC 5905 section 7.3: the
// origin timestamp echoes the client's transmit timestamp; receive and
// transmit timestamps come from the configured clock. Other modes get no
// reply (nil), and the reason is returned for the log.
func ntpReply(req []byte, recv, xmit time.Time) ([]byte, string) {
	if len(req) < 48 {
		return nil, "short packet (" + strconv.Itoa(len(req)) + " bytes)"
	}
	vn := req[0] >> 3 & 7
	mode := req[0] & 7
	if mode != 3 {
		return nil, "mode " + strconv.Itoa(int(mode)) + " ignored (only client mode 3 is answered)"
	}
	if vn < 1 || vn > 4 {
		return nil, "version " + strconv.Itoa(int(vn)) + " ignored"
	}
	out := make([]byte, 48)
	out[0] = 0<<6 | vn<<3 | 4 // LI 0 (no warning), client's version, mode 4 (server)
	out[1] = 2                // stratum 2
	out[2] = req[2]           // poll: echo the client's
	out[3] = 0xec             // precision 2^-20 s (about 1 µs)
	// Root delay and dispersion: 1/256 s each (16.16 fixed point), small but
	// not zero so clients do not treat the server as a reference clock.
	binary.BigEndian.PutUint32(out[4:], 0x100)
	binary.BigEndian.PutUint32(out[8:], 0x100)
	binary.BigEndian.PutUint32(out[12:], ntpRefID)
	binary.BigEndian.PutUint64(out[16:], ntpTime(recv.Add(-16*time.Second))) // reference: last "sync"
	copy(out[24:32], req[40:48])                                             // origin = client's transmit
	binary.BigEndian.PutUint64(out[32:], ntpTime(recv))
	binary.BigEndian.PutUint64(out[40:], ntpTime(xmit))
	return out, "version " + strconv.Itoa(int(vn)) + " client request answered"
}

func (r *Responders) serveNTP(c *net.UDPConn) {
	buf := make([]byte, 2048)
	for {
		n, from, err := c.ReadFromUDPAddrPort(buf)
		if err != nil {
			if r.closing() {
				return
			}
			r.log.log(Event{Service: "ntp", Proto: "udp", Detail: "read: " + err.Error()})
			time.Sleep(10 * time.Millisecond)
			continue
		}
		recv := r.now()
		reply, detail := ntpReply(buf[:n], recv, r.now())
		r.log.log(Event{Service: "ntp", Proto: "udp", Client: from.String(), Dst: r.udpDst(c.LocalAddr(), from), Size: n, Detail: detail})
		if reply != nil {
			c.WriteToUDPAddrPort(reply, from)
		}
	}
}
