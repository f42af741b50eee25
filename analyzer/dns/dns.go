// Package dns parses DNS, mDNS and LLMNR messages from UDP payloads or
// TCP-framed streams. It only reads; it never allocates more than the message needs.
package dns

import "errors"

// ErrNotImplemented marks a stub awaiting its implementation.
var ErrNotImplemented = errors.New("dns: not implemented")

// Question is one entry of the question section.
type Question struct {
	Name  string // lower-cased, no trailing dot; "" for the root
	Type  uint16
	Class uint16 // with the mDNS unicast-response bit cleared
}

// RR is one resource record of the answer section.
type RR struct {
	Name string
	Type uint16
	TTL  uint32
	Data string // presentation form: "93.184.216.34", "2001:db8::1", "cname.example.com", …
}

// Message is a decoded DNS message.
type Message struct {
	ID        uint16
	Response  bool
	Opcode    uint8
	Rcode     uint8
	Truncated bool
	Questions []Question
	Answers   []RR
}

// Parse decodes one DNS message (a UDP payload, or a TCP message without its
// 2-byte length prefix). Name compression loops and out-of-range pointers are errors.
func Parse(b []byte) (*Message, error) { return nil, ErrNotImplemented }

// TypeName returns the mnemonic of a query type ("A", "AAAA", "HTTPS", …) or "TYPE<n>".
func TypeName(t uint16) string { return "" }

// RcodeName returns Zeek's rcode_name ("NOERROR", "NXDOMAIN", …).
func RcodeName(r uint8) string { return "" }
