package main

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/firstboot/firstboot/results/manifest"
)

// A scenario that boots the guest, then waits long enough to be interrupted.
const longScenario = `name: long
image: {builtin: testguest}
machine: {memory: 256MiB}
capture: {window: 10m}
steps:
  - name: boot
    actions:
      - start
      - console_expect: {pattern: "FIRSTBOOT-GUEST ready", timeout: 3m}
  - name: idle
    actions:
      - wait: 8m
`

// startRun starts `firstboot run` and returns once the guest is up (its run
// directory's console shows the ready marker), with the run directory.
func (e *e2eEnv) startRun(t *testing.T, runs string) (*exec.Cmd, *bytes.Buffer, string) {
	t.Helper()
	scenario := filepath.Join(t.TempDir(), "long.yaml")
	if err := os.WriteFile(scenario, []byte(longScenario), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(e.bin, "run", scenario, "--runs-dir", runs, "--state-dir", e.state, "--image-cache", e.cache, "--accel", "tcg")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	deadline := time.Now().Add(4 * time.Minute)
	for time.Now().Before(deadline) {
		logs, _ := filepath.Glob(filepath.Join(runs, "*-long-*", "console.log"))
		for _, l := range logs {
			if b, _ := os.ReadFile(l); bytes.Contains(b, []byte("FIRSTBOOT-GUEST ready")) {
				return cmd, &out, filepath.Dir(l)
			}
		}
		time.Sleep(500 * time.Millisecond)
	}
	t.Fatalf("the guest never became ready:\n%s", out.String())
	return nil, nil, ""
}

func exitCodeOf(err error) int {
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.ExitCode()
	}
	if err != nil {
		return -1
	}
	return 0
}

// checkKept checks what must survive any failure: an incomplete manifest
// with the reason, and the capture so far, readable by tshark, from the
// guest's first DHCP packet.
func checkKept(t *testing.T, dir, reason string) {
	t.Helper()
	m, err := manifest.Read(dir)
	if err != nil {
		t.Fatal(err)
	}
	if m.Status != manifest.StatusIncomplete || !strings.Contains(m.Reason, reason) {
		t.Errorf("manifest status %q reason %q; want incomplete, reason containing %q", m.Status, m.Reason, reason)
	}
	// The first DHCP packet (the guest's kernel may send IPv6 MLD first).
	out, err := exec.Command("tshark", "-r", filepath.Join(dir, "capture.pcapng"), "-n", "-Y", "dhcp", "-T", "fields", "-e", "dhcp.option.hostname").Output()
	if first, _, _ := strings.Cut(string(out), "\n"); err != nil || strings.TrimSpace(first) != "firstboot-testguest" {
		t.Errorf("the capture so far is not readable from its first DHCP packet: %v: %s", err, out)
	}
}

// labGone checks that a run that started the lab left nothing of it behind:
// no daemons, and no QEMU process of the run's machine.
func (e *e2eEnv) labGone(t *testing.T, dir string) {
	t.Helper()
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, p := range procs {
		if b, err := os.ReadFile(p); err == nil && bytes.Contains(b, []byte("guest=firstboot-"+filepath.Base(dir))) {
			t.Errorf("the run's QEMU is still running (%s)", p)
		}
	}
	out, code := e.run(t, "", "lab", "status")
	if code == 0 || !strings.Contains(out, "down") {
		t.Errorf("the lab is still up after the run:\n%s", out)
	}
}

// TestRunInterrupted: SIGINT and SIGTERM end a run cleanly: exit 130, the
// capture kept, the manifest incomplete, everything the run started torn down.
func TestRunInterrupted(t *testing.T) {
	e := newE2E(t)
	for _, sig := range []syscall.Signal{syscall.SIGINT, syscall.SIGTERM} {
		t.Run(sig.String(), func(t *testing.T) {
			runs := t.TempDir()
			cmd, out, dir := e.startRun(t, runs)
			cmd.Process.Signal(sig)
			err := cmd.Wait()
			if code := exitCodeOf(err); code != exitInterrupted {
				t.Errorf("exit %d, want %d\n%s", code, exitInterrupted, out)
			}
			checkKept(t, dir, "interrupted")
			e.labGone(t, dir)
		})
	}
}

// TestRunRecoversFromCrash: firstboot killed outright leaves its lab behind;
// the next run finds and removes the leftovers and completes.
func TestRunRecoversFromCrash(t *testing.T) {
	e := newE2E(t)
	runs := t.TempDir()
	cmd, _, dir := e.startRun(t, runs)
	cmd.Process.Kill()
	cmd.Wait()
	// What a crash leaves: a manifest still "running", the capture so far.
	if m, err := manifest.Read(dir); err != nil || m.Status != manifest.StatusRunning {
		t.Fatalf("after a crash the manifest should say running: %+v %v", m, err)
	}
	scenario, _ := filepath.Abs("../../scenarios/testguest.yaml")
	out, code := e.run(t, "", "run", scenario, "--runs-dir", runs)
	if code != 0 {
		t.Fatalf("the run after a crash failed: exit %d\n%s", code, out)
	}
	dirs, _ := filepath.Glob(filepath.Join(runs, "*-testguest-*"))
	if len(dirs) != 1 {
		t.Fatalf("run directories: %v", dirs)
	}
	checkRunDir(t, dirs[0])
	e.labGone(t, dirs[0])
	e.labGone(t, dir) // the crashed run's machine was found and removed
}

// TestRunLibvirtdDies: libvirtd killed mid-run; the run ends incomplete with
// the capture kept, and tears down what it can.
func TestRunLibvirtdDies(t *testing.T) {
	e := newE2E(t)
	runs := t.TempDir()
	cmd, out, dir := e.startRun(t, runs)
	// The lab's libvirtd is the one running inside its namespace.
	pids, err := exec.Command("ip", "netns", "pids", "firstboot").Output()
	if err != nil {
		t.Fatalf("ip netns pids firstboot: %v", err)
	}
	var st struct{ Libvirtd int }
	for _, f := range strings.Fields(string(pids)) {
		if comm, _ := os.ReadFile("/proc/" + f + "/comm"); strings.TrimSpace(string(comm)) == "libvirtd" {
			fmt.Sscan(f, &st.Libvirtd)
		}
	}
	if st.Libvirtd == 0 {
		t.Fatalf("no libvirtd in the lab namespace (pids %s)", pids)
	}
	syscall.Kill(st.Libvirtd, syscall.SIGKILL)
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if code := exitCodeOf(err); code == 0 {
			t.Errorf("the run succeeded although libvirtd died\n%s", out)
		}
	case <-time.After(3 * time.Minute):
		t.Fatalf("the run did not end after libvirtd died\n%s", out)
	}
	checkKept(t, dir, "")
	// The next run starts a fresh lab.
	e.run(t, "", "lab", "down")
}
