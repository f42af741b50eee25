package main

import (
	"context"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"
)

// fakePorts lays out a /sys/class/virtio-ports like the kernel's: one
// directory per port, each with a "name" file (empty for an unnamed port).
func fakePorts(t *testing.T, sys string, ports map[string]string) {
	t.Helper()
	for dev, name := range ports {
		if err := os.MkdirAll(filepath.Join(sys, dev), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(sys, dev, "name"), []byte(name+"\n"), 0o444); err != nil {
			t.Fatal(err)
		}
	}
}

func TestVirtioPorts(t *testing.T) {
	for _, tc := range []struct {
		name  string
		ports map[string]string // vportNpM -> name
		want  map[string]string // name -> device
	}{
		{"none", nil, map[string]string{}},
		{"guest agent", map[string]string{"vport0p1": "org.qemu.guest_agent.0"},
			map[string]string{"org.qemu.guest_agent.0": "/dev/vport0p1"}},
		{"several, unnamed and unsafe skipped", map[string]string{
			"vport0p0": "", "vport0p1": "org.qemu.guest_agent.0", "vport1p2": "com.example.other",
			"vport1p3": "../evil", "vport1p4": ".."},
			map[string]string{"org.qemu.guest_agent.0": "/dev/vport0p1", "com.example.other": "/dev/vport1p2"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sys := t.TempDir()
			fakePorts(t, sys, tc.ports)
			if got := virtioPorts(sys, "/dev"); !maps.Equal(got, tc.want) {
				t.Errorf("virtioPorts = %v, want %v", got, tc.want)
			}
		})
	}
	if got := virtioPorts(filepath.Join(t.TempDir(), "missing"), "/dev"); len(got) != 0 {
		t.Errorf("no sysfs directory (virtio_console not loaded): %v, want none", got)
	}
}

func TestLinkVirtioPorts(t *testing.T) {
	dev := t.TempDir()
	ports := map[string]string{"org.qemu.guest_agent.0": filepath.Join(dev, "vport0p1"), "b": filepath.Join(dev, "vport1p1")}
	// A stale link from an earlier port numbering must be replaced.
	if err := os.MkdirAll(filepath.Join(dev, "virtio-ports"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("../vport9p9", filepath.Join(dev, "virtio-ports", "b")); err != nil {
		t.Fatal(err)
	}
	for range 2 { // the second call finds everything in place
		if err := linkVirtioPorts(ports, dev); err != nil {
			t.Fatal(err)
		}
		for name, want := range map[string]string{"org.qemu.guest_agent.0": "../vport0p1", "b": "../vport1p1"} {
			got, err := os.Readlink(filepath.Join(dev, "virtio-ports", name))
			if err != nil || got != want {
				t.Errorf("link %s -> %q (%v), want %q", name, got, err, want)
			}
		}
	}
	if err := linkVirtioPorts(nil, filepath.Join(dev, "unused")); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dev, "unused")); !os.IsNotExist(err) {
		t.Errorf("no ports must create no directory (%v)", err)
	}
}

// marks collects supervisor lines for assertions.
type marks chan string

func (m marks) next(t *testing.T, re string) string {
	t.Helper()
	select {
	case l := <-m:
		if !regexp.MustCompile(re).MatchString(l) {
			t.Fatalf("line %q does not match %s", l, re)
		}
		return l
	case <-time.After(10 * time.Second):
		t.Fatalf("no line matching %s", re)
	}
	return ""
}

