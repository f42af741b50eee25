package guest_test

import (
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/firstboot/firstboot/internal/testenv"
	"github.com/firstboot/firstboot/lab/guest"
)

func requireBuildTools(t *testing.T) {
	t.Helper()
	if testing.Short() {
		t.Skip("downloads Debian packages; skipped in -short mode")
	}
	for _, tool := range []string{"apt-get", "apt-cache", "dpkg-deb", "readelf", "xz"} {
		if _, err := exec.LookPath(tool); err != nil {
			testenv.Missing(t, "%s not installed", tool)
		}
	}
}

func TestLoadMissing(t *testing.T) {
	_, err := guest.Load(t.TempDir())
	if !errors.Is(err, guest.ErrNotBuilt) || !strings.Contains(err.Error(), "firstboot image build testguest") {
		t.Errorf("Load of an empty cache: %v", err)
	}
}

func initrdEntries(t *testing.T, img guest.Image) map[string]guest.CPIOEntry {
	t.Helper()
	f, err := os.Open(img.Initrd)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatalf("initrd is not gzip: %v", err)
	}
	ents, err := guest.ReadCPIO(zr)
	if err != nil {
		t.Fatalf("reading the initrd: %v", err)
	}
	m := map[string]guest.CPIOEntry{}
	for _, e := range ents {
		m[e.Name] = e
	}
	return m
}

// readelfDepends reads a module's depends= with binutils' readelf, a reader
// independent of guest.ModInfo.
func readelfDepends(t *testing.T, ko []byte) []string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "m.ko")
	if err := os.WriteFile(p, ko, 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("readelf", "-p", ".modinfo", p).Output()
	if err != nil {
		t.Fatalf("readelf: %v", err)
	}
	m := regexp.MustCompile(`depends=(\S*)`).FindSubmatch(out)
	if m == nil || len(m[1]) == 0 {
		return nil
	}
	// The kernel treats - and _ in module names alike; the initrd uses _.
	return strings.Split(strings.ReplaceAll(string(m[1]), "-", "_"), ",")
}

func TestImageContents(t *testing.T) {
	requireBuildTools(t)
	img := testImage(t)
	ents := initrdEntries(t, img)

	if e := ents["init"]; len(e.Data) == 0 || e.Mode&0o111 == 0 {
		t.Errorf("/init missing or not executable (mode %o)", e.Mode)
	}
	if e := ents["dev/console"]; e.RdevMajor != 5 || e.RdevMinor != 1 {
		t.Errorf("/dev/console is %d,%d, want 5,1", e.RdevMajor, e.RdevMinor)
	}
	for _, applet := range []string{"bin/sh", "sbin/udhcpc", "sbin/ifconfig", "sbin/route", "sbin/ip"} {
		if e, ok := ents[applet]; !ok || string(e.Data) != "/bin/busybox" {
			t.Errorf("%s: missing or not a link to busybox", applet)
		}
	}

	// The boot list is exactly LAB-FACTS' virtio-net chain plus the ACPI
	// power button driver and evdev (CONFIG_ACPI_BUTTON=m and
	// CONFIG_INPUT_EVDEV=m in Debian's config-6.1.0-*-amd64). With the
	// device list after it, the two are exactly the closure of
	// DefaultModules and DefaultDeviceModules under the depends= fields that
	// readelf reads from each .ko: every requested module, every dependency
	// (loaded before the module needing it) and nothing else.
	boot := strings.Fields(string(ents["etc/firstboot-guest/modules"].Data))
	list := append(slices.Clone(boot), strings.Fields(string(ents["etc/firstboot-guest/modules.devices"].Data))...)
	var names []string
	pos := map[string]int{}
	for i, p := range list {
		n := strings.TrimSuffix(filepath.Base(p), ".ko")
		if _, dup := pos[n]; dup {
			t.Errorf("module %s listed twice", n)
		}
		names = append(names, n)
		pos[n] = i
	}
	labFacts := []string{"virtio_ring", "virtio", "virtio_pci_modern_dev", "virtio_pci_legacy_dev", "virtio_pci", "failover", "net_failover", "virtio_net", "button", "evdev"}
	if got := slices.Sorted(slices.Values(names[:len(boot)])); !slices.Equal(got, slices.Sorted(slices.Values(labFacts))) {
		t.Errorf("boot modules %v, want the set %v", names[:len(boot)], labFacts)
	}
	needed := map[string]bool{}
	for _, m := range append(slices.Clone(guest.DefaultModules), guest.DefaultDeviceModules...) {
		needed[m] = true
	}
	for i, p := range list {
		ko := ents[strings.TrimPrefix(p, "/")].Data
		if len(ko) == 0 {
			t.Fatalf("%s listed but not in the initrd", p)
		}
		deps := readelfDepends(t, ko)
		_, got, err := guest.ModInfo(ko)
		if err != nil || !slices.Equal(got, deps) {
			t.Errorf("%s: ModInfo depends %v (err %v), readelf says %v", names[i], got, err, deps)
		}
		for _, d := range deps {
			needed[d] = true
			if j, ok := pos[d]; !ok || j > i {
				t.Errorf("%s is loaded before its dependency %s", names[i], d)
			}
		}
	}
	if got, want := slices.Sorted(slices.Values(names)), slices.Sorted(maps.Keys(needed)); !slices.Equal(got, want) {
		t.Errorf("modules %v, want the closure %v", got, want)
	}
	if !slices.Equal(img.Manifest.Modules, names[:len(boot)]) || !slices.Equal(img.Manifest.DeviceModules, names[len(boot):]) {
		t.Errorf("manifest modules %v + %v, initrd lists %v", img.Manifest.Modules, img.Manifest.DeviceModules, names)
	}
	for _, m := range []string{"virtio_console", "sr_mod", "cdrom", "isofs", "ata_piix", "ahci", "virtio_scsi", "virtio_blk", "sd_mod", "nvme", "usb_storage", "xhci_pci", "vfat", "floppy"} {
		if _, ok := pos[m]; !ok || pos[m] < len(boot) {
			t.Errorf("device module %s missing from the device list %v", m, names[len(boot):])
		}
	}

	// The vmlinux is exactly what xz itself decompresses from the bzImage.
	if img.Manifest.KernelFormat != "vmlinux-pvh" {
		t.Fatalf("kernel format %q, want vmlinux-pvh", img.Manifest.KernelFormat)
	}
	bz, err := os.ReadFile(img.BzImage)
	if err != nil {
		t.Fatal(err)
	}
	i := bytes.Index(bz, []byte{0xfd, '7', 'z', 'X', 'Z', 0})
	if i < 0 {
		t.Fatal("no xz stream in the bzImage")
	}
	cmd := exec.Command("xz", "-dc", "--single-stream")
	cmd.Stdin = bytes.NewReader(bz[i:])
	want, err := cmd.Output()
	if err != nil {
		t.Fatalf("xz -dc: %v", err)
	}
	got, err := os.ReadFile(img.Kernel)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("vmlinux (%d bytes) differs from xz's decompression (%d bytes)", len(got), len(want))
	}
}

