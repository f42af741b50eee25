package main

import (
	_ "embed"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

//go:embed udhcpc.script
var udhcpcScript []byte

const (
	runDir     = "/run/firstboot-guest"
	moduleList = "/etc/firstboot-guest/modules"
	// deviceModuleList is loaded in the background after moduleList.
	deviceModuleList = "/etc/firstboot-guest/modules.devices"
	dhcpEnv          = runDir + "/dhcp.env"
)

// initMain runs as PID 1: it mounts the kernel file systems, starts the agent
// as a child and reaps every process, so that a crash of the agent does not
// panic the kernel and orphans (udhcpc's daemon) do not pile up as zombies.
func initMain() {
	for _, m := range []struct{ src, dst, fstype string }{
		{"proc", "/proc", "proc"}, {"sysfs", "/sys", "sysfs"}, {"devtmpfs", "/dev", "devtmpfs"},
		{"tmpfs", "/run", "tmpfs"}, {"tmpfs", "/tmp", "tmpfs"},
	} {
		_ = os.MkdirAll(m.dst, 0o755)
		if err := unix.Mount(m.src, m.dst, m.fstype, 0, ""); err != nil && !errors.Is(err, unix.EBUSY) {
			fmt.Fprintf(os.Stdout, "%s init warn mount %s: %v\n", markerPrefix, m.dst, err)
		}
	}
	_ = os.MkdirAll("/dev/pts", 0o755)
	_ = unix.Mount("devpts", "/dev/pts", "devpts", 0, "")
	os.Setenv("PATH", "/sbin:/bin:/usr/sbin:/usr/bin")
	os.Setenv("HOME", "/root")

	self, err := os.Executable()
	if err != nil {
		self = "/init"
	}
	cmd := exec.Command(self, "agent")
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	if err := cmd.Start(); err != nil {
		fmt.Fprintf(os.Stdout, "%s init fail starting the agent: %v\n", markerPrefix, err)
		shell()
	}
	agent := cmd.Process.Pid
	for {
		var ws unix.WaitStatus
		pid, err := unix.Wait4(-1, &ws, 0, nil)
		if err != nil {
			if errors.Is(err, unix.EINTR) {
				continue
			}
			time.Sleep(time.Second)
			continue
		}
		if pid == agent {
			fmt.Fprintf(os.Stdout, "%s init fail agent exited status=%d; starting a shell\n", markerPrefix, ws.ExitStatus())
			agent = -1
			go shell()
		}
	}
}

// shell gives a human on the console something to work with when the agent
// is gone; the reap loop keeps running.
func shell() {
	sh := exec.Command("/bin/sh")
	sh.Stdin, sh.Stdout, sh.Stderr = os.Stdin, os.Stdout, os.Stderr
	_ = sh.Run()
}

// loadModules loads the image's modules in the order the builder listed
// them (dependencies first). An already loaded module is fine. A failure does
// not stop the rest: the power button driver failing (no ACPI) must not cost
// the guest its network.
func loadModules(path string) ([]string, error) {
	loaded, absent, err := loadModuleList(path, finitModule)
	for _, m := range absent {
		err = errors.Join(err, fmt.Errorf("loading %s: %w", m, unix.ENODEV))
	}
	return loaded, err
}

// loadDeviceModules loads the device list: a driver whose hardware the
// machine does not have (the floppy driver finds no controller and says
// ENODEV) is absent, not a failure.
func loadDeviceModules(path string) (loaded, absent []string, err error) {
	return loadModuleList(path, finitModule)
}

// loadModuleList loads each listed module with load, in order; ENODEV
// results are returned apart as absent.
func loadModuleList(path string, load func(string) error) (loaded, absent []string, err error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, nil, fmt.Errorf("reading the module list: %w", err)
	}
	var errs []error
	for _, p := range strings.Fields(string(b)) {
		name := strings.TrimSuffix(filepath.Base(p), ".ko")
		if err := load(p); err != nil {
			if errors.Is(err, unix.ENODEV) {
				absent = append(absent, name)
				continue
			}
			errs = append(errs, fmt.Errorf("loading %s: %w", name, err))
			continue
		}
		loaded = append(loaded, name)
	}
	return loaded, absent, errors.Join(errs...)
}

