package testnet

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// MustRun is Run for tests: it gives the command 30 s and fails the test,
// with the command's output, when it fails.
func (n *Namespace) MustRun(t testing.TB, name string, args ...string) []byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := n.Run(ctx, name, args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// Background starts a long-running command (a server, a daemon in the
// foreground) inside the namespace for the rest of the test. It is killed,
// with everything it started, in t.Cleanup; its output goes to a file that is
// logged if the test failed, so a misbehaving server explains itself.
func (n *Namespace) Background(t testing.TB, name string, args ...string) *exec.Cmd {
	t.Helper()
	logPath := filepath.Join(t.TempDir(), filepath.Base(name)+".log")
	f, err := os.Create(logPath)
	if err != nil {
		t.Fatalf("testnet: log file for %s: %v", name, err)
	}
	// Not n.Command: its context would stop the process before our cleanup runs.
	cmd := exec.Command("ip", append([]string{"netns", "exec", n.Name, name}, args...)...)
	cmd.Stdout, cmd.Stderr = f, f
	// Its own process group, so the kill reaches children it forks too.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		f.Close()
		t.Fatalf("testnet: start %s in %s: %v", name, n.Name, err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); f.Close(); close(done) }()
	t.Cleanup(func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-done
		if t.Failed() {
			b, _ := os.ReadFile(logPath)
			t.Logf("output of %s %s:\n%s", name, strings.Join(args, " "), b)
		}
	})
	return cmd
}

// WaitListening waits up to 10 s until a socket inside the namespace listens
// on port; network is "tcp" or "udp". Servers started with Background need
// this before the first client connects.
func (n *Namespace) WaitListening(t testing.TB, network, port string) {
	t.Helper()
	RequireTools(t, "ss")
	flags := map[string]string{"tcp": "-Hltn", "udp": "-Hlun"}[network]
	if flags == "" {
		t.Fatalf("testnet: WaitListening: network %q, want tcp or udp", network)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		out, _ := n.Run(ctx, "ss", flags, "sport = :"+port)
		cancel()
		if strings.Contains(string(out), ":"+port) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("testnet: nothing listens on %s port %s in %s after 10s", network, port, n.Name)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
