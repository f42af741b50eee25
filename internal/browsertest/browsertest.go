// Package browsertest runs Debian's headless Chromium for tests, inside a
// fresh network namespace with nothing but a downed loopback, so a page
// under test cannot reach anything even if it tried.
package browsertest

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/firstboot/firstboot/internal/testenv"
)

// Run runs chromium --headless with args (e.g. --dump-dom URL) and returns
// its standard output.
func Run(t testing.TB, args ...string) []byte {
	t.Helper()
	bin := ""
	for _, name := range []string{"chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			bin = p
			break
		}
	}
	if bin == "" {
		testenv.Missing(t, "chromium is not installed (Debian: apt-get install chromium); the browser test needs it")
	}
	unshare := []string{"unshare", "-n"}
	if os.Geteuid() != 0 {
		unshare = []string{"unshare", "-rn"}
	}
	if err := exec.Command(unshare[0], append(unshare[1:], "true")...).Run(); err != nil {
		testenv.Missing(t, "cannot make a network namespace for the browser (%v): refusing to run it with network access", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	base := []string{bin, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
		"--disable-component-update", "--disable-sync", "--no-first-run", "--user-data-dir=" + t.TempDir(),
		"--hide-scrollbars"}
	cmd := exec.CommandContext(ctx, unshare[0], append(append(unshare[1:], base...), args...)...)
	cmd.Env = append(os.Environ(), "HOME="+t.TempDir())
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("chromium %s: %v\n%s", strings.Join(args, " "), err, Tail(stderr.String(), 2000))
	}
	return stdout.Bytes()
}

// Tail returns the last n bytes of s.
func Tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}
