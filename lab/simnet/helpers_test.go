package simnet

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"github.com/firstboot/firstboot/internal/testenv"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
)

// lockedBuffer is a log sink the test can read while responders write.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// events parses every line; a line that is not a JSON event fails the test.
func (b *lockedBuffer) events(t *testing.T) []Event {
	t.Helper()
	var out []Event
	sc := bufio.NewScanner(strings.NewReader(b.String()))
	for sc.Scan() {
		var e Event
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			t.Fatalf("log line %q is not a JSON event: %v", sc.Text(), err)
		}
		out = append(out, e)
	}
	return out
}

// waitEvent polls the log until match finds an event.
func (b *lockedBuffer) waitEvent(t *testing.T, what string, match func(Event) bool) Event {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		for _, e := range b.events(t) {
			if match(e) {
				return e
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no log event %s; log:\n%s", what, b.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// checkNoLeaks fails the test if goroutines started after it was called are
// still running at cleanup (registered first, so it runs after the Close
// cleanups registered later).
func checkNoLeaks(t *testing.T) {
	t.Helper()
	base := runtime.NumGoroutine()
	t.Cleanup(func() {
		deadline := time.Now().Add(5 * time.Second)
		for runtime.NumGoroutine() > base {
			if time.Now().After(deadline) {
				buf := make([]byte, 1<<20)
				n := runtime.Stack(buf, true)
				t.Errorf("goroutine leak: %d running, %d before the test\n%s", runtime.NumGoroutine(), base, buf[:n])
				return
			}
			time.Sleep(20 * time.Millisecond)
		}
	})
}

func ephemeralPorts() Ports { return Ports{} }

// startLoopback starts every responder on 127.0.0.1 with ephemeral ports,
// writes the CA to a temp dir and returns the CA path.
func startLoopback(t *testing.T, mutate func(*Config)) (*Responders, *lockedBuffer, string) {
	t.Helper()
	dir := t.TempDir()
	ca, err := LoadOrCreateCA(dir)
	if err != nil {
		t.Fatal(err)
	}
	logBuf := &lockedBuffer{}
	cfg := Config{Addr: netip.MustParseAddr("127.0.0.1"), Ports: ephemeralPorts(), CA: ca, Log: logBuf}
	if mutate != nil {
		mutate(&cfg)
	}
	r, err := Start(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := r.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return r, logBuf, filepath.Join(dir, CACertFile)
}

// needTool skips when a client the provisioning script installs is missing.
func needTool(t *testing.T, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		testenv.Missing(t, "%s not installed (scripts/provision.sh installs it): %v", name, err)
	}
	return p
}

func needRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		testenv.Missing(t, "needs root (network namespaces, iptables)")
	}
}

// runTool runs a client with a timeout and returns its combined output.
func runTool(t *testing.T, name string, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, name, args...).CombinedOutput()
	return string(out), err
}
