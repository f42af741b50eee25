package scenarios

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/firstboot/firstboot/analyzer/dhcp"
	"github.com/firstboot/firstboot/lab"
	"github.com/firstboot/firstboot/lab/uplink"
	"github.com/firstboot/firstboot/results/manifest"
)

// The real-internet modes' part of a run: the uplink (lab/uplink), routed
// mode's DNS forwarder, the watch that notes the uplink going away.

// DNSLogName is the routed mode's DNS forwarder log in a run directory.
const DNSLogName = "uplink-dns.jsonl"

// uplinkWatchEvery is how often a run checks its uplink.
const uplinkWatchEvery = time.Second

// effectiveNetwork applies a run's overrides to the scenario's network.
func effectiveNetwork(n Network, cfg RunConfig) Network {
	if cfg.Network != "" {
		n.Mode = cfg.Network
	}
	if cfg.Bridge != "" {
		n.Bridge = cfg.Bridge
	}
	if cfg.Egress != "" {
		n.Egress = cfg.Egress
	}
	if n.Mode == "" {
		n.Mode = string(lab.Simulated)
	}
	return n
}

// networkSpec is the lab network for the run's mode. A routed run without a
// way out fails here, before anything starts.
func (r *runner) networkSpec() (lab.NetworkSpec, error) {
	spec := lab.NetworkSpec{Name: r.m.RunID, Mode: lab.NetworkMode(r.net.Mode)}
	switch spec.Mode {
	case lab.Bridged:
		if r.net.Bridge == "" {
			return spec, errors.New("bridged mode needs a host bridge: network.bridge in the scenario, bridge: in firstboot.yaml, or --bridge")
		}
		spec.Bridge = r.net.Bridge
	case lab.Routed:
		if _, err := uplink.FindEgress(r.net.Egress); err != nil {
			return spec, fmt.Errorf("routed mode: %w", err)
		}
		avoid, err := uplink.UsedPrefixes()
		if err != nil {
			return spec, err
		}
		spec.Avoid = avoid
	}
	return spec, nil
}

// uplinkRun is what a real-internet run holds beyond the lab network.
type uplinkRun struct {
	link   *uplink.Link
	dns    *uplink.DNS
	dnsLog *os.File
	stop   context.CancelFunc
	done   chan struct{}
}

func (r *runner) uplinkUp(ctx context.Context) error {
	n := r.network
	u := &uplinkRun{}
	r.up = u
	var err error
	switch {
	case n.Mode() == lab.Routed:
		u.link, err = uplink.Routed(ctx, uplink.RoutedConfig{
			ID: n.Name(), LabNetns: r.lab.Netns(), LabBridge: n.Bridge(),
			Subnet: n.Subnet(), Router: n.Router(), Egress: r.net.Egress, Logger: r.log,
		})
		if err != nil {
			return err
		}
		if u.dnsLog, err = os.Create(filepath.Join(r.dir, DNSLogName)); err != nil {
			return err
		}
		u.dns, err = uplink.StartDNS(uplink.DNSConfig{Netns: r.lab.Netns(), Addr: n.Addr(), Log: u.dnsLog})
	case n.HostBridge() != "":
		u.link, err = uplink.Direct(r.lab.Netns(), n.HostBridge(), r.log)
	default:
		u.link, err = uplink.Bridged(ctx, uplink.BridgedConfig{
			ID: n.Name(), LabNetns: r.lab.Netns(), LabBridge: n.Bridge(), HostBridge: r.net.Bridge, Logger: r.log,
		})
	}
	if err != nil {
		return err
	}
	r.recordUplink()
	return nil
}

func (r *runner) uplinkDown(ctx context.Context) error {
	u := r.up
	if u == nil {
		return nil
	}
	var errs []error
	if u.dns != nil {
		errs = append(errs, u.dns.Close())
	}
	if u.dnsLog != nil {
		errs = append(errs, u.dnsLog.Close())
	}
	if u.link != nil {
		errs = append(errs, u.link.Close(ctx))
	}
	return errors.Join(errs...)
}

