package simuplink

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// HostLibvirtd starts a libvirtd (and its virtlogd) in the host namespace, as
// a researcher's own libvirtd with the host bridge beside it, and returns its
// URI for --libvirt-uri. It runs in a mount namespace of its own with private
// /run/libvirt, /etc/libvirt, /var/lib/libvirt, /var/log/libvirt and
// /var/cache/libvirt, so it shares nothing with the lab's libvirtd (and has
// no networks, so never libvirt's default NAT network). It and its QEMU
// processes die with the host namespace in t.Cleanup.
func (u *Uplink) HostLibvirtd(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	paths := map[string]string{
		"/run/libvirt": "run", "/etc/libvirt": "etc", "/var/lib/libvirt": "lib",
		"/var/log/libvirt": "log", "/var/cache/libvirt": "cache",
	}
	var script strings.Builder
	script.WriteString("set -e\n")
	for target, sub := range paths {
		src := filepath.Join(dir, sub)
		if err := os.MkdirAll(src, 0o755); err != nil {
			t.Fatal(err)
		}
		script.WriteString("mkdir -p " + target + " && mount --bind " + src + " " + target + "\n")
	}
	for _, d := range []string{"log/qemu", "lib/qemu"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	// QEMU as root, files left alone: as the lab's own libvirtd runs it.
	conf := "user = \"root\"\ngroup = \"root\"\ndynamic_ownership = 0\n"
	if err := os.WriteFile(filepath.Join(dir, "etc", "qemu.conf"), []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	// The QEMU capabilities the lab's libvirtd probed, if any: they save the
	// first call's probe (libvirt checks they still fit the binaries).
	if caps, _ := filepath.Glob("/var/cache/libvirt/qemu/capabilities/*.xml"); len(caps) > 0 {
		_ = os.MkdirAll(filepath.Join(dir, "cache", "qemu", "capabilities"), 0o755)
		for _, c := range caps {
			if b, err := os.ReadFile(c); err == nil {
				_ = os.WriteFile(filepath.Join(dir, "cache", "qemu", "capabilities", filepath.Base(c)), b, 0o600)
			}
		}
	}
	pids := []string{filepath.Join(dir, "virtlogd.pid"), filepath.Join(dir, "libvirtd.pid")}
	script.WriteString("virtlogd -d -p " + pids[0] + "\nlibvirtd -d -p " + pids[1] + "\n")
	cmd := exec.Command("ip", "netns", "exec", u.Host.Name, "unshare", "--mount", "--propagation", "private", "sh", "-c", script.String())
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("starting the host's libvirtd: %v\n%s", err, out)
	}
	t.Cleanup(func() {
		for _, p := range pids {
			if b, err := os.ReadFile(p); err == nil {
				if pid, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil && pid > 1 {
					_ = syscall.Kill(pid, syscall.SIGTERM)
				}
			}
		}
	})
	sock := filepath.Join(dir, "run", "libvirt-sock")
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if _, err := os.Stat(sock); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the host's libvirtd made no socket at %s", sock)
		}
	}
	return "qemu:///system?socket=" + sock
}
