package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/firstboot/firstboot/internal/owner"
	lablibvirt "github.com/firstboot/firstboot/lab/libvirt"
	"github.com/firstboot/firstboot/results/manifest"
	"github.com/firstboot/firstboot/results/rundir"
)

// shortScenario boots the test guest with an extra disk (the machine gets
// an overlay file in its run directory) and powers it off.
const shortScenario = `name: %s
image:
  builtin: testguest
  media:
    - {name: scratch, kind: disk, path: scratch.img}
machine: {memory: 256MiB}
capture: {window: 3m}
steps:
  - name: boot
    actions:
      - start
      - console_expect: {pattern: "FIRSTBOOT-GUEST ready", timeout: 2m}
  - name: idle
    actions:
      - wait: %s
  - name: off
    actions:
      - shutdown: {timeout: 30s}
`

// writeScenario writes shortScenario named name, idling for idle.
func writeScenario(t *testing.T, name, idle string) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "scratch.img"), make([]byte, 1<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, name+".yaml")
	if err := os.WriteFile(p, []byte(fmt.Sprintf(shortScenario, name, idle)), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// killedRun is a `firstboot run` killed with SIGKILL at a phase.
type killedRun struct {
	phase string
	pid   int
	dir   string // its run directory
	out   string
}

// runDirs lists the run directories in runs.
func runDirs(runs string) map[string]bool {
	dirs, _ := filepath.Glob(filepath.Join(runs, "*", manifest.FileName))
	out := map[string]bool{}
	for _, d := range dirs {
		out[filepath.Dir(d)] = true
	}
	return out
}

// startRun starts `firstboot run scenario` with the test hook set to pause
// (empty: none) and returns it with its output.
func (e *e2eEnv) startRunAt(t *testing.T, scenario, runs, pause, accel string) (*exec.Cmd, *syncBuffer) {
	t.Helper()
	cmd := exec.Command(e.bin, "run", scenario, "--runs-dir", runs, "--state-dir", e.state, "--image-cache", e.cache, "--accel", accel)
	cmd.Env = append(os.Environ(), "FIRSTBOOT_TEST_PAUSE="+pause)
	out := &syncBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	return cmd, out
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, what string, timeout time.Duration, cond func() bool, out *syncBuffer) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s\n%s", what, timeout, out)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// ownedDir is the run directory in runs whose manifest names pid its owner.
func ownedDir(runs string, pid int) string {
	for d := range runDirs(runs) {
		if m, err := manifest.Read(d); err == nil && m.Owner != nil && m.Owner.PID == pid {
			return d
		}
	}
	return ""
}

// killAt runs scenario until it reaches phase (pause: through the test
// hook; otherwise until the guest is up and captured), then kills it with
// SIGKILL, and checks that its machine's QEMU ends with it (autodestroy).
// meanwhile, if set, runs once the run has started.
func (e *e2eEnv) killAt(t *testing.T, scenario, runs, phase, pause, accel string, meanwhile func(out *syncBuffer)) killedRun {
	t.Helper()
	cmd, out := e.startRunAt(t, scenario, runs, pause, accel)
	var dir string
	waitFor(t, "run directory of the "+phase+" run", time.Minute, func() bool {
		dir = ownedDir(runs, cmd.Process.Pid)
		return dir != ""
	}, out)
	if meanwhile != nil {
		meanwhile(out)
	}
	if pause != "" {
		waitFor(t, "test hook at "+pause, 3*time.Minute, func() bool {
			for _, l := range strings.Split(out.String(), "\n") {
				if strings.Contains(l, `msg="test hook: paused"`) && strings.Contains(l, " phase="+pause) {
					return true
				}
			}
			return false
		}, out)
	} else {
		waitFor(t, "the guest up and captured", 3*time.Minute, func() bool {
			c, _ := os.ReadFile(filepath.Join(dir, "console.log"))
			st, err := os.Stat(filepath.Join(dir, "capture.pcapng"))
			return bytes.Contains(c, []byte("FIRSTBOOT-GUEST ready")) && err == nil && st.Size() > 1000
		}, out)
	}
	cmd.Process.Kill()
	cmd.Wait()
	k := killedRun{phase: phase, pid: cmd.Process.Pid, dir: dir, out: out.String()}
	// Its machines die with its connection to libvirtd, at once.
	waitFor(t, "the killed run's QEMU gone", 30*time.Second, func() bool { return len(k.qemus()) == 0 }, out)
	return k
}

// machineNames are the domains the killed run may have made.
func (k killedRun) machineNames() []string {
	return []string{"firstboot-" + filepath.Base(k.dir), fmt.Sprintf("firstboot-kvmprobe-%d", k.pid)}
}

// qemus lists QEMU processes running the killed run's machines.
func (k killedRun) qemus() []string {
	var found []string
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, p := range procs {
		b, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		for _, n := range k.machineNames() {
			if bytes.Contains(b, []byte("guest="+n+",")) {
				found = append(found, p)
			}
		}
	}
	return found
}

func virsh(args ...string) (string, error) {
	out, err := exec.Command("virsh", append([]string{"-c", "qemu:///system"}, args...)...).CombinedOutput()
	return string(out), err
}

// checkReaped: nothing the killed run made is left in the lab: no machine
// (running or defined), QEMU, network, redirect rule, tap or overlay file.
func checkReaped(t *testing.T, k killedRun) {
	t.Helper()
	for _, n := range k.machineNames() {
		if out, err := virsh("dominfo", n); err == nil {
			t.Errorf("%s: machine %s still defined:\n%s", k.phase, n, out)
		}
	}
	if q := k.qemus(); len(q) > 0 {
		t.Errorf("%s: QEMU still running: %v", k.phase, q)
	}
	if out, err := virsh("net-info", "firstboot-"+filepath.Base(k.dir)); err == nil {
		t.Errorf("%s: network still defined:\n%s", k.phase, out)
	}
	for _, table := range []string{"nat", "mangle"} {
		out, _ := exec.Command("ip", "netns", "exec", lablibvirt.DefaultNetns, "iptables", "-w", "-t", table, "-S").Output()
		if bytes.Contains(out, []byte(fmt.Sprintf("pid=%d,", k.pid))) {
			t.Errorf("%s: redirect rules of pid %d left in %s:\n%s", k.phase, k.pid, table, out)
		}
	}
	if overlays, _ := filepath.Glob(filepath.Join(k.dir, "*.qcow2")); len(overlays) > 0 {
		t.Errorf("%s: overlays left: %v", k.phase, overlays)
	}
	if m, err := manifest.Read(k.dir); err == nil && m.Capture.Interface != "" {
		if tap := m.Capture.Interface; tapExists(tap) && !tapOfLiveMachine(tap) {
			t.Errorf("%s: its tap %s is still there and belongs to no machine", k.phase, tap)
		}
	}
}

func tapExists(tap string) bool {
	return exec.Command("ip", "-n", lablibvirt.DefaultNetns, "link", "show", "dev", tap).Run() == nil
}

// tapOfLiveMachine reports whether a running machine uses tap now (libvirt
// reuses vnetN names).
func tapOfLiveMachine(tap string) bool {
	names, _ := virsh("list", "--name")
	for _, n := range strings.Fields(names) {
		if out, err := virsh("domiflist", n); err == nil && strings.Contains(out, tap+" ") {
			return true
		}
	}
	return false
}

// checkMarked: the killed run's manifest says incomplete with the reason,
// and its capture, if it had one, opens in tshark to its last packet.
func checkMarked(t *testing.T, k killedRun, during string) {
	t.Helper()
	m, err := manifest.Read(k.dir)
	if err != nil {
		t.Fatal(err)
	}
	if m.Status != manifest.StatusIncomplete || !strings.HasPrefix(m.Reason, rundir.Killed) || !strings.Contains(m.Reason, during) || m.Doing != nil {
		t.Errorf("%s: status %q reason %q doing %+v; want incomplete, %q … %q", k.phase, m.Status, m.Reason, m.Doing, rundir.Killed, during)
	}
	if m.Owner == nil || m.Owner.PID != k.pid {
		t.Errorf("%s: manifest owner %+v, want pid %d", k.phase, m.Owner, k.pid)
	}
	if m.Capture.File == "" {
		return
	}
	out, err := exec.Command("tshark", "-r", filepath.Join(k.dir, m.Capture.File), "-n", "-T", "fields", "-e", "frame.number").Output()
	if err != nil || uint64(len(strings.Fields(string(out)))) != m.Capture.Packets || m.Capture.Packets == 0 {
		t.Errorf("%s: tshark reads the capture: %v, %d packets, manifest says %d:\n%.500s", k.phase, err, len(strings.Fields(string(out))), m.Capture.Packets, out)
	}
}

// TestKilledRunLeavesNothing: `firstboot run` killed with SIGKILL at each
// phase, as an out-of-memory kill or a closed SSH session would, each
// followed by another run: the killed run's machine dies at once with it,
// the next run that brings the lab up reaps everything else it made in the
// lab and marks its run directory incomplete with the reason, with a
// capture that opens in tshark. A run going on beside a killed one (and
// beside the reaping) completes untouched. The runs follow each other so
// each is the next one's "following run".
func TestKilledRunLeavesNothing(t *testing.T) {
	e := newE2E(t)
	runs := t.TempDir()
	short := writeScenario(t, "short", "1s")
	var killed []killedRun
	done := map[string]bool{} // phases whose leftovers were checked
	// checkPrevious checks the runs killed before, once a later run has
	// brought the lab up.
	checkPrevious := func() {
		t.Helper()
		for _, k := range killed {
			if !done[k.phase] {
				checkReaped(t, k)
				done[k.phase] = true
			}
		}
	}

	// Each phase checks what the one before left: after a failed phase the
	// later ones would check nothing meaningful.
	phase := func(name string, f func(t *testing.T)) {
		if !t.Run(name, f) {
			t.FailNow()
		}
	}

	phase("kvm-probe", func(t *testing.T) {
		if _, err := os.Stat("/dev/kvm"); err != nil {
			t.Skip("no /dev/kvm: firstboot boots no KVM probe on this host")
		}
		// A fresh state directory: the probe's result is not cached yet.
		killed = append(killed, e.killAt(t, short, runs, "kvm-probe", "kvm-probe", "auto", nil))
	})
	// Whether the first run started the daemons (no other lab was up).
	var started *lablibvirt.State
	phase("machine-defined", func(t *testing.T) {
		k := e.killAt(t, short, runs, "machine-defined", "machine-defined", "tcg", nil)
		started = labState(t, e)
		checkPrevious()
		killed = append(killed, k)
		// Until the next run, `lab status` shows what the killed run left.
		out, _ := e.run(t, "", "lab", "status", "--runs-dir", runs)
		name := "firstboot-" + filepath.Base(k.dir)
		for _, want := range []string{"machine " + name + " of pid=" + fmt.Sprint(k.pid), "network " + name, "runs a killed firstboot left running", k.dir} {
			if !strings.Contains(out, want) {
				t.Errorf("lab status lacks %q:\n%s", want, out)
			}
		}
	})
	// A run beside the one killed while capturing; it idles until well after
	// the next run has reaped the killed one.
	parallel := writeScenario(t, "beside", "60s")
	pcmd, pout := e.startRunAt(t, parallel, runs, "", "tcg")
	pdone := make(chan error, 1)
	go func() { pdone <- pcmd.Wait() }()
	var pdir string
	waitFor(t, "the run beside started", time.Minute, func() bool {
		pdir = ownedDir(runs, pcmd.Process.Pid)
		return pdir != ""
	}, pout)
	phase("capturing", func(t *testing.T) {
		k := e.killAt(t, short, runs, "capturing", "", "tcg", nil)
		checkPrevious()
		// This run reaped the one killed before: `lab status` says so.
		prev := killed[len(killed)-1]
		out, _ := e.run(t, "", "lab", "status", "--runs-dir", runs)
		if !strings.Contains(out, "reaped lately") || !strings.Contains(out, "machine firstboot-"+filepath.Base(prev.dir)) || strings.Contains(out, prev.dir+"\n") {
			t.Errorf("lab status after the reap:\n%s", out)
		}
		killed = append(killed, k)
	})
	phase("analysis", func(t *testing.T) {
		// Right after this run has reaped the one killed while capturing,
		// the machine of the run beside still runs.
		prev := killed[len(killed)-1]
		besideRunning := func(out *syncBuffer) {
			waitFor(t, "the killed run's machine reaped", 2*time.Minute, func() bool {
				return strings.Contains(out.String(), `orphan="machine firstboot-`+filepath.Base(prev.dir))
			}, out)
			if st, err := virsh("domstate", "firstboot-"+filepath.Base(pdir)); err != nil || strings.TrimSpace(st) != "running" {
				t.Errorf("the machine of the run beside, right after the reap: %q %v", st, err)
			}
		}
		k := e.killAt(t, short, runs, "analysis", "analysis", "tcg", besideRunning)
		checkPrevious()
		killed = append(killed, k)
	})
	phase("report", func(t *testing.T) {
		k := e.killAt(t, short, runs, "report", "report", "tcg", nil)
		checkPrevious()
		killed = append(killed, k)
	})
	phase("lab-up", func(t *testing.T) {
		// Before the lab is up: nothing in the lab yet, a run directory
		// marked running.
		k := e.killAt(t, short, runs, "lab-up", "lab-up", "tcg", nil)
		killed = append(killed, k)
		// `firstboot runs` marks it before it lists it.
		out, code := e.run(t, "", "runs", "--runs-dir", runs)
		for _, l := range strings.Split(out, "\n") {
			if strings.Contains(l, filepath.Base(k.dir)) && (code != 0 || !strings.Contains(l, manifest.StatusIncomplete)) {
				t.Errorf("firstboot runs: exit %d, the run killed before the lab was up: %q", code, l)
			}
		}
		if !strings.Contains(out, filepath.Base(k.dir)) {
			t.Errorf("firstboot runs does not list the killed run:\n%s", out)
		}
	})

	// A normal run afterwards completes and leaves the lab clean.
	before := runDirs(runs)
	out, code := e.run(t, "", "run", short, "--runs-dir", runs)
	if code != 0 {
		t.Fatalf("the run after the kills: exit %d\n%s", code, out)
	}
	checkPrevious()
	for d := range runDirs(runs) {
		if !before[d] {
			if m, err := manifest.Read(d); err != nil || m.Status != manifest.StatusComplete {
				t.Errorf("the run after the kills: %+v %v", m, err)
			}
		}
	}
	during := map[string]string{
		"kvm-probe":       "during setup machine",
		"machine-defined": "during setup machine",
		"capturing":       "during step",
		"analysis":        "during the analysis",
		"report":          "during the report",
		"lab-up":          "during setup lab",
	}
	for _, k := range killed {
		checkMarked(t, k, during[k.phase])
	}

	t.Run("the run beside completes untouched", func(t *testing.T) {
		select {
		case err := <-pdone:
			if err != nil {
				t.Fatalf("the run beside failed: %v\n%s", err, pout)
			}
		case <-time.After(3 * time.Minute):
			t.Fatalf("the run beside did not end:\n%s", pout)
		}
		m, err := manifest.Read(pdir)
		if err != nil {
			t.Fatal(err)
		}
		if m.Status != manifest.StatusComplete || m.Capture.StoppedBy != "machine-stopped" || m.Capture.Packets == 0 || m.Capture.DropsUnknown {
			t.Errorf("the run beside: status %q (%s), capture %+v", m.Status, m.Reason, m.Capture)
		}
	})
	checkDaemons(t, e, started, pout)
}

// labState reads the lab state in the test's state directory: set when one
// of its runs started the daemons (otherwise another lab was shared).
func labState(t *testing.T, e *e2eEnv) *lablibvirt.State {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(e.state, "lab.json"))
	if os.IsNotExist(err) {
		return nil
	}
	var st lablibvirt.State
	if err := json.Unmarshal(b, &st); err != nil {
		t.Fatal(err)
	}
	return &st
}

