// Package dhcp parses DHCPv4 (BOOTP) messages.
package dhcp

import (
	"errors"
	"net"
	"net/netip"
)

// ErrNotImplemented marks a stub awaiting its implementation.
var ErrNotImplemented = errors.New("dhcp: not implemented")

// Message is a decoded DHCP message.
type Message struct {
	Op          uint8 // 1 request, 2 reply
	XID         uint32
	ClientMAC   net.HardwareAddr
	ClientIP    netip.Addr // ciaddr
	YourIP      netip.Addr // yiaddr
	MessageType uint8      // option 53; 0 when absent (plain BOOTP)
	Hostname    string     // option 12
	VendorClass string     // option 60
	ClientID    []byte     // option 61
	ParamList   []uint8    // option 55, wire order: the client's fingerprint
	RequestedIP netip.Addr // option 50
	ServerID    netip.Addr // option 54
	LeaseTime   uint32     // option 51, seconds
	Router      netip.Addr // option 3, first
	DNSServers  []netip.Addr
	Domain      string // option 15
}

// Parse decodes a DHCP message from a UDP payload.
func Parse(b []byte) (*Message, error) { return nil, ErrNotImplemented }

// MessageTypeName returns "DISCOVER", "OFFER", "REQUEST", "ACK", … .
func MessageTypeName(t uint8) string { return "" }
