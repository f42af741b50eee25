package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"time"
)

const (
	// virtioPortsDir lists the virtio-serial ports; each entry (vportNpM)
	// has a "name" file holding the name the host gave the port.
	virtioPortsDir = "/sys/class/virtio-ports"
	// qgaPort is the port name libvirt and QEMU use for the guest agent.
	qgaPort   = "org.qemu.guest_agent.0"
	qgaBinary = "/usr/sbin/qemu-ga"
	qgaState  = "/run/qemu-ga"
)

// virtioPorts maps port names to device nodes (/dev/vportNpM) by reading
// sysDir, the way udev's rule for /dev/virtio-ports/NAME does. Ports
// without a name are skipped.
func virtioPorts(sysDir, devDir string) map[string]string {
	ents, _ := os.ReadDir(sysDir)
	ports := map[string]string{}
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join(sysDir, e.Name(), "name"))
		if err != nil {
			continue
		}
		name := strings.TrimSpace(string(b))
		if name == "" || strings.ContainsAny(name, "/\x00") || name == "." || name == ".." {
			continue
		}
		ports[name] = filepath.Join(devDir, e.Name())
	}
	return ports
}

// linkVirtioPorts creates devDir/virtio-ports/NAME -> ../vportNpM for every
// named port, as udev would, so tools that expect those paths find them.
// Existing correct links are left alone; stale ones are replaced.
func linkVirtioPorts(ports map[string]string, devDir string) error {
	if len(ports) == 0 {
		return nil
	}
	dir := filepath.Join(devDir, "virtio-ports")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	var errs []error
	for name, dev := range ports {
		link := filepath.Join(dir, name)
		target := filepath.Join("..", filepath.Base(dev))
		if cur, err := os.Readlink(link); err == nil && cur == target {
			continue
		}
		_ = os.Remove(link)
		if err := os.Symlink(target, link); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// qgaSupervisor runs qemu-ga on the guest-agent port: it waits for the port
// (virtio_console reports ports a moment after it loads, and a port can be
// hot-plugged later), starts the agent, and starts it again whenever it
// exits, with a growing pause so a crashing agent does not spin.
type qgaSupervisor struct {
	sysDir, devDir string
	port           string
	// command builds the process for a device node.
	command func(ctx context.Context, dev string) *exec.Cmd
	// poll is how often the port is looked for; noneAfter is when the
	// "none" line is printed (once) if it has not appeared.
	poll, noneAfter time.Duration
	// backoff is the first pause after an exit, doubled up to maxBackoff;
	// a run that lasted longer than stableAfter resets it.
	backoff, maxBackoff, stableAfter time.Duration
	mark                             func(detail string)
}

func newQGASupervisor(con *console) qgaSupervisor {
	return qgaSupervisor{
		sysDir: virtioPortsDir, devDir: "/dev", port: qgaPort,
		command: qgaCommand,
		poll:    100 * time.Millisecond, noneAfter: 10 * time.Second,
		backoff: time.Second, maxBackoff: 30 * time.Second, stableAfter: time.Minute,
		mark: func(d string) { con.mark("qga", d) },
	}
}

// qgaCommand runs Debian's qemu-ga in the foreground on the port; its own
// log goes to a file, never to the console the markers use.
func qgaCommand(ctx context.Context, dev string) *exec.Cmd {
	_ = os.MkdirAll(qgaState, 0o755)
	_ = os.MkdirAll(runDir, 0o755)
	cmd := exec.CommandContext(ctx, qgaBinary, qgaArgs(dev)...)
	if f, err := os.OpenFile(runDir+"/qemu-ga.log", os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644); err == nil {
		cmd.Stdout, cmd.Stderr = f, f
	}
	return cmd
}

// qgaArgs: the transport and device explicitly (no udev link needed), the
// pid file and state directory under /run (a tmpfs).
func qgaArgs(dev string) []string {
	return []string{"-m", "virtio-serial", "-p", dev, "-f", qgaState + "/qemu-ga.pid", "-t", qgaState}
}

func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// run supervises qemu-ga until ctx ends.
func (s qgaSupervisor) run(ctx context.Context) {
	start := time.Now()
	saidNone := false
	backoff := s.backoff
	for ctx.Err() == nil {
		ports := virtioPorts(s.sysDir, s.devDir)
		_ = linkVirtioPorts(ports, s.devDir)
		dev, ok := ports[s.port]
		if !ok {
			if !saidNone && time.Since(start) >= s.noneAfter {
				s.mark(fmt.Sprintf("none port=%s ports=%s (the guest-agent port is not attached; still watching)",
					s.port, strings.Join(sortedPorts(ports), ",")))
				saidNone = true
			}
			if !sleepCtx(ctx, s.poll) {
				return
			}
			continue
		}
		cmd := s.command(ctx, dev)
		began := time.Now()
		if err := cmd.Start(); err != nil {
			closeOutput(cmd)
			s.mark(result(fmt.Sprintf("dev=%s port=%s", dev, s.port), fmt.Errorf("starting %s: %w", cmd.Path, err)))
		} else {
			s.mark(fmt.Sprintf("ok dev=%s port=%s pid=%d", dev, s.port, cmd.Process.Pid))
			err := cmd.Wait()
			closeOutput(cmd)
			if ctx.Err() != nil {
				return
			}
			if err == nil {
				err = errors.New("exited with status 0")
			}
			s.mark(result(fmt.Sprintf("exited dev=%s port=%s after=%s", dev, s.port,
				time.Since(began).Round(time.Millisecond)), err))
			if time.Since(began) >= s.stableAfter {
				backoff = s.backoff
			}
		}
		if !sleepCtx(ctx, backoff) {
			return
		}
		backoff = min(2*backoff, s.maxBackoff)
	}
}

// closeOutput closes the log file qgaCommand opened (exec does not).
func closeOutput(cmd *exec.Cmd) {
	if f, ok := cmd.Stdout.(*os.File); ok && f != os.Stdout {
		_ = f.Close()
	}
}

// sortedPorts is for messages: the port names, sorted.
func sortedPorts(ports map[string]string) []string {
	names := make([]string, 0, len(ports))
	for n := range ports {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}