// checkDaemons: the daemons the test's first run started, which killed
// runs then owned in turn, are stopped once the last run ended, with the
// namespace they made, unless machines of other firstboot processes still
// use them.
func checkDaemons(t *testing.T, e *e2eEnv, started *lablibvirt.State, beside *syncBuffer) {
	t.Helper()
	if started == nil {
		return // the test's runs shared another lab's daemons
	}
	// Not kill -0: a daemon that has exited stays a zombie until its
	// parent (init, which on some hosts is slow to reap) collects it.
	alive := func(pid int) bool { o, err := owner.Of(pid); return err == nil && !o.Gone() }
	if !alive(started.LibvirtdPID) && !alive(started.VirtlogdPID) {
		if st := labState(t, e); st != nil {
			t.Errorf("lab.json left behind for daemons that are gone: %+v", st)
		}
		if out, err := exec.Command("ip", "netns", "pids", started.Netns).Output(); started.CreatedNetns && err == nil && len(bytes.TrimSpace(out)) == 0 {
			t.Errorf("the namespace %s the daemons were started in is left, empty", started.Netns)
		}
		return
	}
	if names, _ := virsh("list", "--name"); !strings.Contains(names, "firstboot-") {
		var said []string
		for _, l := range strings.Split(beside.String(), "\n") {
			if strings.Contains(l, "lab:") {
				said = append(said, l)
			}
		}
		t.Errorf("the daemons the test's runs started still run, with no firstboot machine left to use them: %+v\nlab.json now: %+v\nthe run beside said:\n%s",
			started, labState(t, e), strings.Join(said, "\n"))
	}
}