// TestBuildIdempotentAndDeterministic: a second build with the same inputs
// reuses the image untouched; a forced rebuild produces identical bytes.
func TestBuildIdempotentAndDeterministic(t *testing.T) {
	requireBuildTools(t)
	img := testImage(t)
	cache := filepath.Dir(img.Dir)
	agent := filepath.Join(t.TempDir(), "agent")
	// The build checks the agent's hash, so hand it the same bytes.
	init := initrdEntries(t, img)["init"].Data
	if err := os.WriteFile(agent, init, 0o755); err != nil {
		t.Fatal(err)
	}
	st1, err := os.Stat(img.Initrd)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	start := time.Now()
	again, err := guest.Build(ctx, guest.BuildConfig{CacheDir: cache, AgentPath: agent})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("warm build (reuse) took %s", time.Since(start).Round(time.Millisecond))
	st2, _ := os.Stat(again.Initrd)
	if again.SHA256 != img.SHA256 || !st2.ModTime().Equal(st1.ModTime()) {
		t.Errorf("unchanged inputs rebuilt the image: sha %s -> %s, mtime %v -> %v", img.SHA256, again.SHA256, st1.ModTime(), st2.ModTime())
	}
	start = time.Now()
	forced, err := guest.Build(ctx, guest.BuildConfig{CacheDir: cache, AgentPath: agent, Force: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("forced rebuild (packages cached) took %s", time.Since(start).Round(time.Millisecond))
	if forced.SHA256 != img.SHA256 || forced.InitrdSHA256 != img.InitrdSHA256 {
		t.Errorf("a rebuild from the same inputs differs: %s vs %s", forced.SHA256, img.SHA256)
	}
	// A different command line is a different image.
	other, err := guest.Build(ctx, guest.BuildConfig{CacheDir: t.TempDir(), AgentPath: agent, Cmdline: guest.DefaultCmdline + " fbguest.checkin=0"})
	if err != nil {
		t.Fatal(err)
	}
	if other.SHA256 == img.SHA256 || other.KernelSHA256 != img.KernelSHA256 {
		t.Errorf("cmdline change: sha %s (same as before: %v), kernel sha equal: %v", other.SHA256, other.SHA256 == img.SHA256, other.KernelSHA256 == img.KernelSHA256)
	}
}

// TestBuildOffline: when apt cannot answer, the cached image built from the
// same agent is reused; a changed agent cannot be built and says why.
func TestBuildOffline(t *testing.T) {
	requireBuildTools(t)
	img := testImage(t)
	bin := t.TempDir()
	for _, tool := range []string{"apt-cache", "apt-get"} {
		if err := os.WriteFile(filepath.Join(bin, tool), []byte("#!/bin/sh\necho 'E: offline' >&2\nexit 100\n"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	t.Setenv("PATH", bin+":"+os.Getenv("PATH"))
	agent := filepath.Join(t.TempDir(), "agent")
	if err := os.WriteFile(agent, initrdEntries(t, img)["init"].Data, 0o755); err != nil {
		t.Fatal(err)
	}
	got, err := guest.Build(context.Background(), guest.BuildConfig{CacheDir: filepath.Dir(img.Dir), AgentPath: agent})
	if err != nil || got.SHA256 != img.SHA256 {
		t.Fatalf("offline build with an unchanged agent: %v (sha %s, want %s)", err, got.SHA256, img.SHA256)
	}
	if err := os.WriteFile(agent, append(initrdEntries(t, img)["init"].Data, 0), 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := guest.Build(context.Background(), guest.BuildConfig{CacheDir: filepath.Dir(img.Dir), AgentPath: agent}); err == nil || !strings.Contains(err.Error(), "offline") {
		t.Errorf("offline build with a changed agent: %v, want apt's error", err)
	}
}
