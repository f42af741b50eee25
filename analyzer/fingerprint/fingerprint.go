// Package fingerprint describes TCP SYN packets the way researchers quote them:
// tcpdump's flags/window/options line and a p0f v3 signature.
package fingerprint

import "errors"

// ErrNotImplemented marks a stub awaiting its implementation.
var ErrNotImplemented = errors.New("fingerprint: not implemented")

// SYN is what a SYN (or SYN+ACK) reveals about the sender's stack.
type SYN struct {
	IPVersion  int
	TTL        uint8 // observed TTL / hop limit
	InitialTTL uint8 // guessed initial TTL: 32, 64, 128 or 255
	DF         bool
	ECN        bool // SYN with ECE+CWR set (ECN setup)
	Window     uint16
	MSS        uint16 // 0 when absent
	WScale     int    // -1 when absent
	Tcpdump    string // "Flags [SEW], win 65535, options [mss 1460,nop,wscale 6,nop,nop,TS val 1 ecr 0,sackOK,eol], length 0" without TS values: see package doc
	P0f        string // "4:64+0:0:1460:mss*44,7:mss,sok,ts,nop,ws:df,id+:0"
}

// Parse reads an IP packet (IPv4 or IPv6 header first) carrying a TCP segment with
// SYN set, and returns its fingerprint. It returns an error for anything else.
func Parse(ipPacket []byte) (*SYN, error) { return nil, ErrNotImplemented }
