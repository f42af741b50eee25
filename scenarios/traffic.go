package scenarios

import (
	"context"
	"fmt"
	"path"
	"sort"
	"strings"
	"sync"
	"time"
)

// Traffic kinds a live observer reports.
const (
	TrafficDNS  = "dns"  // a DNS query name
	TrafficSNI  = "sni"  // a TLS (or QUIC) server name
	TrafficHost = "host" // an HTTP Host
	TrafficConn = "dst"  // a new connection's destination ip:port
)

// TrafficWatch is what the machine has sent so far, as seen live on the
// capture, so actions can wait for the network instead of guessing delays.
type TrafficWatch struct {
	mu       sync.Mutex
	seen     []trafficEvent
	names    map[string]bool // names (dns, sni, host) seen so far
	lastConn time.Time
	changed  chan struct{}
	// OnNewName, when set, hears of each name (DNS query, SNI, HTTP Host)
	// the first time it is seen. Set it before the capture starts.
	OnNewName func(name string, at time.Time)
}

type trafficEvent struct {
	kind, value string
	at          time.Time
}

// NewTrafficWatch returns an empty watch.
func NewTrafficWatch() *TrafficWatch {
	return &TrafficWatch{changed: make(chan struct{}), names: map[string]bool{}}
}

// Observe records one event; at is the packet's capture timestamp.
func (w *TrafficWatch) Observe(kind, value string, at time.Time) {
	value = strings.ToLower(value)
	w.mu.Lock()
	w.seen = append(w.seen, trafficEvent{kind, value, at})
	if kind == TrafficConn && at.After(w.lastConn) {
		w.lastConn = at
	}
	isNew := kind != TrafficConn && !w.names[value]
	if isNew {
		w.names[value] = true
	}
	close(w.changed)
	w.changed = make(chan struct{})
	w.mu.Unlock()
	if isNew && w.OnNewName != nil {
		w.OnNewName(value, at)
	}
}

// WaitFor blocks until, for every non-empty pattern of args, an event of that
// kind observed at or after since matches it.
func (w *TrafficWatch) WaitFor(ctx context.Context, args *TrafficArgs, since time.Time) error {
	want := map[string]string{TrafficDNS: args.DNS, TrafficSNI: args.SNI, TrafficHost: args.Host, TrafficConn: args.Dst}
	for {
		w.mu.Lock()
		missing := []string{}
		for kind, pattern := range want {
			if pattern == "" {
				continue
			}
			found := false
			for _, e := range w.seen {
				if e.kind == kind && !e.at.Before(since) {
					if ok, _ := path.Match(strings.ToLower(pattern), e.value); ok {
						found = true
						break
					}
				}
			}
			if !found {
				missing = append(missing, kind+"="+pattern)
			}
		}
		changed := w.changed
		w.mu.Unlock()
		if len(missing) == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("no matching traffic for %s: %w", strings.Join(sorted(missing), " "), context.Cause(ctx))
		case <-changed:
		}
	}
}

// WaitIdle blocks until no new connection has started for quiet (measured on
// now, the host clock that stamps the capture).
func (w *TrafficWatch) WaitIdle(ctx context.Context, quiet time.Duration, now func() time.Time) error {
	start := now()
	for {
		w.mu.Lock()
		last := w.lastConn
		changed := w.changed
		w.mu.Unlock()
		if last.Before(start) {
			last = start
		}
		remaining := quiet - now().Sub(last)
		if remaining <= 0 {
			return nil
		}
		timer := time.NewTimer(remaining)
		select {
		case <-ctx.Done():
			timer.Stop()
			return fmt.Errorf("the machine did not go quiet for %s: %w", quiet, context.Cause(ctx))
		case <-changed:
			timer.Stop()
		case <-timer.C:
		}
	}
}

func sorted(s []string) []string {
	sort.Strings(s)
	return s
}