// recordUplink puts what the run knows of its way out into the manifest.
func (r *runner) recordUplink() {
	l := r.up.link
	mu := &manifest.Uplink{Link: l.HostVeth}
	switch l.Mode {
	case lab.Routed:
		mu.Interface = l.Egress.Interface
		mu.Router = l.Router.String()
		mu.Gateway = addrString(l.Egress.Gateway)
		mu.EgressAddr = addrString(l.Egress.Addr)
		mu.PublicAddr = addrString(l.Egress.Public())
		for _, up := range r.up.dns.Upstreams() {
			mu.Resolvers = append(mu.Resolvers, up.String())
		}
		mu.DNSLog = DNSLogName
	case lab.Bridged:
		mu.Interface = l.HostBridge
	}
	r.mu.Lock()
	r.m.Network.Uplink = mu
	r.mu.Unlock()
	r.save()
}

func addrString(a netip.Addr) string {
	if !a.IsValid() {
		return ""
	}
	return a.String()
}

// uplinkWatch notes the uplink going away and coming back, in the manifest
// and as capture comments, while the run goes on.
func (r *runner) uplinkWatch(ctx context.Context) error {
	u := r.up
	wctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	u.stop, u.done = cancel, make(chan struct{})
	go func() {
		defer close(u.done)
		u.link.Watch(wctx, uplinkWatchEvery, r.uplinkChanged)
	}()
	return nil
}

func (r *runner) uplinkUnwatch(context.Context) error {
	u := r.up
	if u.stop != nil {
		u.stop()
		<-u.done
	}
	r.recordLease()
	return nil
}

func (r *runner) uplinkChanged(st uplink.State) {
	ev := manifest.UplinkEvent{Time: r.now(), State: "lost", Detail: st.Detail}
	if st.Up {
		ev.State = "restored"
		r.log.Info("uplink restored", "detail", st.Detail)
	} else {
		r.log.Warn("uplink lost; the run goes on", "detail", st.Detail)
	}
	r.capture.Mark(fmt.Sprintf("uplink %s %s: %s", ev.State, ev.Time.Format(time.RFC3339Nano), st.Detail))
	r.mu.Lock()
	r.m.Network.Uplink.Events = append(r.m.Network.Uplink.Events, ev)
	r.mu.Unlock()
	r.save()
}

// recordLease adds what the machine's DHCP exchange showed: who served the
// lease and, in bridged mode, the upstream router and the machine's own
// (possibly public) address.
func (r *runner) recordLease() {
	ack := r.dhcp.ack()
	if ack == nil {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	mu := r.m.Network.Uplink
	mu.DHCPServer = addrString(ack.ServerID)
	if r.up.link.Mode == lab.Bridged {
		mu.Router = addrString(ack.Router)
		mu.EgressAddr = addrString(ack.YourIP)
		mu.PublicAddr = addrString(uplink.Egress{Addr: ack.YourIP}.Public())
	}
}

// dhcpSeen keeps the last DHCP ACK the capture showed for the machine.
type dhcpSeen struct {
	mu   sync.Mutex
	last *dhcp.Message
}

// observe returns the capture's DHCP hook for a machine's MAC.
func (d *dhcpSeen) observe(mac net.HardwareAddr) func(*dhcp.Message) {
	return func(m *dhcp.Message) {
		if m.Op != 2 || m.MessageType != 5 || !bytes.Equal(m.ClientMAC, mac) || !m.YourIP.IsValid() || m.YourIP.IsUnspecified() {
			return
		}
		c := *m
		// The message may point into the capture's buffer: keep values only.
		c.ClientMAC, c.ClientID, c.ParamList, c.DNSServers = nil, nil, nil, nil
		d.mu.Lock()
		d.last = &c
		d.mu.Unlock()
	}
}

func (d *dhcpSeen) ack() *dhcp.Message {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.last
}
