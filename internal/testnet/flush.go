package testnet

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Flush waits until tcpdump has written every packet the kernel has handed it
// so far, so everything sent before Flush is in the file once it returns.
// Without immediate mode libpcap gets packets in blocks that the kernel
// retires up to a second later, and a block not yet read when the capture
// stops is lost; Flush asks tcpdump for its counters (SIGUSR1) until the
// captured count catches up with the received one. It needs a single
// interface, not "any".
func (c *Capture) Flush(ctx context.Context) error {
	if c.iface == "any" {
		return errors.New("testnet: Flush cannot tell duplicates apart on interface any; capture on one interface")
	}
	// The kernel shows tcpdump each loopback packet twice (sent and received);
	// libpcap drops the sent copy on "lo" after counting it as received.
	copies := int64(1)
	if c.iface == "lo" {
		copies = 2
	}
	for {
		st, err := c.liveStats(ctx)
		if err != nil {
			return err
		}
		if st.Captured*copies+st.Dropped >= st.Received {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("testnet: tcpdump on %s has written %d of the %d packets it received (%d copies each, %d dropped): %w",
				c.iface, st.Captured, st.Received, copies, st.Dropped, ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// liveStats makes the running tcpdump print its counters and reads them.
func (c *Capture) liveStats(ctx context.Context) (CaptureStats, error) {
	c.mu.Lock()
	mark := c.stderr.Len()
	c.mu.Unlock()
	if err := c.cmd.Process.Signal(syscall.SIGUSR1); err != nil {
		return CaptureStats{}, fmt.Errorf("testnet: ask tcpdump for its counters: %w", err)
	}
	for {
		c.mu.Lock()
		reply := c.stderr.String()[mark:]
		c.mu.Unlock()
		// The counters come as one line ending with the dropped count.
		if strings.Contains(reply, "dropped by kernel") {
			return parseStats(reply), nil
		}
		select {
		case <-c.done:
			return CaptureStats{}, fmt.Errorf("testnet: tcpdump on %s exited while capturing: %s", c.iface, c.output())
		case <-ctx.Done():
			return CaptureStats{}, fmt.Errorf("testnet: tcpdump on %s did not report its counters: %w", c.iface, ctx.Err())
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// Complete ends a test's capture: it flushes, stops tcpdump, fails the test
// if the kernel dropped packets, and returns the file's path.
func (c *Capture) Complete(t testing.TB) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := c.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	st, err := c.Stop()
	if err != nil {
		t.Fatal(err)
	}
	if st.Dropped != 0 {
		t.Fatalf("testnet: tcpdump on %s dropped %d packets: %s is incomplete", c.iface, st.Dropped, c.Path)
	}
	return c.Path
}
