package libvirt

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/firstboot/firstboot/internal/owner"
	"github.com/firstboot/firstboot/lab/netns"
)

// DefaultSocket is libvirtd's socket for qemu:///system. It is a file, so it
// is reachable from the host namespace while libvirtd runs in the lab's.
const DefaultSocket = "/var/run/libvirt/libvirt-sock"

// State is what `firstboot lab up` leaves in StateDir/lab.json for later
// commands: which namespace and which daemons belong to firstboot.
type State struct {
	Netns        string `json:"netns"`
	CreatedNetns bool   `json:"created_netns"`
	// ConfigDir is the lab's own /etc/libvirt (see labConfigDir).
	ConfigDir   string    `json:"config_dir"`
	LibvirtdPID int       `json:"libvirtd_pid"`
	VirtlogdPID int       `json:"virtlogd_pid"`
	Started     time.Time `json:"started"`
	// Owner is the firstboot process the daemons belong to; nil means they
	// stay until `firstboot lab down`. A dead owner's daemons are adopted.
	Owner *owner.Owner `json:"owner,omitempty"`
	// OwnerPID is Owner's pid, for firstboot versions that read only that.
	OwnerPID int `json:"owner_pid,omitempty"`
	// Released: the owner ended its run while other processes' machines
	// still used the daemons, and left them to the last of those (which
	// may end before the owner has exited) to stop.
	Released bool `json:"released,omitempty"`
}

// setOwner makes o the daemons' owner (the zero Owner: nobody's).
func (st *State) setOwner(o owner.Owner) {
	st.Owner, st.OwnerPID, st.Released = nil, 0, false
	if !o.IsZero() {
		st.Owner, st.OwnerPID = &o, o.PID
	}
}

// ownerGone reports whether the daemons belong to a process that has ended
// without taking them down (it crashed or was killed).
func (st State) ownerGone() bool {
	o := owner.Owner{PID: st.OwnerPID} // written by a version that recorded only the pid
	if st.Owner != nil {
		o = *st.Owner
	}
	return !o.IsZero() && o.PID != os.Getpid() && o.Gone()
}

func statePath(dir string) string { return filepath.Join(dir, "lab.json") }

// LoadState reads StateDir/lab.json; a missing file gives a zero State.
func LoadState(dir string) (State, error) {
	var st State
	b, err := os.ReadFile(statePath(dir))
	if errors.Is(err, os.ErrNotExist) {
		return st, nil
	}
	if err != nil {
		return st, fmt.Errorf("lab state: %w", err)
	}
	if err := json.Unmarshal(b, &st); err != nil {
		return st, fmt.Errorf("lab state %s: %w (remove it if the lab is down)", statePath(dir), err)
	}
	return st, nil
}

func saveState(dir string, st State) error {
	b, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return err
	}
	tmp := statePath(dir) + ".tmp"
	if err := os.WriteFile(tmp, append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("lab state: %w", err)
	}
	return os.Rename(tmp, statePath(dir))
}

