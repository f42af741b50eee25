package guest

import (
	"bytes"
	"debug/elf"
	"fmt"
	"io/fs"
	"path/filepath"
	"slices"
	"strings"
)

// DefaultModules are loaded first, one by one, before the network comes
// up (Debian builds all of them as modules, =m in config-6.1.0-*-amd64):
// button and evdev, through which the agent sees the ACPI power button as a
// KEY_POWER input event (first, so a press is heard as early as possible),
// then the virtio PCI transport and virtio-net. The transport must be named:
// virtio_net has no symbol dependency on it, it only binds to devices the
// transport registers. Dependencies are found from each module's own
// .modinfo "depends=" field, because Debian's package ships no modules.dep.
var DefaultModules = []string{"button", "evdev", "virtio_pci", "virtio_net"}

// DefaultDeviceModules are loaded after DefaultModules, in the background
// while the network comes up, so they do not delay DHCP (under TCG they
// take a second or two): virtio_console for the virtio-serial ports
// (qemu-ga's org.qemu.guest_agent.0), then what a lab machine's disks and
// media can sit on: virtio_blk, virtio_scsi, ata_piix (IDE on the i440fx
// "pc" machine), ahci (SATA, q35), nvme, the USB host controllers QEMU
// offers (xHCI, EHCI, UHCI) with usb_storage; sr_mod (CD-ROM, pulls in
// cdrom), sd_mod (SCSI, SATA and USB disks), isofs and vfat to mount ISO
// and FAT media, and last floppy, whose probe of an absent controller is
// the slowest.
//
// The TPM drivers need no module: Debian builds tpm_tis, tpm_crb and
// tpm_tis_core in (CONFIG_TCG_TIS=y, CONFIG_TCG_CRB=y,
// CONFIG_TCG_TIS_CORE=y), so /dev/tpm0 appears whenever the machine has a
// TPM (see Image.KernelFor for the kernel to boot then).
var DefaultDeviceModules = []string{"virtio_console", "virtio_blk", "virtio_scsi", "ata_piix", "ahci", "nvme",
	"xhci_pci", "ehci_pci", "uhci_hcd", "usb_storage", "sr_mod", "sd_mod", "isofs", "vfat", "floppy"}

// modName normalises a module name the way the kernel does (dashes and
// underscores are the same).
func modName(s string) string { return strings.ReplaceAll(s, "-", "_") }

// ModInfo reads a module's name and its "depends=" list from the ELF
// .modinfo section (NUL-separated key=value strings).
func ModInfo(ko []byte) (name string, depends []string, err error) {
	f, err := elf.NewFile(bytes.NewReader(ko))
	if err != nil {
		return "", nil, fmt.Errorf("module: not ELF: %w", err)
	}
	defer f.Close()
	sec := f.Section(".modinfo")
	if sec == nil {
		return "", nil, fmt.Errorf("module: no .modinfo section")
	}
	data, err := sec.Data()
	if err != nil {
		return "", nil, fmt.Errorf("module: reading .modinfo: %w", err)
	}
	for _, kv := range bytes.Split(data, []byte{0}) {
		k, v, ok := strings.Cut(string(kv), "=")
		if !ok {
			continue
		}
		switch k {
		case "name":
			name = modName(v)
		case "depends":
			for _, d := range strings.Split(v, ",") {
				if d = strings.TrimSpace(d); d != "" {
					depends = append(depends, modName(d))
				}
			}
		}
	}
	return name, depends, nil
}

// ModuleOrder returns the modules to load, dependencies first, so that
// loading them one by one never hits an unresolved symbol. deps maps each
// module to the modules it depends on; builtin names are skipped. The order is
// deterministic: a depth-first post-order visiting dependencies as listed.
func ModuleOrder(targets []string, deps func(name string) ([]string, error), builtin map[string]bool) ([]string, error) {
	const (
		unvisited = iota
		visiting
		done
	)
	state := map[string]int{}
	var order []string
	var visit func(name string, path []string) error
	visit = func(name string, path []string) error {
		name = modName(name)
		if builtin[name] {
			return nil
		}
		switch state[name] {
		case done:
			return nil
		case visiting:
			return fmt.Errorf("module dependency cycle: %s -> %s", strings.Join(path, " -> "), name)
		}
		state[name] = visiting
		ds, err := deps(name)
		if err != nil {
			return fmt.Errorf("module %s (needed by %s): %w", name, strings.Join(path, " -> "), err)
		}
		for _, d := range ds {
			if err := visit(d, append(slices.Clone(path), name)); err != nil {
				return err
			}
		}
		state[name] = done
		order = append(order, name)
		return nil
	}
	for _, t := range targets {
		if err := visit(t, nil); err != nil {
			return nil, err
		}
	}
	return order, nil
}

// moduleTree indexes the .ko files of an extracted kernel package.
type moduleTree struct {
	root    string            // lib/modules/<version>
	paths   map[string]string // module name -> path relative to root
	builtin map[string]bool
	read    func(path string) ([]byte, error)
}

func newModuleTree(fsys fs.FS, root string) (*moduleTree, error) {
	t := &moduleTree{root: root, paths: map[string]string{}, builtin: map[string]bool{},
		read: func(p string) ([]byte, error) { return fs.ReadFile(fsys, p) }}
	err := fs.WalkDir(fsys, root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() && strings.HasSuffix(p, ".ko") {
			t.paths[modName(strings.TrimSuffix(filepath.Base(p), ".ko"))] = p
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("indexing modules under %s: %w", root, err)
	}
	if b, err := fs.ReadFile(fsys, root+"/modules.builtin"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if line = strings.TrimSpace(line); line != "" {
				t.builtin[modName(strings.TrimSuffix(filepath.Base(line), ".ko"))] = true
			}
		}
	}
	return t, nil
}

func (t *moduleTree) deps(name string) ([]string, error) {
	p, ok := t.paths[name]
	if !ok {
		return nil, fmt.Errorf("no %s.ko in the kernel package (is it built in or renamed?)", name)
	}
	b, err := t.read(p)
	if err != nil {
		return nil, err
	}
	_, d, err := ModInfo(b)
	return d, err
}
