// Package uplink connects a lab network to the real internet, for the two
// real-internet modes (simulated mode keeps lab/simnet and no uplink):
//
//   - routed: a veth joins the run's lab bridge (in the lab namespace) to the
//     namespace firstboot itself runs in. firstboot's end carries the guests'
//     router address; there the guests' subnet is NATed out of that
//     namespace's default route (or a named interface), with forwarding
//     enabled on just the two interfaces involved. The lab namespace itself
//     routes nothing. The guests get DHCP from the lab network and DNS from a
//     forwarder on the lab bridge (StartDNS) that asks the resolvers of
//     firstboot's namespace and logs every query.
//   - bridged: the guests sit on a host bridge with a real uplink and get
//     their addresses from its DHCP. With the host's libvirtd the taps are
//     ports of that bridge (Direct); with firstboot's own libvirtd in the lab
//     namespace a veth joins the lab-side bridge to the host bridge (Bridged).
//
// Everything made here carries the owner's pid (the veth's ifalias; chains
// and state are named after the veth), so Close removes exactly it and a
// later run removes what a crashed one left (removeStale). Watch reports the
// uplink going away and coming back while a run goes on.
//
// The machine's capture is not made here: it stays on the machine's own tap
// (lab/capture), so it holds the machine's own addresses in every mode.
package uplink

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"sync"

	"github.com/firstboot/firstboot/lab"
	"github.com/firstboot/firstboot/lab/netns"
)

// Link is what a run knows about its uplink. TLS interception and the
// manifest read it; Close undoes it.
type Link struct {
	Mode lab.NetworkMode
	// LabNetns and LabBridge are where the machines' taps are: the lab
	// namespace (a name or a /proc path) and the run's bridge in it.
	LabNetns, LabBridge string
	// HostNetns identifies the namespace firstboot runs in (its nsfs inode,
	// as `ip netns identify` and /proc/PID/ns/net show it).
	HostNetns uint64
	// LabVeth is the veth's end in the lab namespace, a port of LabBridge;
	// HostVeth its end in firstboot's namespace: in routed mode the guests'
	// router (Router is its address), in bridged mode a port of HostBridge.
	// Both empty in Direct mode.
	LabVeth, HostVeth string

	// Routed mode: the guests' subnet (served by the lab network's DHCP),
	// their router, and where their traffic leaves.
	Subnet netip.Prefix
	Router netip.Addr
	Egress Egress

	// Bridged mode: the host bridge with the real uplink.
	HostBridge string

	egressName  string // the egress interface asked for ("" = the default route's)
	bridgeNetns string // where HostBridge is ("" = firstboot's namespace)
	log         *slog.Logger
	closeOnce   sync.Once
	closeErr    error
	undo        []func(context.Context) error // run in reverse by Close
}

// Egress is where a routed run's traffic leaves firstboot's namespace.
type Egress struct {
	Interface string
	// Gateway is the default route's next hop (invalid for a named
	// interface without one, e.g. point-to-point).
	Gateway netip.Addr
	// Addr is the address NAT gives the guests' connections: the route's
	// preferred source, else the interface's first global address.
	Addr netip.Addr
}

// Public is the egress address when it is one the internet sees (globally
// routable, not private or shared address space); invalid otherwise: behind
// another NAT the public address is not known without asking someone outside,
// which firstboot never does on its own.
func (e Egress) Public() netip.Addr {
	a := e.Addr
	if !a.IsValid() || !a.IsGlobalUnicast() || a.IsPrivate() || sharedSpace.Contains(a) {
		return netip.Addr{}
	}
	return a
}

// sharedSpace is RFC 6598's carrier-grade NAT range.
var sharedSpace = netip.MustParsePrefix("100.64.0.0/10")

// Close removes everything this link made (idempotent; errors joined, every
// step tried).
func (l *Link) Close(ctx context.Context) error {
	l.closeOnce.Do(func() {
		unlock, err := lock(ctx)
		if err != nil {
			l.closeErr = err
			return
		}
		defer unlock()
		l.closeErr = l.undoAll(ctx)
		if l.closeErr == nil && l.HostVeth != "" {
			l.log.Info("uplink: removed", "mode", l.Mode, "veth", l.HostVeth)
		}
	})
	return l.closeErr
}

// onClose registers an undo step.
func (l *Link) onClose(f func(context.Context) error) { l.undo = append(l.undo, f) }

// vethNames derives the two veth names from the run's id: "fbu" + 8 hex
// digits + "h" (firstboot's side) or "l" (the lab's side), short enough for
// IFNAMSIZ and unique per run.
func vethNames(id string) (host, labSide, tag string) {
	sum := sha256.Sum256([]byte(id))
	tag = hex.EncodeToString(sum[:4])
	return vethPrefix + tag + "h", vethPrefix + tag + "l", tag
}

// vethPrefix starts every veth firstboot's uplinks make (netns.CheckIsolation
// knows it).
const vethPrefix = netns.UplinkVethPrefix

// aliasPrefix starts the ifalias of firstboot's veth ends: the owner's pid follows.
const aliasPrefix = "firstboot uplink pid "

// run runs a command in firstboot's own namespace.
func run(ctx context.Context, argv ...string) error {
	_, err := netns.Exec(ctx, "", argv...)
	return err
}

// runIn runs a command in namespace ns ("" for firstboot's).
func runIn(ctx context.Context, ns string, argv ...string) error {
	_, err := netns.Exec(ctx, ns, argv...)
	return err
}

// iptables runs iptables in firstboot's namespace, waiting for the xtables
// lock (parallel runs and libvirtd take it too).
func iptables(ctx context.Context, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, "iptables", append([]string{"-w", "10"}, args...)...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return out, fmt.Errorf("iptables %s: %w: %s", strings.Join(args, " "), err, bytes.TrimSpace(stderr.Bytes()))
	}
	return out, nil
}

// confPath is an interface's /proc/sys/net/<family>/conf file (names may
// hold dots, so not the dotted sysctl form).
func confPath(family, iface, key string) string {
	return "/proc/sys/net/" + family + "/conf/" + iface + "/" + key
}

// writeConf sets an interface's setting in firstboot's namespace (the file
// belongs to the namespace of the thread that opens it).
func writeConf(family, iface, key, value string) error {
	if err := os.WriteFile(confPath(family, iface, key), []byte(value), 0o644); err != nil {
		return fmt.Errorf("net.%s.conf.%s.%s=%s: %w", family, iface, key, value, err)
	}
	return nil
}

func readConf(family, iface, key string) (string, error) {
	b, err := os.ReadFile(confPath(family, iface, key))
	if err != nil {
		return "", fmt.Errorf("net.%s.conf.%s.%s: %w", family, iface, key, err)
	}
	return strings.TrimSpace(string(b)), nil
}

func logger(l *slog.Logger) *slog.Logger {
	if l == nil {
		return slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	return l
}