// processAlive reports whether pid runs the program comm (not a zombie and
// not a recycled pid).
func processAlive(pid int, comm string) bool {
	if pid <= 0 {
		return false
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	// stat is "pid (comm) state …"; comm may contain spaces and parentheses.
	open, closeIdx := bytes.IndexByte(b, '('), bytes.LastIndexByte(b, ')')
	if open < 0 || closeIdx < open || closeIdx+2 >= len(b) {
		return false
	}
	return string(b[open+1:closeIdx]) == comm && b[closeIdx+2] != 'Z' && b[closeIdx+2] != 'X'
}

// stopProcess sends SIGTERM, waits, then SIGKILL. A process that is already
// gone is not an error.
func stopProcess(ctx context.Context, pid int, comm string) error {
	if !processAlive(pid, comm) {
		return nil
	}
	_ = syscall.Kill(pid, syscall.SIGTERM)
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		if !processAlive(pid, comm) {
			return nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	_ = syscall.Kill(pid, syscall.SIGKILL)
	for i := 0; i < 50; i++ {
		if !processAlive(pid, comm) {
			return nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("%s (pid %d) did not stop after SIGKILL", comm, pid)
}

func readPidFile(path string) int {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	return pid
}

// startDaemon runs `ip netns exec ns prog -d -p pidfile` and waits for the
// pid file. The daemons detach; their early output goes to StateDir/prog.log.
func startDaemon(ctx context.Context, ns, stateDir, prog string) (int, error) {
	pidFile := filepath.Join(stateDir, prog+".pid")
	_ = os.Remove(pidFile)
	logf, err := os.OpenFile(filepath.Join(stateDir, prog+".log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return 0, fmt.Errorf("start %s: %w", prog, err)
	}
	defer logf.Close()
	cmd := exec.CommandContext(ctx, "ip", "netns", "exec", ns, prog, "-d", "-p", pidFile)
	// A file, not a pipe: Run must not wait for the daemon's inherited stdio.
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Run(); err != nil {
		return 0, fmt.Errorf("start %s in netns %s: %w (see %s)", prog, ns, err, logf.Name())
	}
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if pid := readPidFile(pidFile); processAlive(pid, prog) {
			return pid, nil
		}
		if err := ctx.Err(); err != nil {
			return 0, err
		}
	}
	return 0, fmt.Errorf("start %s: no live process behind %s after 20s (see %s)", prog, pidFile, logf.Name())
}

// waitSocket waits until something accepts connections on the unix socket.
func waitSocket(ctx context.Context, path string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		c, err := net.DialTimeout("unix", path, time.Second)
		if err == nil {
			return c.Close()
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("libvirtd socket %s: %w", path, err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// socketAnswers reports whether a daemon accepts connections on path now.
func socketAnswers(path string) bool {
	c, err := net.DialTimeout("unix", path, time.Second)
	if err != nil {
		return false
	}
	c.Close()
	return true
}

// startDaemons prepares the namespace and host directories and starts
// virtlogd then libvirtd inside the namespace.
func startDaemons(ctx context.Context, ns, stateDir string) (st State, err error) {
	if _, err := exec.LookPath("iptables"); err != nil {
		// libvirtd detects its firewall backend only at start-up.
		return st, errors.New("iptables is not installed: libvirtd needs it for isolated networks (run scripts/provision.sh)")
	}
	for _, prog := range []string{"libvirtd", "virtlogd", "ip"} {
		if _, err := exec.LookPath(prog); err != nil {
			return st, fmt.Errorf("%s is not installed (run scripts/provision.sh): %w", prog, err)
		}
	}
	for _, d := range []string{stateDir, "/var/log/libvirt/qemu", "/var/lib/libvirt/qemu", "/var/run/libvirt"} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return st, fmt.Errorf("lab: %w", err)
		}
	}
	st = State{Netns: ns, Started: time.Now().UTC()}
	defer func() {
		if err != nil {
			tctx, cancel := teardownContext(ctx)
			defer cancel()
			err = errors.Join(err, stopDaemons(tctx, st))
		}
	}()
	if !netns.Exists(ns) {
		if err := netns.Create(ctx, ns); err != nil {
			return st, err
		}
		st.CreatedNetns = true
	} else if err := netns.Prepare(ctx, ns); err != nil {
		return st, err
	}
	if st.ConfigDir, err = writeLabConfig(ns); err != nil {
		return st, err
	}
	if st.VirtlogdPID, err = startDaemon(ctx, ns, stateDir, "virtlogd"); err != nil {
		return st, err
	}
	if st.LibvirtdPID, err = startDaemon(ctx, ns, stateDir, "libvirtd"); err != nil {
		return st, err
	}
	if err := waitSocket(ctx, DefaultSocket, 30*time.Second); err != nil {
		return st, err
	}
	return st, nil
}

// stopDaemons stops the daemons named in st and removes the namespace if
// firstboot created it. Domains and networks must be gone before: QEMU and
// dnsmasq outlive libvirtd.
func stopDaemons(ctx context.Context, st State) error {
	var errs []error
	errs = append(errs, stopProcess(ctx, st.LibvirtdPID, "libvirtd"))
	errs = append(errs, stopProcess(ctx, st.VirtlogdPID, "virtlogd"))
	if st.CreatedNetns && st.Netns != "" {
		errs = append(errs, netns.Delete(ctx, st.Netns))
		if st.ConfigDir != "" && st.ConfigDir == labConfigDir(st.Netns) {
			errs = append(errs, os.RemoveAll(filepath.Dir(st.ConfigDir)))
		}
	}
	return errors.Join(errs...)
}

// labConfigDir is the lab's own /etc/libvirt. `ip netns exec NAME` bind-mounts
// each entry of /etc/netns/NAME over /etc, so the daemons we start see this
// directory as /etc/libvirt: our qemu.conf whatever the host has (or lacks),
// our persistent definitions apart from the host's, and never the host's
// autostarted NAT network.
func labConfigDir(ns string) string { return filepath.Join("/etc/netns", ns, "libvirt") }

// labQEMUConf runs QEMU as root (images anywhere, taps, /dev/kvm) and leaves
// file ownership alone. Without it libvirt checks /dev/kvm as libvirt-qemu,
// finds it inaccessible, and re-probes QEMU (20–70 s) on every define.
const labQEMUConf = labQEMUConfMarker + `; rewritten at every lab up.
user = "root"
group = "root"
dynamic_ownership = 0
`

// labQEMUConfMarker starts the lab's qemu.conf; it identifies a firstboot
// lab daemon to other firstboot processes.
const labQEMUConfMarker = "# Written by firstboot for its lab libvirtd"

func writeLabConfig(ns string) (string, error) {
	dir := labConfigDir(ns)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("lab config: %w", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "qemu.conf"), []byte(labQEMUConf), 0o644); err != nil {
		return "", fmt.Errorf("lab config: %w", err)
	}
	return dir, nil
}
