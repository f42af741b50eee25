package libvirt

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/firstboot/firstboot/internal/testvm"
	"github.com/firstboot/firstboot/lab"
	"github.com/firstboot/firstboot/lab/guest"
)

// makeISO writes an ISO 9660 image holding files, made by xorriso (an
// independent tool), and returns its path.
func makeISO(t *testing.T, dir, name string, files map[string]string) string {
	t.Helper()
	if _, err := exec.LookPath("xorriso"); err != nil {
		t.Fatal("xorriso is not installed: run scripts/provision.sh")
	}
	src := filepath.Join(dir, name+"-src")
	if err := os.MkdirAll(src, 0o755); err != nil {
		t.Fatal(err)
	}
	for f, content := range files {
		if err := os.WriteFile(filepath.Join(src, f), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	iso := filepath.Join(dir, name+".iso")
	if out, err := exec.Command("xorriso", "-as", "mkisofs", "-quiet", "-r", "-J", "-V", "FBTEST", "-o", iso, src).CombinedOutput(); err != nil {
		t.Fatalf("xorriso: %v\n%s", err, out)
	}
	return iso
}

func randomText(t *testing.T) string {
	t.Helper()
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

// defineTestMachine defines spec on the shared lab (paused, no network) and
// destroys it at the test's end, printing the console tail on failure.
func defineTestMachine(t *testing.T, l *Lab, spec lab.MachineSpec) *Machine {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	m, err := l.DefineMachine(ctx, spec, nil)
	if err != nil {
		t.Fatal(err)
	}
	destroyOnCleanup(t, m)
	return m
}

// blockLine is the `info block` line of a drive (QEMU names them by
// libvirt's alias, which holds the target's position, not its name), found
// by the file it holds or, for an empty drive, by "not inserted".
func infoBlock(t *testing.T, m *Machine) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := m.MonitorHMP(ctx, "info block")
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestHardwareLive defines a machine with every optional device on the real
// libvirtd and checks, through QEMU's monitor, that QEMU has them: the TPM
// (swtpm started by libvirt), the Apple SMC, the CPU model, a CD-ROM that
// starts empty and is loaded and emptied while the machine runs, a USB stick
// plugged in and pulled, and the guest agent's port.
func TestHardwareLive(t *testing.T) {
	l := getLab(t)
	dir := t.TempDir()
	g := needGuest(t, dir)
	iso := makeISO(t, dir, "cd", map[string]string{"hello.txt": randomText(t)})
	floppy := filepath.Join(dir, "unattend.img")
	if out, err := exec.Command("qemu-img", "create", "-q", "-f", "raw", floppy, "1440K").CombinedOutput(); err != nil {
		t.Fatalf("qemu-img: %v %s", err, out)
	}
	stick := filepath.Join(dir, "stick.img")
	if out, err := exec.Command("qemu-img", "create", "-q", "-f", "raw", stick, "8M").CombinedOutput(); err != nil {
		t.Fatalf("qemu-img: %v %s", err, out)
	}
	m := defineTestMachine(t, l, lab.MachineSpec{
		Name: "hw-" + itoa(os.Getpid()), Kernel: g.Kernel, Initrd: g.Initrd, Cmdline: g.Cmdline,
		RunDir: dir, MemoryMiB: 256, Accel: "tcg",
		TPM: true, CPUModel: "Penryn", CPUFeatures: []string{"+sse4.2", "+invtsc"}, AppleSMCOSK: dummyOSK, DiskBus: "virtio",
		Media: []lab.Media{
			{Name: "cd", Kind: lab.MediaCDROM, Path: iso, Ejected: true},
			{Name: "stick", Kind: lab.MediaUSB, Path: stick, Ejected: true},
			{Name: "fd", Kind: lab.MediaFloppy, Path: floppy},
		},
	})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	qtree, err := m.MonitorHMP(ctx, "info qtree")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`dev: isa-applesmc`, `dev: tpm-tis`, `name = "org.qemu.guest_agent.0"`} {
		if !strings.Contains(qtree, want) {
			t.Errorf("info qtree lacks %q", want)
		}
	}
	if !strings.Contains(qtree, `osk = "`+dummyOSK+`"`) {
		t.Errorf("the SMC's osk is not the key given (commas must reach QEMU unescaped)")
	}
	// The CPU model's identification string, which the guest's CPUID (and
	// /proc/cpuinfo) shows: QEMU's Penryn is "… (Penryn Class Core 2)".
	model, err := m.MonitorHMP(ctx, "qom-get /machine/unattached/device[0] model-id")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(model, "Penryn") {
		t.Errorf("CPU model-id %q, want Penryn's", model)
	}
	// QEMU's Penryn has no SSE4.2; the feature list added it. TCG has no
	// invariant TSC: the machine runs without it instead of failing.
	if v, err := m.MonitorHMP(ctx, "qom-get /machine/unattached/device[0] sse4.2"); err != nil || strings.TrimSpace(v) != "true" {
		t.Errorf("sse4.2 on the CPU: %q, %v", v, err)
	}
	if v, err := m.MonitorHMP(ctx, "qom-get /machine/unattached/device[0] invtsc"); err != nil || strings.TrimSpace(v) != "false" {
		t.Errorf("invtsc on the TCG CPU: %q, %v", v, err)
	}

	notInserted := regexp.MustCompile(`(?m)^\S+: \[not inserted\]`)
	if b := infoBlock(t, m); strings.Contains(b, iso) || !notInserted.MatchString(b) {
		t.Errorf("the ejected CD-ROM is not empty at start:\n%s", b)
	}
	if err := m.InsertMedia(ctx, "cd"); err != nil {
		t.Fatal(err)
	}
	if b := infoBlock(t, m); !strings.Contains(b, iso) {
		t.Errorf("after insert, no drive holds %s:\n%s", iso, b)
	}
	if err := m.EjectMedia(ctx, "cd"); err != nil {
		t.Fatal(err)
	}
	if b := infoBlock(t, m); strings.Contains(b, iso) || !notInserted.MatchString(b) {
		t.Errorf("after eject, a drive still holds %s:\n%s", iso, b)
	}
	// Insert again: the same drive takes the disc back.
	if err := m.InsertMedia(ctx, "cd"); err != nil {
		t.Fatal(err)
	}

	usbDevices := func() string {
		out, err := m.MonitorHMP(ctx, "info usb")
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	if u := usbDevices(); strings.Contains(u, "usb-storage") || strings.Contains(u, "QEMU USB MSD") {
		t.Errorf("the ejected USB stick is plugged in at start:\n%s", u)
	}
	if err := m.InsertMedia(ctx, "stick"); err != nil {
		t.Fatal(err)
	}
	if b := infoBlock(t, m); !strings.Contains(b, "media-stick.qcow2") {
		t.Errorf("after plugging the stick in, no drive holds its overlay:\n%s", b)
	}
	if err := m.InsertMedia(ctx, "stick"); err == nil || !strings.Contains(err.Error(), "already plugged in") {
		t.Errorf("second insert of the stick: %v", err)
	}
	if err := m.EjectMedia(ctx, "stick"); err != nil {
		t.Fatal(err)
	}
	if err := m.EjectMedia(ctx, "stick"); err == nil || !strings.Contains(err.Error(), "not plugged in") {
		t.Errorf("second eject of the stick: %v", err)
	}
	// The floppy starts in its drive and can be taken out.
	if b := infoBlock(t, m); !strings.Contains(b, floppy) {
		t.Errorf("the floppy is not in its drive:\n%s", b)
	}
	if err := m.EjectMedia(ctx, "fd"); err != nil {
		t.Fatal(err)
	}
	if b := infoBlock(t, m); strings.Contains(b, floppy) {
		t.Errorf("the floppy is still in after eject:\n%s", b)
	}
	if err := m.InsertMedia(ctx, "floppy"); err == nil || !strings.Contains(err.Error(), `no media named "floppy"`) || !strings.Contains(err.Error(), "cd, fd, stick") {
		t.Errorf("unknown media: %v", err)
	}

	// This guest has no agent: GuestExec says so when its time is up.
	if err := m.Resume(ctx); err != nil {
		t.Fatal(err)
	}
	actx, acancel := context.WithTimeout(ctx, 3*time.Second)
	defer acancel()
	_, err = m.GuestExec(actx, "/bin/true", nil)
	if err == nil || !strings.Contains(err.Error(), "did not answer within") || !strings.Contains(err.Error(), "qemu-guest-agent") {
		t.Errorf("GuestExec without an agent: %v", err)
	}
	overlays := m.overlays()
	if len(overlays) != 1 {
		t.Fatalf("overlays %v, want the stick's", overlays)
	}
	if err := m.Destroy(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(overlays[0]); !os.IsNotExist(err) {
		t.Errorf("the stick's overlay survives Destroy: %v", err)
	}
}

// TestHardwareRefused checks that hardware this libvirt and QEMU lack is
// refused at define time with a message naming what they offer.
func TestHardwareRefused(t *testing.T) {
	l := getLab(t)
	dir := t.TempDir()
	kernel := touch(t, dir, "vmlinuz")
	for _, tc := range []struct {
		name string
		mod  func(*lab.MachineSpec)
		want []string
	}{
		{"nvme", func(s *lab.MachineSpec) { s.DiskBus = "nvme" }, []string{"no nvme disk bus", "offers", "virtio"}},
		{"ide on uefi", func(s *lab.MachineSpec) { s.DiskBus, s.Firmware = "ide", "uefi" }, []string{"no ide disk bus", "use sata"}},
		{"unknown CPU model", func(s *lab.MachineSpec) { s.CPUModel = "Pentium9000" }, []string{`cpu model "Pentium9000"`, "Penryn"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			spec := lab.MachineSpec{Name: "refused-" + itoa(os.Getpid()), Kernel: kernel, RunDir: dir, Accel: "tcg"}
			tc.mod(&spec)
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			m, err := l.DefineMachine(ctx, spec, nil)
			if err == nil {
				m.Destroy(ctx)
				t.Fatal("accepted")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
		})
	}
}

// agentGuest is the built test guest (`firstboot image build testguest`,
// FIRSTBOOT_IMAGE_CACHE or the user's image cache, built there when missing),
// which runs qemu-ga on the agent port.
func agentGuest(t *testing.T) guest.Image {
	t.Helper()
	return testvm.TestGuest(t, testImageCache())
}

// bootAgentGuest boots the test guest with spec's hardware on a fresh lab
// network (the guest's first-boot traffic turned off) and returns it once its
// agent answers.
func bootAgentGuest(t *testing.T, l *Lab, spec lab.MachineSpec) *Machine {
	t.Helper()
	img := agentGuest(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	n, err := l.CreateNetwork(ctx, lab.NetworkSpec{Name: spec.Name})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := n.Close(context.Background()); err != nil {
			t.Errorf("close network: %v", err)
		}
	})
	spec.Kernel, spec.Initrd = img.KernelFor(spec.Firmware == "uefi", spec.TPM), img.Initrd
	spec.Cmdline = img.Cmdline + " fbguest.firstrun=0 fbguest.checkin=0"
	spec.MemoryMiB, spec.Accel = 256, "tcg"
	m, err := l.DefineMachine(ctx, spec, n)
	if err != nil {
		t.Fatal(err)
	}
	destroyOnCleanup(t, m)
	start := time.Now()
	if err := m.Resume(ctx); err != nil {
		t.Fatal(err)
	}
	if err := m.WaitAgent(ctx); err != nil {
		t.Fatal(err)
	}
	t.Logf("%s: guest agent answers %s after resume", m.Name(), time.Since(start).Round(100*time.Millisecond))
	return m
}

// sh runs a shell command in the guest and returns its result.
func sh(t *testing.T, m *Machine, script string) lab.ExecResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	r, err := m.GuestExec(ctx, "/bin/sh", []string{"-c", script})
	if err != nil {
		t.Fatalf("guest exec %q: %v", script, err)
	}
	return r
}

// TestGuestAgentDevices boots the test guest with a TPM, the Penryn model
// and an empty CD-ROM drive and checks, from inside the guest through
// qemu-guest-agent, that the guest sees each of them, and that a CD made by
// xorriso can be inserted, read and ejected while it runs.
func TestGuestAgentDevices(t *testing.T) {
	l := getLab(t)
	dir := t.TempDir()
	hello := randomText(t)
	iso := makeISO(t, dir, "cd", map[string]string{"hello.txt": hello})
	hot := filepath.Join(dir, "hot.img")
	if out, err := exec.Command("qemu-img", "create", "-q", "-f", "raw", hot, "8M").CombinedOutput(); err != nil {
		t.Fatalf("qemu-img: %v %s", err, out)
	}
	m := bootAgentGuest(t, l, lab.MachineSpec{
		Name: "agent-" + itoa(os.Getpid()), RunDir: dir,
		TPM: true, CPUModel: "Penryn",
		Media: []lab.Media{
			{Name: "cd", Kind: lab.MediaCDROM, Path: iso, Ejected: true},
			{Name: "hot", Kind: lab.MediaDisk, Path: hot, Ejected: true},
		},
	})

	t.Run("exit status and output", func(t *testing.T) {
		r := sh(t, m, "echo out; echo err >&2; exit 7")
		if r.ExitCode != 7 || string(r.Stdout) != "out\n" || string(r.Stderr) != "err\n" || r.Signal != 0 {
			t.Errorf("result %+v (stdout %q, stderr %q)", r, r.Stdout, r.Stderr)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if _, err := m.GuestExec(ctx, "/no/such/program", nil); err == nil || !strings.Contains(err.Error(), "/no/such/program") {
			t.Errorf("missing program: %v", err)
		}
	})
	t.Run("tpm", func(t *testing.T) {
		r := sh(t, m, "cat /sys/class/tpm/tpm0/tpm_version_major")
		if r.ExitCode != 0 || strings.TrimSpace(string(r.Stdout)) != "2" {
			t.Errorf("tpm_version_major: exit %d, %q %q", r.ExitCode, r.Stdout, r.Stderr)
		}
	})
	t.Run("cpu model", func(t *testing.T) {
		r := sh(t, m, "grep -m1 '^model name' /proc/cpuinfo")
		if !strings.Contains(string(r.Stdout), "Penryn") {
			t.Errorf("/proc/cpuinfo model name %q, want QEMU's Penryn", r.Stdout)
		}
	})
	t.Run("cd insert and eject", func(t *testing.T) {
		const mount = "mkdir -p /mnt/cd; mount -t iso9660 -o ro /dev/sr0 /mnt/cd"
		if r := sh(t, m, mount); r.ExitCode == 0 {
			t.Fatalf("the empty drive mounted: %q", r.Stdout)
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := m.InsertMedia(ctx, "cd"); err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		r := sh(t, m, "for i in 1 2 3 4 5 6 7 8 9 10; do "+mount+" && exec cat /mnt/cd/hello.txt; sleep 0.5; done; exit 1")
		if r.ExitCode != 0 || string(r.Stdout) != hello {
			t.Fatalf("reading the CD: exit %d, %q, stderr %q", r.ExitCode, r.Stdout, r.Stderr)
		}
		t.Logf("CD readable %s after insert", time.Since(start).Round(10*time.Millisecond))
		// Ejected while mounted (Linux locks the tray of a mounted CD): the
		// eject is forced, like pulling the disc out.
		if err := m.EjectMedia(ctx, "cd"); err != nil {
			t.Fatal(err)
		}
		sh(t, m, "umount /mnt/cd")
		if r := sh(t, m, mount); r.ExitCode == 0 {
			t.Errorf("the CD still mounts after eject")
		}
	})
	t.Run("virtio disk plugged in and pulled", func(t *testing.T) {
		const waitFor = "for i in $(seq 20); do [ %s -e /sys/block/vda ] && exit 0; sleep 0.5; done; ls /sys/block; exit 1"
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if r := sh(t, m, "ls /sys/block"); strings.Contains(string(r.Stdout), "vda") {
			t.Fatalf("the unplugged disk is there at boot: %q", r.Stdout)
		}
		if err := m.InsertMedia(ctx, "hot"); err != nil {
			t.Fatal(err)
		}
		if r := sh(t, m, fmt.Sprintf(waitFor, "")); r.ExitCode != 0 {
			t.Fatalf("the plugged-in disk did not appear as vda: %q", r.Stdout)
		}
		if err := m.EjectMedia(ctx, "hot"); err != nil {
			t.Fatal(err)
		}
		if r := sh(t, m, fmt.Sprintf(waitFor, "!")); r.ExitCode != 0 {
			t.Errorf("the pulled disk is still there: %q", r.Stdout)
		}
	})
}

// TestGuestDiskBus attaches a disk on each bus the test guest's kernel has a
// driver for and checks the guest sees it as the bus's device (vda for
// virtio, sda behind the bus's own controller driver otherwise).
func TestGuestDiskBus(t *testing.T) {
	l := getLab(t)
	for _, tc := range []struct {
		bus, dev, driver string
	}{
		{"virtio", "vda", "/sys/bus/virtio/drivers/virtio_blk"},
		{"sata", "sda", "/sys/bus/pci/drivers/ahci"},
		{"ide", "sda", "/sys/bus/pci/drivers/ata_piix"},
		{"scsi", "sda", "/sys/bus/virtio/drivers/virtio_scsi"},
	} {
		t.Run(tc.bus, func(t *testing.T) {
			t.Parallel() // two TCG guests boot as fast as one on 2 cores
			dir := t.TempDir()
			disk := filepath.Join(dir, "data.img")
			if out, err := exec.Command("qemu-img", "create", "-q", "-f", "raw", disk, "16M").CombinedOutput(); err != nil {
				t.Fatalf("qemu-img: %v %s", err, out)
			}
			m := bootAgentGuest(t, l, lab.MachineSpec{
				Name: "bus-" + tc.bus + "-" + itoa(os.Getpid()), RunDir: dir, DiskBus: tc.bus,
				Media: []lab.Media{{Name: "data", Kind: lab.MediaDisk, Path: disk}},
			})
			// The disk appears once its driver has probed it; wait briefly.
			r := sh(t, m, "for i in 1 2 3 4 5 6 7 8 9 10; do [ -e /sys/block/"+tc.dev+" ] && break; sleep 0.5; done; "+
				"ls /sys/block; cat /sys/block/"+tc.dev+"/size; ls "+tc.driver)
			out := string(r.Stdout)
			if r.ExitCode != 0 {
				t.Fatalf("exit %d: %s %s", r.ExitCode, out, r.Stderr)
			}
			lines := strings.Fields(out)
			// 16 MiB in 512-byte sectors.
			if !slices.Contains(lines, tc.dev) || !slices.Contains(lines, "32768") {
				t.Errorf("guest block devices/size: %q, want %s of 32768 sectors", out, tc.dev)
			}
			bound := false
			for _, f := range lines {
				bound = bound || strings.HasPrefix(f, "0000:") || strings.HasPrefix(f, "virtio")
			}
			if !bound {
				t.Errorf("no device bound to %s: %q", tc.driver, out)
			}
		})
	}
}

// TestBootISOEject takes an installer ISO out of a (paused) machine and puts
// it back, by its media name lab.BootISOMedia.
func TestBootISOEject(t *testing.T) {
	l := getLab(t)
	dir := t.TempDir()
	iso := makeISO(t, dir, "installer", map[string]string{"setup.txt": randomText(t)})
	m := defineTestMachine(t, l, lab.MachineSpec{Name: "iso-" + itoa(os.Getpid()), ISO: iso, RunDir: dir, Accel: "tcg"})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if b := infoBlock(t, m); !strings.Contains(b, iso) {
		t.Fatalf("the boot ISO is not in its drive:\n%s", b)
	}
	if err := m.EjectMedia(ctx, lab.BootISOMedia); err != nil {
		t.Fatal(err)
	}
	if b := infoBlock(t, m); strings.Contains(b, iso) {
		t.Errorf("the boot ISO is still in after eject:\n%s", b)
	}
	if err := m.InsertMedia(ctx, lab.BootISOMedia); err != nil {
		t.Fatal(err)
	}
	if b := infoBlock(t, m); !strings.Contains(b, iso) {
		t.Errorf("the boot ISO did not come back:\n%s", b)
	}
}

// TestVideoModels takes a screenshot (QEMU's screendump) of a machine with
// each video model; with none there is no screen and the error says so.
func TestVideoModels(t *testing.T) {
	l := getLab(t)
	dir := t.TempDir()
	g := needGuest(t, dir)
	for _, video := range []string{"vga", "virtio", "qxl", "none"} {
		t.Run(video, func(t *testing.T) {
			m := defineTestMachine(t, l, lab.MachineSpec{Name: "video-" + video + "-" + itoa(os.Getpid()), Kernel: g.Kernel, Initrd: g.Initrd,
				Cmdline: g.Cmdline, RunDir: t.TempDir(), Accel: "tcg", Video: video})
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			qtree, err := m.MonitorHMP(ctx, "info qtree")
			if err != nil {
				t.Fatal(err)
			}
			qemuDev := map[string]string{"vga": "dev: VGA", "virtio": "dev: virtio-vga", "qxl": "dev: qxl-vga"}[video]
			if qemuDev != "" && !strings.Contains(qtree, qemuDev) {
				t.Errorf("info qtree lacks %q", qemuDev)
			}
			shot := filepath.Join(t.TempDir(), "screen.png")
			err = m.Screenshot(ctx, shot)
			if video == "none" {
				if err == nil || !strings.Contains(err.Error(), "no screen") {
					t.Errorf("screenshot without video: %v", err)
				}
				for _, d := range []string{"dev: VGA", "dev: virtio-vga", "dev: qxl-vga"} {
					if strings.Contains(qtree, d) {
						t.Errorf("video none has %s", d)
					}
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if b, _ := os.ReadFile(shot); !strings.HasPrefix(string(b), "\x89PNG\r\n\x1a\n") {
				t.Error("the screenshot is not a PNG")
			}
		})
	}
}
