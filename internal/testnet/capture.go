package testnet

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Capture is a running `tcpdump -w` inside a namespace.
type Capture struct {
	Path  string
	iface string
	cmd   *exec.Cmd
	done  chan struct{}

	mu     sync.Mutex
	stderr strings.Builder
}

// CaptureStats is what tcpdump reports when it stops.
type CaptureStats struct {
	Captured, Received, Dropped int64
}

// StartCapture runs `tcpdump -i iface -w path -U -s 0` in ns and returns once
// tcpdump says it is listening, so no packet sent afterwards is missed.
func StartCapture(ctx context.Context, ns *Namespace, iface, path string) (*Capture, error) {
	if _, err := exec.LookPath("tcpdump"); err != nil {
		return nil, fmt.Errorf("testnet: tcpdump not found: install it with scripts/provision.sh: %w", err)
	}
	// -Z root: the output file may live in a directory the tcpdump user cannot write.
	// -B: a large kernel buffer, so bursts of the traffic generator are not dropped.
	// The command deliberately ignores ctx: Stop is the only way to end it, so the file is complete.
	cmd := exec.Command("ip", "netns", "exec", ns.Name, "tcpdump", "-i", iface, "-w", path, "-U", "-s", "0", "-n", "-Z", "root", "-B", "32768")
	pipe, err := cmd.StderrPipe()
	if err != nil {
		return nil, fmt.Errorf("testnet: tcpdump stderr: %w", err)
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("testnet: start tcpdump on %s in %s: %w", iface, ns.Name, err)
	}
	c := &Capture{Path: path, iface: iface, cmd: cmd, done: make(chan struct{})}
	listening := make(chan struct{})
	go func() {
		defer close(c.done)
		r := bufio.NewReader(pipe)
		signalled := false
		for {
			line, err := r.ReadString('\n')
			c.mu.Lock()
			c.stderr.WriteString(line)
			c.mu.Unlock()
			if !signalled && strings.Contains(line, "listening on") {
				close(listening)
				signalled = true
			}
			if err != nil {
				if !signalled {
					close(listening)
				}
				_, _ = io.Copy(io.Discard, r)
				return
			}
		}
	}()
	select {
	case <-listening:
	case <-ctx.Done():
		return nil, errors.Join(fmt.Errorf("testnet: waiting for tcpdump: %w", ctx.Err()), c.kill())
	case <-time.After(10 * time.Second):
		return nil, errors.Join(fmt.Errorf("testnet: tcpdump did not start listening on %s within 10s: %s", iface, c.output()), c.kill())
	}
	select {
	case <-c.done: // stderr closed before or right after "listening": tcpdump died
		return nil, errors.Join(fmt.Errorf("testnet: tcpdump on %s exited at start: %s", iface, c.output()), c.kill())
	default:
	}
	return c, nil
}

// NewCapture is StartCapture for tests; the capture is stopped in t.Cleanup
// if the test has not stopped it itself.
func NewCapture(t testing.TB, ns *Namespace, iface, path string) *Capture {
	t.Helper()
	c, err := StartCapture(context.Background(), ns, iface, path)
	if err != nil {
		t.Fatalf("testnet: %v", err)
	}
	t.Cleanup(func() { _, _ = c.Stop() })
	return c
}

func (c *Capture) output() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return strings.TrimSpace(c.stderr.String())
}

func (c *Capture) kill() error {
	_ = c.cmd.Process.Kill()
	<-c.done
	_ = c.cmd.Wait()
	return nil
}

var statRe = regexp.MustCompile(`(\d+) packets? (captured|received by filter|dropped by kernel)`)

// Stop ends the capture with SIGINT, the way a user would, and waits for
// tcpdump to flush and exit. It is safe to call more than once.
func (c *Capture) Stop() (CaptureStats, error) {
	var st CaptureStats
	if c.cmd.ProcessState == nil {
		// Without immediate mode (which drops under load with -s 0), libpcap hands
		// packets over in blocks retired after at most 1 s; a block not yet retired
		// when SIGINT arrives is lost, so wait for the last one first.
		time.Sleep(1100 * time.Millisecond)
		_ = c.cmd.Process.Signal(syscall.SIGINT)
		select {
		case <-c.done:
		case <-time.After(15 * time.Second):
			_ = c.cmd.Process.Kill()
			<-c.done
			_ = c.cmd.Wait()
			return st, fmt.Errorf("testnet: tcpdump did not exit within 15s of SIGINT; killed it, %s may be incomplete", c.Path)
		}
		if err := c.cmd.Wait(); err != nil {
			return st, fmt.Errorf("testnet: tcpdump: %w: %s", err, c.output())
		}
	}
	return parseStats(c.output()), nil
}

// parseStats reads tcpdump's counters; where it printed them more than once
// (SIGUSR1, then at exit) the last values win.
func parseStats(s string) CaptureStats {
	var st CaptureStats
	for _, m := range statRe.FindAllStringSubmatch(s, -1) {
		v, _ := strconv.ParseInt(m[1], 10, 64)
		switch m[2] {
		case "captured":
			st.Captured = v
		case "received by filter":
			st.Received = v
		case "dropped by kernel":
			st.Dropped = v
		}
	}
	return st
}
