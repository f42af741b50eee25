package uplink

import (
	"context"
	"fmt"
	"time"

	"github.com/firstboot/firstboot/lab"
)

// State is an uplink's condition at one moment.
type State struct {
	Up bool
	// Detail says what carries the uplink, or what is wrong with it.
	Detail string
}

// State checks the uplink now: for a routed link, that its egress interface
// is up with carrier and (when it was not named) still the default route's;
// for a bridged one, that the host bridge has an uplink port with carrier.
func (l *Link) State() State {
	switch l.Mode {
	case lab.Routed:
		e, err := FindEgress(l.egressName)
		if err != nil {
			return State{Detail: err.Error()}
		}
		if e.Interface != l.Egress.Interface {
			return State{Detail: fmt.Sprintf("the default route now leaves by %s; this run's NAT leaves by %s", e.Interface, l.Egress.Interface)}
		}
		return State{Up: true, Detail: fmt.Sprintf("egress %s up (gateway %v, address %v)", e.Interface, e.Gateway, e.Addr)}
	case lab.Bridged:
		return bridgeState(l.bridgeNetns, l.HostBridge, l.HostVeth)
	}
	return State{Detail: fmt.Sprintf("mode %q has no uplink", l.Mode)}
}

// Watch checks the uplink every interval until ctx ends and calls onChange
// when it goes down or comes back. It starts from "up", which Routed and
// Bridged checked: an uplink already gone by the first check is reported.
func (l *Link) Watch(ctx context.Context, every time.Duration, onChange func(State)) {
	prev := State{Up: true}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		cur := l.State()
		if cur.Up != prev.Up {
			onChange(cur)
		}
		prev = cur
	}
}
