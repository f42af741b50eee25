package libvirt

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"libvirt.org/go/libvirtxml"

	"github.com/firstboot/firstboot/lab"
)

// dummyOSK is a made-up 64-character key (with a comma, which QEMU's option
// syntax must see doubled); never a real one.
const dummyOSK = "firstboot-test-key,not-a-real-osk-0123456789abcdefghijklmnopqrst"

func touch(t *testing.T, dir, name string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(name), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func domainOf(t *testing.T, spec lab.MachineSpec, overlay string) (libvirtxml.Domain, string) {
	t.Helper()
	spec, err := normalize(spec)
	if err != nil {
		t.Fatal(err)
	}
	x, err := DomainXML(spec, "net", "tcg", overlay)
	if err != nil {
		t.Fatal(err)
	}
	var d libvirtxml.Domain
	if err := d.Unmarshal(x); err != nil {
		t.Fatalf("%v\n%s", err, x)
	}
	return d, x
}

// diskRow is a drive as "device bus dev source" for comparisons.
func diskRows(d libvirtxml.Domain) []string {
	var rows []string
	for _, dk := range d.Devices.Disks {
		src := "-"
		if dk.Source != nil && dk.Source.File != nil && dk.Source.File.File != "" {
			src = filepath.Base(dk.Source.File.File)
		}
		ro := ""
		if dk.ReadOnly != nil {
			ro = " ro"
		}
		rows = append(rows, dk.Device+" "+dk.Target.Bus+" "+dk.Target.Dev+" "+src+ro)
	}
	return rows
}

func TestDomainXMLDrives(t *testing.T) {
	dir := t.TempDir()
	iso, disk := touch(t, dir, "install.iso"), touch(t, dir, "base.img")
	cd, fl, usb, extra := touch(t, dir, "drivers.iso"), touch(t, dir, "unattend.img"), touch(t, dir, "stick.img"), touch(t, dir, "data.img")
	media := []lab.Media{
		{Name: "drivers", Kind: lab.MediaCDROM, Path: cd},
		{Name: "later", Kind: lab.MediaCDROM, Path: cd, Ejected: true},
		{Name: "unattend", Kind: lab.MediaFloppy, Path: fl},
		{Name: "data", Kind: lab.MediaDisk, Path: extra},
		{Name: "stick", Kind: lab.MediaUSB, Path: usb},
		{Name: "stick2", Kind: lab.MediaUSB, Path: usb, Ejected: true},
	}
	overlay := filepath.Join(dir, "firstboot-m.qcow2")
	mo := func(name string) string { return "firstboot-m-media-" + name + ".qcow2" }
	for _, tc := range []struct {
		bus, firmware string
		iso           bool
		want          []string
	}{
		{"virtio", "bios", true, []string{
			"cdrom sata sda install.iso ro", "disk virtio vda firstboot-m.qcow2",
			"cdrom sata sdb drivers.iso ro", "cdrom sata sdc - ro", "floppy fdc fda unattend.img ro",
			"disk virtio vdb " + mo("data"), "disk usb sdd " + mo("stick")}},
		{"sata", "uefi", false, []string{
			"disk sata sda firstboot-m.qcow2",
			"cdrom sata sdb drivers.iso ro", "cdrom sata sdc - ro", "floppy fdc fda unattend.img ro",
			"disk sata sdd " + mo("data"), "disk usb sde " + mo("stick")}},
		// An IDE channel pair holds four drives: ISO, disk, two CD-ROMs; the
		// disk media would be the fifth.
		{"ide", "bios", true, nil},
	} {
		t.Run(tc.bus+"-"+tc.firmware, func(t *testing.T) {
			spec := lab.MachineSpec{Name: "m", Disk: disk, RunDir: dir, DiskBus: tc.bus, Firmware: "bios", Media: media}
			if tc.iso {
				spec.ISO = iso
			}
			if tc.bus == "ide" {
				n, err := normalize(spec)
				if err != nil {
					t.Fatal(err)
				}
				if _, err := DomainXML(n, "net", "tcg", overlay); err == nil || !strings.Contains(err.Error(), `media "data"`) || !strings.Contains(err.Error(), "at most 4") {
					t.Fatalf("five IDE drives: err = %v", err)
				}
				return
			}
			if tc.firmware == "uefi" && ovmfInstalled() {
				spec.Firmware = "uefi"
			}
			d, x := domainOf(t, spec, overlay)
			got := diskRows(d)
			if strings.Join(got, "\n") != strings.Join(tc.want, "\n") {
				t.Errorf("drives:\n%s\nwant:\n%s\n\n%s", strings.Join(got, "\n"), strings.Join(tc.want, "\n"), x)
			}
			// The same spec gives the same layout (targets are stable).
			if _, x2 := domainOf(t, spec, overlay); x2 != x {
				t.Error("layout differs between two calls")
			}
			var boots []string
			for _, b := range d.OS.BootDevices {
				boots = append(boots, b.Dev)
			}
			wantBoot := "hd"
			if tc.iso {
				wantBoot = "cdrom hd"
			}
			if strings.Join(boots, " ") != wantBoot {
				t.Errorf("boot order %v, want %s", boots, wantBoot)
			}
		})
	}
}

func TestDomainXMLHardware(t *testing.T) {
	dir := t.TempDir()
	kernel := touch(t, dir, "vmlinuz")
	base := lab.MachineSpec{Name: "m", Kernel: kernel, RunDir: dir}

	d, x := domainOf(t, base, "")
	// Defaults: VGA, no TPM, no CPU model, no QEMU arguments, the agent port.
	if len(d.Devices.Videos) != 1 || d.Devices.Videos[0].Model.Type != "vga" {
		t.Errorf("default video %+v", d.Devices.Videos)
	}
	// A screen comes with a USB tablet: pointer events are absolute.
	if len(d.Devices.Inputs) != 1 || d.Devices.Inputs[0].Type != "tablet" || d.Devices.Inputs[0].Bus != "usb" {
		t.Errorf("inputs %+v, want one USB tablet", d.Devices.Inputs)
	}
	if len(d.Devices.TPMs) != 0 || d.CPU != nil || d.QEMUCommandline != nil {
		t.Errorf("default machine has TPM %v, CPU %v, QEMU args %v", d.Devices.TPMs, d.CPU, d.QEMUCommandline)
	}
	if len(d.Devices.Channels) != 1 || d.Devices.Channels[0].Target.VirtIO == nil || d.Devices.Channels[0].Target.VirtIO.Name != "org.qemu.guest_agent.0" ||
		d.Devices.Channels[0].Source.UNIX == nil {
		t.Errorf("guest agent channel missing or wrong:\n%s", x)
	}

	spec := base
	spec.TPM, spec.CPUModel, spec.AppleSMCOSK, spec.Video = true, "Penryn", dummyOSK, "virtio"
	spec.CPUFeatures = []string{"+sse4.2", "-vme"}
	d, x = domainOf(t, spec, "")
	if len(d.Devices.TPMs) != 1 || d.Devices.TPMs[0].Model != "tpm-tis" || d.Devices.TPMs[0].Backend.Emulator == nil || d.Devices.TPMs[0].Backend.Emulator.Version != "2.0" {
		t.Errorf("BIOS TPM: %s", x)
	}
	if d.CPU == nil || d.CPU.Mode != "custom" || d.CPU.Check != "none" || d.CPU.Model.Value != "Penryn" || d.CPU.Model.Fallback != "allow" {
		t.Errorf("CPU: %+v", d.CPU)
	}
	// Under TCG added features are optional (libvirt refuses a required
	// feature TCG lacks, such as invtsc); under KVM they are required.
	if f := d.CPU.Features; len(f) != 2 || f[0] != (libvirtxml.DomainCPUFeature{Policy: "optional", Name: "sse4.2"}) || f[1] != (libvirtxml.DomainCPUFeature{Policy: "disable", Name: "vme"}) {
		t.Errorf("TCG CPU features: %+v", f)
	}
	if n, err := normalize(spec); err == nil {
		var dk libvirtxml.Domain
		x, _ := DomainXML(n, "net", "kvm", "")
		if err := dk.Unmarshal(x); err != nil || len(dk.CPU.Features) != 2 || dk.CPU.Features[0].Policy != "require" {
			t.Errorf("KVM CPU features: %v %+v", err, dk.CPU)
		}
	}
	if d.Devices.Videos[0].Model.Type != "virtio" {
		t.Errorf("video %+v", d.Devices.Videos)
	}
	wantSMC := "isa-applesmc,osk=" + strings.Replace(dummyOSK, ",", ",,", 1)
	if d.QEMUCommandline == nil || len(d.QEMUCommandline.Args) != 2 || d.QEMUCommandline.Args[0].Value != "-device" || d.QEMUCommandline.Args[1].Value != wantSMC {
		t.Errorf("Apple SMC args: %+v", d.QEMUCommandline)
	}
	if !strings.Contains(x, `xmlns:qemu="http://libvirt.org/schemas/domain/qemu/1.0"`) && !strings.Contains(x, `http://libvirt.org/schemas/domain/qemu/1.0`) {
		t.Errorf("QEMU namespace missing:\n%s", x)
	}
	if ovmfInstalled() {
		spec.Firmware = "uefi"
		d, x = domainOf(t, spec, "")
		if len(d.Devices.TPMs) != 1 || d.Devices.TPMs[0].Model != "tpm-crb" || d.OS.Type.Machine != "q35" {
			t.Errorf("UEFI TPM: %s", x)
		}
	}
	spec = base
	spec.Video = "none"
	if d, _ = domainOf(t, spec, ""); d.Devices.Videos[0].Model.Type != "none" || len(d.Devices.Inputs) != 0 {
		t.Errorf("video none: %+v, inputs %+v (no screen, no tablet)", d.Devices.Videos, d.Devices.Inputs)
	}
	spec = base
	spec.Display = true
	d, x = domainOf(t, spec, "")
	if len(d.Devices.Graphics) != 1 || d.Devices.Graphics[0].VNC == nil || len(d.Devices.Graphics[0].VNC.Listeners) != 1 ||
		d.Devices.Graphics[0].VNC.Listeners[0].Socket == nil || d.Devices.Graphics[0].VNC.Port != 0 {
		t.Errorf("display: want VNC on a socket libvirt names, no port: %s", x)
	}
	spec.Display = false
	spec.DiskBus = "scsi"
	spec.Disk = touch(t, dir, "disk.img")
	d, x = domainOf(t, spec, filepath.Join(dir, "o.qcow2"))
	if len(d.Devices.Controllers) != 1 || d.Devices.Controllers[0].Model != "virtio-scsi" || diskRows(d)[0] != "disk scsi sda o.qcow2" {
		t.Errorf("scsi: %s", x)
	}
}

func TestNormalizeHardwareErrors(t *testing.T) {
	dir := t.TempDir()
	k, img := touch(t, dir, "k"), touch(t, dir, "img")
	for _, tc := range []struct {
		name, want string
		mod        func(*lab.MachineSpec)
	}{
		{"bad bus", "disk bus", func(s *lab.MachineSpec) { s.DiskBus = "floppy" }},
		{"bad video", "video", func(s *lab.MachineSpec) { s.Video = "cirrus3d" }},
		{"display without screen", "needs a screen", func(s *lab.MachineSpec) { s.Video, s.Display = "none", true }},
		{"bad cpu name", "CPU model", func(s *lab.MachineSpec) { s.CPUModel = "Penryn,+avx" }},
		{"feature without model", "need a CPU model", func(s *lab.MachineSpec) { s.CPUFeatures = []string{"+sse4.2"} }},
		{"feature without sign", "+name", func(s *lab.MachineSpec) { s.CPUModel, s.CPUFeatures = "Penryn", []string{"sse4.2"} }},
		{"short osk", "64", func(s *lab.MachineSpec) { s.AppleSMCOSK = "short" }},
		{"osk newline", "printable", func(s *lab.MachineSpec) { s.AppleSMCOSK = dummyOSK[:63] + "\n" }},
		{"media twice", "named twice", func(s *lab.MachineSpec) {
			s.Media = []lab.Media{{Name: "a", Kind: "cdrom", Path: img}, {Name: "a", Kind: "disk", Path: img}}
		}},
		{"media bad name", "name", func(s *lab.MachineSpec) { s.Media = []lab.Media{{Name: "../x", Kind: "cdrom", Path: img}} }},
		{"media bad kind", "kind", func(s *lab.MachineSpec) { s.Media = []lab.Media{{Name: "a", Kind: "tape", Path: img}} }},
		{"media missing", "no such file", func(s *lab.MachineSpec) {
			s.Media = []lab.Media{{Name: "a", Kind: "cdrom", Path: filepath.Join(dir, "nope.iso")}}
		}},
		{"empty disk media", "no image path", func(s *lab.MachineSpec) { s.Media = []lab.Media{{Name: "a", Kind: "disk", Ejected: true}} }},
		{"three floppies", "two floppy", func(s *lab.MachineSpec) {
			s.Media = []lab.Media{{Name: "a", Kind: "floppy", Path: img}, {Name: "b", Kind: "floppy", Path: img}, {Name: "c", Kind: "floppy", Path: img}}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			spec := lab.MachineSpec{Name: "m", Kernel: k, RunDir: dir}
			tc.mod(&spec)
			_, err := normalize(spec)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want it to mention %q", err, tc.want)
			}
		})
	}
	// An ejected CD-ROM may start without an image: an empty drive.
	if _, err := normalize(lab.MachineSpec{Name: "m", Kernel: k, RunDir: dir, Media: []lab.Media{{Name: "a", Kind: "cdrom", Ejected: true}}}); err != nil {
		t.Errorf("empty CD-ROM drive: %v", err)
	}
}

func TestDriveLetters(t *testing.T) {
	for i, want := range map[int]string{0: "a", 1: "b", 25: "z", 26: "aa", 27: "ab", 51: "az", 52: "ba", 701: "zz", 702: "aaa"} {
		if got := driveLetters(i); got != want {
			t.Errorf("driveLetters(%d) = %q, want %q", i, got, want)
		}
	}
}