// TestQGASupervisor: the port appears late (after the "none" line), the
// agent gets the port's device, an exit is reported and the agent is
// started again after the pause, and cancelling stops everything.
func TestQGASupervisor(t *testing.T) {
	sys, dev := t.TempDir(), t.TempDir()
	m := make(marks, 16)
	devs := make(chan string, 16)
	s := qgaSupervisor{
		sysDir: sys, devDir: dev, port: qgaPort,
		command: func(ctx context.Context, d string) *exec.Cmd {
			devs <- d
			// The first run exits with 3; later runs stay up until cancelled.
			script := "sleep 30"
			if len(devs) == 1 {
				script = "exit 3"
			}
			return exec.CommandContext(ctx, "/bin/sh", "-c", script)
		},
		poll: 10 * time.Millisecond, noneAfter: 50 * time.Millisecond,
		backoff: 20 * time.Millisecond, maxBackoff: 100 * time.Millisecond, stableAfter: time.Minute,
		mark: func(d string) { m <- d },
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { s.run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })

	m.next(t, `^none port=org\.qemu\.guest_agent\.0 ports= \(`)
	fakePorts(t, sys, map[string]string{"vport0p0": "other", "vport0p1": qgaPort})
	want := filepath.Join(dev, "vport0p1")
	first := m.next(t, `^ok dev=`+regexp.QuoteMeta(want)+` port=org\.qemu\.guest_agent\.0 pid=\d+$`)
	m.next(t, `^fail exited dev=`+regexp.QuoteMeta(want)+` port=org\.qemu\.guest_agent\.0 after=\S+ err="exit status 3"$`)
	second := m.next(t, `^ok dev=`)
	if first == second {
		t.Errorf("restart reused the pid: %q", second)
	}
	if d := <-devs; d != want {
		t.Errorf("agent started on %q, want %q", d, want)
	}
	if l, err := os.Readlink(filepath.Join(dev, "virtio-ports", qgaPort)); err != nil || l != "../vport0p1" {
		t.Errorf("/dev/virtio-ports link: %q %v", l, err)
	}
	cancel()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("supervisor did not stop on cancel")
	}
	select {
	case l := <-m:
		t.Errorf("line after cancel: %q", l)
	default:
	}
}

// TestQGASupervisorStartFails: a missing binary is reported and retried
// with a growing pause, not in a busy loop.
func TestQGASupervisorStartFails(t *testing.T) {
	sys := t.TempDir()
	fakePorts(t, sys, map[string]string{"vport0p1": qgaPort})
	var lines []string
	var starts []time.Time
	s := qgaSupervisor{
		sysDir: sys, devDir: t.TempDir(), port: qgaPort,
		command: func(ctx context.Context, d string) *exec.Cmd {
			starts = append(starts, time.Now())
			return exec.CommandContext(ctx, filepath.Join(sys, "no-such-qemu-ga"))
		},
		poll: 10 * time.Millisecond, noneAfter: time.Second,
		backoff: 20 * time.Millisecond, maxBackoff: 80 * time.Millisecond, stableAfter: time.Minute,
		mark: func(d string) { lines = append(lines, d) },
	}
	ctx, cancel := context.WithTimeout(context.Background(), 400*time.Millisecond)
	defer cancel()
	s.run(ctx) // returns when ctx ends
	if len(lines) < 3 || len(lines) > 8 {
		t.Fatalf("%d start attempts in 400ms with pauses 20,40,80,80ms...: %q", len(lines), lines)
	}
	for _, l := range lines {
		if !strings.HasPrefix(l, "fail dev=") || !strings.Contains(l, "no-such-qemu-ga") {
			t.Errorf("line %q", l)
		}
	}
	gaps := make([]time.Duration, 0, len(starts))
	for i := 1; i < len(starts); i++ {
		gaps = append(gaps, starts[i].Sub(starts[i-1]))
	}
	if !slices.IsSortedFunc(gaps[:min(len(gaps), 2)], func(a, b time.Duration) int { return int(a - b) }) || gaps[0] < 20*time.Millisecond {
		t.Errorf("pauses between attempts %v: want >= 20ms and growing", gaps)
	}
}

func TestQGAArgs(t *testing.T) {
	got := strings.Join(qgaArgs("/dev/vport3p1"), " ")
	want := fmt.Sprintf("-m virtio-serial -p /dev/vport3p1 -f %s/qemu-ga.pid -t %s", qgaState, qgaState)
	if got != want {
		t.Errorf("qemu-ga arguments %q, want %q", got, want)
	}
}
