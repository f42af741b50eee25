package uplink

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"

	"github.com/firstboot/firstboot/lab"
	"github.com/firstboot/firstboot/lab/netns"
)

// BridgedConfig says what a bridged link joins.
type BridgedConfig struct {
	// ID names the link (the lab network's name).
	ID string
	// LabNetns and LabBridge are the lab namespace and the run's lab-side
	// bridge (no address, no DHCP) in it.
	LabNetns, LabBridge string
	// HostBridge is the bridge with the real uplink, in the namespace
	// firstboot runs in.
	HostBridge string
	Logger     *slog.Logger
}

// Bridged joins the lab-side bridge to the host bridge with a veth, so the
// machines are on the host bridge's network at layer 2 and take their
// addresses from its DHCP. The host's end has no IPv6 and no address, so
// nothing of the host speaks through it, and is an isolated port: it talks
// to the uplink, never to another run's machines, so runs side by side keep
// each other out of their captures. It fails with ErrDown before changing
// anything when the host bridge has no working uplink port.
func Bridged(ctx context.Context, cfg BridgedConfig) (_ *Link, err error) {
	if cfg.ID == "" || cfg.LabBridge == "" || cfg.HostBridge == "" {
		return nil, fmt.Errorf("uplink: bridged link needs an id, a lab bridge and a host bridge (got %+v)", cfg)
	}
	if st := bridgeState("", cfg.HostBridge, ""); !st.Up {
		return nil, fmt.Errorf("bridged mode: %w: %s", ErrDown, st.Detail)
	}
	l, release, err := openLink(ctx, lab.Bridged, cfg.ID, cfg.LabNetns, cfg.LabBridge, cfg.Logger)
	if err != nil {
		return nil, err
	}
	defer release()
	defer func() {
		if err != nil {
			err = errors.Join(err, l.undoAll(context.WithoutCancel(ctx)))
		}
	}()
	l.HostBridge = cfg.HostBridge
	host := l.HostVeth
	for _, argv := range [][]string{
		{"ip", "link", "set", host, "master", cfg.HostBridge},
		{"bridge", "link", "set", "dev", host, "isolated", "on"},
		{"ip", "link", "set", host, "up"},
	} {
		if err := run(ctx, argv...); err != nil {
			return nil, fmt.Errorf("bridged mode: %w", err)
		}
	}
	l.log.Info("uplink: bridged", "veth", host, "host_bridge", cfg.HostBridge)
	return l, nil
}

// Direct describes a bridged network whose taps are ports of the host bridge
// itself (the host's libvirtd runs where the bridge is, in namespace ns):
// nothing to link, only the bridge to check now and watch later.
func Direct(ns, bridge string, log *slog.Logger) (*Link, error) {
	if st := bridgeState(ns, bridge, ""); !st.Up {
		return nil, fmt.Errorf("bridged mode: %w: %s", ErrDown, st.Detail)
	}
	id, err := netns.ID(ns)
	if err != nil {
		return nil, err
	}
	return &Link{Mode: lab.Bridged, LabNetns: ns, LabBridge: bridge, HostBridge: bridge, HostNetns: id, bridgeNetns: ns, log: logger(log)}, nil
}

// bridgeState tells whether bridge (in ns) has an uplink: it exists, is a
// bridge, is up, and at least one of its ports that is neither a machine's
// tap nor a firstboot veth (own, the caller's end) has carrier.
func bridgeState(ns, bridge, own string) State {
	ls, err := links(ns)
	if err != nil {
		return State{Detail: err.Error()}
	}
	br, ok := byName(ls, bridge)
	switch {
	case !ok:
		return State{Detail: fmt.Sprintf("host bridge %s not found: create it on the wired uplink (README, \"Bridged mode\")", bridge)}
	case br.Kind != "bridge":
		return State{Detail: fmt.Sprintf("%s is not a bridge (kind %q)", bridge, br.Kind)}
	case !br.up():
		return State{Detail: fmt.Sprintf("host bridge %s is down: ip link set %s up", bridge, bridge)}
	}
	var ports, dead []string
	for _, p := range ls {
		if p.Master != br.Index || p.Kind == "tun" || p.Name == own || strings.HasPrefix(p.Name, vethPrefix) {
			continue
		}
		ports = append(ports, p.Name)
		if p.up() && p.carrier() {
			return State{Up: true, Detail: fmt.Sprintf("host bridge %s up, uplink port %s has carrier", bridge, p.Name)}
		}
		dead = append(dead, p.Name)
	}
	if len(ports) == 0 {
		return State{Detail: fmt.Sprintf("host bridge %s has no uplink port: add the wired interface (ip link set eth0 master %s)", bridge, bridge)}
	}
	return State{Detail: fmt.Sprintf("host bridge %s: no carrier on its uplink ports (%s): is the cable in and the port up?", bridge, strings.Join(dead, ", "))}
}