func finitModule(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := unix.FinitModule(int(f.Fd()), "", 0); err != nil && !errors.Is(err, unix.EEXIST) {
		return err
	}
	return nil
}

// waitForNIC returns the first non-loopback interface, waiting for the
// driver to register it.
func waitForNIC(timeout time.Duration) (string, error) {
	deadline := time.Now().Add(timeout)
	for {
		ents, _ := os.ReadDir("/sys/class/net")
		var names []string
		for _, e := range ents {
			if n := e.Name(); n != "lo" && !strings.HasPrefix(n, "sit") && !strings.HasPrefix(n, "ip6tnl") {
				names = append(names, n)
			}
		}
		if len(names) > 0 {
			sort.Strings(names)
			return names[0], nil
		}
		if time.Now().After(deadline) {
			return "", fmt.Errorf("no network interface after %s (no virtio NIC attached?)", timeout)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func readMAC(ifname string) string {
	b, _ := os.ReadFile("/sys/class/net/" + ifname + "/address")
	return strings.TrimSpace(string(b))
}

// Lease is what the DHCP script recorded.
type Lease struct {
	IP, Subnet, Router, Domain, ServerID, Lease string
	DNS, NTP                                    []string
}

// dhcp runs busybox udhcpc until it has a lease; udhcpc then stays in the
// background to renew it, as a real OS's client would.
func dhcp(cfg Config, ifname string, timeout time.Duration) (Lease, error) {
	if err := os.MkdirAll(runDir, 0o755); err != nil {
		return Lease{}, err
	}
	script := runDir + "/udhcpc.script"
	if err := os.WriteFile(script, udhcpcScript, 0o755); err != nil {
		return Lease{}, err
	}
	_ = os.Remove(dhcpEnv)
	logf, err := os.OpenFile(runDir+"/udhcpc.log", os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return Lease{}, err
	}
	defer logf.Close()
	// -t/-T: one DISCOVER a second; -n: exit when no lease (the caller
	// retries); -O ntpsrv: ask for option 42 too.
	tries := max(int(timeout/time.Second), 1)
	cmd := exec.Command("/bin/busybox", "udhcpc", "-i", ifname, "-s", script,
		"-x", "hostname:"+cfg.Hostname, "-V", cfg.Vendor, "-O", "ntpsrv",
		"-t", fmt.Sprint(tries), "-T", "1", "-A", "1", "-n", "-p", runDir+"/udhcpc.pid")
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Run(); err != nil {
		return Lease{}, fmt.Errorf("udhcpc: %w (log in %s/udhcpc.log)", err, runDir)
	}
	return readLease(dhcpEnv)
}

func readLease(path string) (Lease, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return Lease{}, fmt.Errorf("udhcpc reported a lease but the script wrote none: %w", err)
	}
	var l Lease
	for _, line := range strings.Split(string(b), "\n") {
		k, v, _ := strings.Cut(line, "=")
		switch k {
		case "ip":
			l.IP = v
		case "subnet":
			l.Subnet = v
		case "router":
			if f := strings.Fields(v); len(f) > 0 {
				l.Router = f[0]
			}
		case "dns":
			l.DNS = strings.Fields(v)
		case "ntpsrv":
			l.NTP = strings.Fields(v)
		case "domain":
			l.Domain = v
		case "serverid":
			l.ServerID = v
		case "lease":
			l.Lease = v
		}
	}
	if l.IP == "" {
		return l, errors.New("the DHCP script recorded no address")
	}
	return l, nil
}

func busybox(args ...string) error {
	out, err := exec.Command("/bin/busybox", args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}
