// Package ntp parses NTP (RFC 5905) and SNTP packets.
package ntp

import (
	"errors"
	"time"
)

// ErrNotImplemented marks a stub awaiting its implementation.
var ErrNotImplemented = errors.New("ntp: not implemented")

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
func Parse(b []byte) (*Packet, error) { return nil, ErrNotImplemented }

// ModeName returns "client", "server", "symmetric-active", … .
func ModeName(m uint8) string { return "" }
