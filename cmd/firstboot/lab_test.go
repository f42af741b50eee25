package main

import (
	"os"
	"os/exec"
	"strings"
	"testing"
)

// TestLabCLI runs `firstboot lab up|status|down` the way a user would.
func TestLabCLI(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("the lab needs root")
	}
	if _, err := exec.LookPath("libvirtd"); err != nil {
		t.Skip("libvirtd not installed (scripts/provision.sh)")
	}
	bin := buildFirstboot(t)
	dir := t.TempDir()
	state := t.TempDir()
	run := func(args ...string) (string, int) {
		t.Helper()
		return runBinary(t, bin, dir, append(args, "--state-dir", state)...)
	}
	if out, code := run("lab", "status"); code != 1 || !strings.Contains(out, "down") {
		t.Fatalf("status before up: exit %d: %s", code, out)
	}
	out, code := run("lab", "up")
	t.Cleanup(func() { run("lab", "down") })
	if code != 0 {
		t.Fatalf("lab up: exit %d: %s", code, out)
	}
	if strings.Contains(out, "already up") {
		t.Skip("another firstboot lab is running; this test needs to own one")
	}
	if !strings.Contains(out, "QEMU") {
		t.Errorf("lab up output: %s", out)
	}
	if out, code := run("lab", "status"); code != 0 || !strings.Contains(out, "alive: yes") {
		t.Fatalf("status when up: exit %d: %s", code, out)
	}
	if out, code := run("lab", "down"); code != 0 || !strings.Contains(out, "lab down") {
		t.Fatalf("lab down: exit %d: %s", code, out)
	}
	if out, code := run("lab", "status"); code != 1 {
		t.Fatalf("status after down: exit %d: %s", code, out)
	}
	if _, err := os.Stat("/run/netns/firstboot"); err == nil {
		t.Error("namespace firstboot still there after lab down")
	}
	// doctor without starting daemons still checks the host.
	out, _ = run("doctor", "--no-start", "--image-cache", t.TempDir(), "--runs-dir", dir)
	for _, want := range []string{"ok    qemu", "ok    capture", "FAIL  test guest", "fix: firstboot image build testguest"} {
		if !strings.Contains(out, want) {
			t.Errorf("doctor output lacks %q:\n%s", want, out)
		}
	}
}
