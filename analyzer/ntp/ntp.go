// Package ntp parses NTP (RFC 5905) and SNTP packets.
package ntp

import (
	"encoding/binary"
	"errors"
	"fmt"
	"strconv"
	"time"
)

// ErrShort means the payload is shorter than the 48-byte header.
var ErrShort = errors.New("ntp: packet shorter than 48 bytes")

// ErrVersion means the version field is not 1 to 4, so the payload is not NTP.
var ErrVersion = errors.New("ntp: unsupported version")

// HeaderLen is the size of the fixed NTP header.
const HeaderLen = 48

// Packet is the fixed NTP header.
type Packet struct {
	Version   uint8
	Mode      uint8 // 3 client, 4 server, …
	Stratum   uint8
	Poll      int8
	Precision int8
	RefID     string // dotted quad, or the ASCII kiss code / reference clock id for stratum 0/1
	RefTime   time.Time
	OrigTime  time.Time
	RecvTime  time.Time
	XmitTime  time.Time
}

// Parse decodes the 48-byte header (extension fields and MAC are ignored).
// Timestamps are era 0 (1900–2036) in UTC; an all-zero timestamp (unset, as
// clients send in most fields) is the zero time.Time. Modes 6 and 7 (control,
// private) use another layout after the first byte: their other fields are not
// meaningful.
func Parse(b []byte) (*Packet, error) {
	if len(b) < HeaderLen {
		return nil, fmt.Errorf("%d bytes: %w", len(b), ErrShort)
	}
	v := (b[0] >> 3) & 7
	if v < 1 || v > 4 {
		return nil, fmt.Errorf("version %d: %w", v, ErrVersion)
	}
	p := &Packet{
		Version:   v,
		Mode:      b[0] & 7,
		Stratum:   b[1],
		Poll:      int8(b[2]),
		Precision: int8(b[3]),
		RefTime:   timestamp(b[16:]),
		OrigTime:  timestamp(b[24:]),
		RecvTime:  timestamp(b[32:]),
		XmitTime:  timestamp(b[40:]),
	}
	p.RefID = refID(p.Stratum, b[12:16])
	return p, nil
}

// ntpEpochOffset is the number of seconds from 1900-01-01 to 1970-01-01.
const ntpEpochOffset = 2208988800

// timestamp converts a 64-bit NTP timestamp (era 0) to UTC.
func timestamp(b []byte) time.Time {
	sec := binary.BigEndian.Uint32(b)
	frac := binary.BigEndian.Uint32(b[4:])
	if sec == 0 && frac == 0 {
		return time.Time{}
	}
	nsec := (uint64(frac) * 1e9) >> 32
	return time.Unix(int64(sec)-ntpEpochOffset, int64(nsec)).UTC()
}

// refID renders the reference ID: for stratum 0 (kiss code, "RATE", "DENY")
// and stratum 1 (reference clock, "GPS", "PPS", "LOCL") it is up to four
// ASCII characters, trailing NULs removed; otherwise an IPv4 address (or, for
// IPv6 servers, the first four bytes of an MD5 hash, which look the same).
// Non-printable bytes in the ASCII form fall back to the dotted quad.
func refID(stratum uint8, id []byte) string {
	if stratum <= 1 {
		n := len(id)
		for n > 0 && id[n-1] == 0 {
			n--
		}
		printable := n > 0
		for _, c := range id[:n] {
			if c < 0x20 || c > 0x7e {
				printable = false
			}
		}
		if printable {
			return string(id[:n])
		}
	}
	var buf [15]byte
	out := buf[:0]
	for i, c := range id[:4] {
		if i > 0 {
			out = append(out, '.')
		}
		out = strconv.AppendUint(out, uint64(c), 10)
	}
	return string(out)
}

var modeNames = [8]string{
	0: "reserved",
	1: "symmetric-active",
	2: "symmetric-passive",
	3: "client",
	4: "server",
	5: "broadcast",
	6: "control",
	7: "private",
}

// ModeName returns "client", "server", "symmetric-active", … .
func ModeName(m uint8) string {
	if int(m) < len(modeNames) {
		return modeNames[m]
	}
	return "mode-" + strconv.Itoa(int(m))
}
