//go:build !linux

package simnet

import (
	"errors"
	"net"
	"net/netip"
	"syscall"
)

// The lab runs on Linux; elsewhere the responders still serve, but cannot
// recover original destinations.

func originalDst(c net.Conn) string { return c.LocalAddr().String() }

func transparentUDPControl(transparent *bool) func(network, address string, c syscall.RawConn) error {
	return nil
}

func origDstFromOOB(oob []byte) netip.AddrPort { return netip.AddrPort{} }

type conntrack struct{}

func openConntrack() (*conntrack, error) { return nil, errors.New("conntrack: Linux only") }

func (c *conntrack) Close() error { return nil }

func (c *conntrack) origDstUDP(local, client netip.AddrPort) (netip.AddrPort, bool) {
	return netip.AddrPort{}, false
}
