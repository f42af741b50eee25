package libvirt

import (
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/firstboot/firstboot/lab"
)

// TestProbeCachePerHost: a kept probe result serves every later lab on the
// host, whatever kernel (guest image) it would probe with, without booting
// anything (these labs have no libvirtd connection: a boot would panic); a
// result kept under another host's key is not used, and a probe that could
// not ask the host (no kernel) is not kept.
func TestProbeCachePerHost(t *testing.T) {
	state := t.TempDir()
	newLab := func() *Lab {
		return &Lab{cfg: lab.Config{StateDir: state}, log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	}
	if k1, k2 := hostKey(), hostKey(); k1 != k2 || !strings.Contains(k1, "cpu=") || !strings.Contains(k1, "kernel=") {
		t.Fatalf("host key %q then %q", k1, k2)
	}
	kept := AccelResult{Accel: "kvm", Reason: "a kernel booted under KVM printed its banner"}
	newLab().saveProbe(hostKey(), kept)
	for _, kernel := range []string{"/images/testguest/vmlinux", "/images/debian-12/vmlinuz", ""} {
		r, err := newLab().ProbeKVM(context.Background(), kernel)
		if err != nil || r.Accel != "kvm" || !strings.Contains(r.Reason, "cached") {
			t.Errorf("kernel %q: %+v %v, want the kept kvm result", kernel, r, err)
		}
	}

	// Another host's result (a different CPU) is not this host's.
	newLab().saveProbe(strings.Replace(hostKey(), "cpu=", "cpu=other", 1), kept)
	before, _ := os.ReadFile(filepath.Join(state, "accel.json"))
	r, err := newLab().ProbeKVM(context.Background(), "")
	if err != nil || strings.Contains(r.Reason, "cached") || r.Accel != "tcg" {
		t.Fatalf("with another host's result: %+v %v, want a fresh tcg answer", r, err)
	}
	after, _ := os.ReadFile(filepath.Join(state, "accel.json"))
	if f, err := os.OpenFile("/dev/kvm", os.O_RDWR, 0); err == nil {
		f.Close()
		// /dev/kvm opens, so only a boot could decide: nothing is kept.
		if string(after) != string(before) {
			t.Errorf("an undecided probe (no kernel) was kept: %s", after)
		}
	}
}
