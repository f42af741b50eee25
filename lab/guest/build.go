package guest

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"debug/elf"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/firstboot/firstboot/internal/fsutil"
)

// formatVersion changes whenever the image layout or the builder's output
// changes, so an old cached image is rebuilt rather than reused.
const formatVersion = 5

// DefaultCmdline is the kernel command line. quiet and loglevel=3 keep kernel
// chatter from interleaving with the agent's console markers; panic=-1
// reboots at once on a panic instead of hanging the run.
const DefaultCmdline = "console=ttyS0 quiet loglevel=3 panic=-1"

const (
	imageSubdir  = "testguest"
	manifestName = "manifest.json"
	// File names inside CacheDir/testguest.
	fileVmlinux = "vmlinux"
	fileBzImage = "vmlinuz"
	fileInitrd  = "initrd.img"
	fileCmdline = "cmdline"
	// Paths inside the guest.
	guestModuleList = "etc/firstboot-guest/modules"
	guestDeviceList = "etc/firstboot-guest/modules.devices"
	guestImageInfo  = "etc/firstboot-guest/image.json"
)

// BuildConfig says where and from what the test guest is built.
type BuildConfig struct {
	// CacheDir is the image cache; the image goes to CacheDir/testguest.
	CacheDir string
	// AgentPath is the static firstboot-guest binary, installed as /init.
	AgentPath string
	// Logger receives progress; nil discards.
	Logger *slog.Logger
	// Modules to load at boot before the network (their dependencies are
	// added); nil means DefaultModules.
	Modules []string
	// DeviceModules are loaded next, in the background; nil means
	// DefaultDeviceModules, empty means none.
	DeviceModules []string
	// Cmdline replaces DefaultCmdline when set.
	Cmdline string
	// Force rebuilds even when the cached image matches the inputs.
	Force bool
}

// Image is a built test guest, ready for direct kernel boot.
type Image struct {
	Dir string
	// Kernel is the kernel to boot: the uncompressed vmlinux with its PVH
	// entry (faster under TCG) when it could be extracted, else the bzImage.
	Kernel string
	// BzImage is Debian's compressed kernel, kept for hypervisors that cannot
	// boot a PVH ELF.
	BzImage string
	Initrd  string
	Cmdline string
	// KernelSHA256 and InitrdSHA256 are the hex SHA-256 of the files; SHA256
	// identifies the whole image (kernel, initrd and command line).
	KernelSHA256 string
	InitrdSHA256 string
	SHA256       string
	Manifest     Manifest
}

// KernelFor returns the kernel to boot on a machine with UEFI firmware or
// not, with an emulated TPM or not. UEFI firmware starts a kernel through
// its EFI stub, which the bzImage has and the PVH vmlinux does not. With a TPM (tpm-tis or tpm-crb, QEMU 7.2, SeaBIOS), QEMU's
// PVH loader puts the initrd over part of the firmware's ACPI tables, which
// the TPM makes larger (its event log goes in the same high memory), so
// the kernel boots with ACPI disabled: no TPM, no power button, no ACPI
// power-off. The bzImage, loaded by QEMU's linuxboot ROM, is not affected.
// Measured: q35 and pc, with and without CD-ROM and virtio-serial; only the
// TPM matters.
func (img Image) KernelFor(uefi, tpm bool) string {
	if (uefi || tpm) && img.BzImage != "" {
		return img.BzImage
	}
	return img.Kernel
}

// Manifest is CacheDir/testguest/manifest.json: what the image was built from.
type Manifest struct {
	FormatVersion int       `json:"format_version"`
	BuiltAt       time.Time `json:"built_at"`
	Inputs        Inputs    `json:"inputs"`
	KernelRelease string    `json:"kernel_release"`
	KernelFormat  string    `json:"kernel_format"` // "vmlinux-pvh" or "bzImage"
	Modules       []string  `json:"modules"`       // load order
	// DeviceModules are loaded after Modules, in the background (load
	// order; modules already in Modules are not repeated).
	DeviceModules []string            `json:"device_modules"`
	Cmdline       string              `json:"cmdline"`
	Files         map[string]FileInfo `json:"files"`
	SHA256        string              `json:"sha256"`
	// GuestAgent is qemu-ga with its libraries and loader, as installed in
	// the initrd (paths, source packages, SHA-256s).
	GuestAgent GuestAgentInfo `json:"guest_agent"`
}

// Inputs decide whether a cached image can be reused.
type Inputs struct {
	KernelPackage  debPackage `json:"kernel_package"`
	BusyboxPackage debPackage `json:"busybox_package"`
	// AgentPackages are GuestAgentPackages as fetched: qemu-guest-agent
	// first, then its libraries' packages.
	AgentPackages []debPackage `json:"guest_agent_packages"`
	AgentSHA256   string       `json:"agent_sha256"`
	Modules       []string     `json:"requested_modules"`
	DeviceModules []string     `json:"requested_device_modules"`
	Cmdline       string       `json:"cmdline"`
	FormatVersion int          `json:"format_version"`
}

// FileInfo describes one output file.
type FileInfo struct {
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256"`
}

// ErrNotBuilt is returned (wrapped) by Load when no image is in the cache.
var ErrNotBuilt = errors.New("test guest image not built: run `firstboot image build testguest`")

func (c *BuildConfig) defaults() {
	if c.Logger == nil {
		c.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if c.Modules == nil {
		c.Modules = DefaultModules
	}
	if c.DeviceModules == nil {
		c.DeviceModules = DefaultDeviceModules
	}
	if c.Cmdline == "" {
		c.Cmdline = DefaultCmdline
	}
}

// Build builds the test guest into CacheDir/testguest, or reuses the image
// there when its inputs (package versions, agent, modules, command line) are
// unchanged. Concurrent builds into one cache serialise on a lock file.
func Build(ctx context.Context, cfg BuildConfig) (Image, error) {
	cfg.defaults()
	if cfg.CacheDir == "" {
		return Image{}, errors.New("guest build: no cache directory given")
	}
	if cfg.AgentPath == "" {
		return Image{}, errors.New("guest build: no agent binary given (build cmd/firstboot-guest with CGO_ENABLED=0)")
	}
	agent, err := os.ReadFile(cfg.AgentPath)
	if err != nil {
		return Image{}, fmt.Errorf("guest build: reading the agent: %w (build it with `make build` or pass --agent)", err)
	}
	if err := checkStaticELF(agent); err != nil {
		return Image{}, fmt.Errorf("guest build: agent %s: %w", cfg.AgentPath, err)
	}
	dir := filepath.Join(cfg.CacheDir, imageSubdir)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return Image{}, fmt.Errorf("guest build: %w", err)
	}
	unlock, err := fsutil.LockDir(ctx, dir)
	if err != nil {
		return Image{}, fmt.Errorf("guest build: %w", err)
	}
	defer unlock()

	in, err := resolveInputs(ctx, cfg, dir, agent)
	if err != nil {
		// Without apt (offline, broken lists) an image built from this same
		// agent, module list and command line is still the right one to use.
		if img, lerr := Load(cfg.CacheDir); lerr == nil && !cfg.Force && localInputsEqual(img.Manifest.Inputs, sha256Hex(agent), cfg) && verify(img) == nil {
			cfg.Logger.Warn("cannot check the Debian packages for updates; reusing the cached test guest", "err", err)
			return img, nil
		}
		return Image{}, err
	}
	if !cfg.Force {
		if img, err := Load(cfg.CacheDir); err == nil && inputsEqual(img.Manifest.Inputs, in) {
			if err := verify(img); err == nil {
				cfg.Logger.Info("test guest image is up to date", "dir", dir)
				return img, nil
			}
		}
	}
	return build(ctx, cfg, dir, in, agent)
}

// resolveInputs asks apt for the current package versions and makes sure
// the .debs are in the cache.
func resolveInputs(ctx context.Context, cfg BuildConfig, dir string, agent []byte) (Inputs, error) {
	a := newApt(cfg.Logger)
	kpkg, err := a.kernelPackage(ctx)
	if err != nil {
		return Inputs{}, fmt.Errorf("guest build: %w", err)
	}
	cands, err := a.candidates(ctx, append([]string{kpkg, "busybox-static"}, GuestAgentPackages...)...)
	if err != nil {
		return Inputs{}, fmt.Errorf("guest build: %w", err)
	}
	debDir := filepath.Join(dir, "debs")
	kdeb, err := a.fetch(ctx, debDir, kpkg, cands[kpkg][0], cands[kpkg][1])
	if err != nil {
		return Inputs{}, fmt.Errorf("guest build: %w", err)
	}
	bdeb, err := a.fetch(ctx, debDir, "busybox-static", cands["busybox-static"][0], cands["busybox-static"][1])
	if err != nil {
		return Inputs{}, fmt.Errorf("guest build: %w", err)
	}
	var agentDebs []debPackage
	for _, p := range GuestAgentPackages {
		d, err := a.fetch(ctx, debDir, p, cands[p][0], cands[p][1])
		if err != nil {
			return Inputs{}, fmt.Errorf("guest build: %w", err)
		}
		agentDebs = append(agentDebs, d)
	}
	return Inputs{
		KernelPackage: kdeb, BusyboxPackage: bdeb, AgentPackages: agentDebs,
		AgentSHA256: sha256Hex(agent), Modules: slices.Clone(cfg.Modules), DeviceModules: slices.Clone(cfg.DeviceModules),
		Cmdline: cfg.Cmdline, FormatVersion: formatVersion,
	}, nil
}

func localInputsEqual(in Inputs, agentSHA string, cfg BuildConfig) bool {
	return in.AgentSHA256 == agentSHA && slices.Equal(in.Modules, cfg.Modules) && slices.Equal(in.DeviceModules, cfg.DeviceModules) &&
		in.Cmdline == cfg.Cmdline && in.FormatVersion == formatVersion
}

func inputsEqual(a, b Inputs) bool {
	ja, _ := json.Marshal(a)
	jb, _ := json.Marshal(b)
	return bytes.Equal(ja, jb)
}

func build(ctx context.Context, cfg BuildConfig, dir string, in Inputs, agent []byte) (Image, error) {
	start := time.Now()
	// Work directories left by a killed build are stale: the lock is ours.
	if old, _ := filepath.Glob(filepath.Join(dir, "work-*")); len(old) > 0 {
		for _, o := range old {
			_ = os.RemoveAll(o)
		}
	}
	work, err := os.MkdirTemp(dir, "work-")
	if err != nil {
		return Image{}, fmt.Errorf("guest build: %w", err)
	}
	defer os.RemoveAll(work)
	kroot, broot := filepath.Join(work, "kernel"), filepath.Join(work, "busybox")
	if err := extract(ctx, in.KernelPackage.File, kroot); err != nil {
		return Image{}, fmt.Errorf("guest build: %w", err)
	}
	if err := extract(ctx, in.BusyboxPackage.File, broot); err != nil {
		return Image{}, fmt.Errorf("guest build: %w", err)
	}
	var agentRoots []pkgRoot
	for i, p := range in.AgentPackages {
		r := pkgRoot{name: p.Name, dir: filepath.Join(work, fmt.Sprintf("qga-%d", i))}
		if err := extract(ctx, p.File, r.dir); err != nil {
			return Image{}, fmt.Errorf("guest build: %w", err)
		}
		agentRoots = append(agentRoots, r)
	}
	agentFiles, interp, err := guestAgentClosure(agentRoots)
	if err != nil {
		return Image{}, fmt.Errorf("guest build: %w", err)
	}
	qgaInfo := GuestAgentInfo{Interpreter: interp, Files: agentFiles}
	if len(in.AgentPackages) > 0 {
		qgaInfo.Package, qgaInfo.Version = in.AgentPackages[0].Name, in.AgentPackages[0].Version
	}
	release, err := kernelRelease(kroot)
	if err != nil {
		return Image{}, fmt.Errorf("guest build: %w", err)
	}
	bz, err := os.ReadFile(filepath.Join(kroot, "boot", "vmlinuz-"+release))
	if err != nil {
		return Image{}, fmt.Errorf("guest build: reading the kernel: %w", err)
	}

	modRoot := "lib/modules/" + release
	tree, err := newModuleTree(os.DirFS(kroot), modRoot)
	if err != nil {
		return Image{}, fmt.Errorf("guest build: %w", err)
	}
	order, err := ModuleOrder(in.Modules, tree.deps, tree.builtin)
	if err != nil {
		return Image{}, fmt.Errorf("guest build: %w", err)
	}
	// The depth-first order of boot+device modules starts with exactly the
	// boot order, so the rest is what the device list adds.
	all, err := ModuleOrder(append(slices.Clone(in.Modules), in.DeviceModules...), tree.deps, tree.builtin)
	if err != nil {
		return Image{}, fmt.Errorf("guest build: %w", err)
	}
	if !slices.Equal(all[:len(order)], order) {
		return Image{}, fmt.Errorf("guest build: module order %v does not start with %v", all, order)
	}
	devOrder := all[len(order):]
	cfg.Logger.Info("module load order", "modules", strings.Join(order, " "), "device_modules", strings.Join(devOrder, " "))

	applets, err := busyboxApplets(ctx, filepath.Join(broot, "bin", "busybox"))
	if err != nil {
		return Image{}, fmt.Errorf("guest build: %w", err)
	}
	busybox, err := os.ReadFile(filepath.Join(broot, "bin", "busybox"))
	if err != nil {
		return Image{}, fmt.Errorf("guest build: %w", err)
	}

	var modFiles []modFile
	for _, m := range all {
		b, err := os.ReadFile(filepath.Join(kroot, tree.paths[m]))
		if err != nil {
			return Image{}, fmt.Errorf("guest build: %w", err)
		}
		modFiles = append(modFiles, modFile{name: m, data: b})
	}
	info, _ := json.MarshalIndent(map[string]string{
		"kernel_release":  release,
		"kernel_package":  in.KernelPackage.Name + " " + in.KernelPackage.Version,
		"busybox_package": in.BusyboxPackage.Name + " " + in.BusyboxPackage.Version,
		"guest_agent":     qgaInfo.Package + " " + qgaInfo.Version,
	}, "", "  ")
	initrd, err := buildInitramfs(initramfsSpec{
		agent: agent, busybox: busybox, applets: applets,
		release: release, modules: modFiles, deviceModules: len(order), info: info,
		qga: agentFiles, interp: interp,
	})
	if err != nil {
		return Image{}, fmt.Errorf("guest build: %w", err)
	}

	kernelFormat := "vmlinux-pvh"
	vmlinux, err := ExtractVmlinux(bz)
	if err != nil {
		cfg.Logger.Warn("cannot extract the uncompressed kernel; the image boots the bzImage (slower under TCG)", "err", err)
		kernelFormat = "bzImage"
	}

	files := map[string][]byte{fileBzImage: bz, fileInitrd: initrd, fileCmdline: []byte(in.Cmdline + "\n")}
	if vmlinux != nil {
		files[fileVmlinux] = vmlinux
	} else {
		_ = os.Remove(filepath.Join(dir, fileVmlinux))
	}
	m := Manifest{
		FormatVersion: formatVersion, BuiltAt: time.Now().UTC().Truncate(time.Second),
		Inputs: in, KernelRelease: release, KernelFormat: kernelFormat,
		Modules: order, DeviceModules: devOrder, Cmdline: in.Cmdline, Files: map[string]FileInfo{},
		GuestAgent: qgaInfo,
	}
	names := make([]string, 0, len(files))
	for n := range files {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		if err := fsutil.WriteFileAtomic(filepath.Join(dir, n), files[n], 0o644); err != nil {
			return Image{}, fmt.Errorf("guest build: %w", err)
		}
		m.Files[n] = FileInfo{Size: int64(len(files[n])), SHA256: sha256Hex(files[n])}
	}
	m.SHA256 = imageID(m)
	mj, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return Image{}, err
	}
	if err := fsutil.WriteFileAtomic(filepath.Join(dir, manifestName), append(mj, '\n'), 0o644); err != nil {
		return Image{}, fmt.Errorf("guest build: %w", err)
	}
	cfg.Logger.Info("built test guest image", "dir", dir, "kernel", kernelFormat,
		"initrd_bytes", len(initrd), "took", time.Since(start).Round(time.Millisecond))
	return Load(filepath.Dir(dir))
}

// imageID hashes what the hypervisor is given: kernel, initrd, command line.
func imageID(m Manifest) string {
	k := fileBzImage
	if m.KernelFormat == "vmlinux-pvh" {
		k = fileVmlinux
	}
	h := sha256.New()
	fmt.Fprintf(h, "kernel %s\ninitrd %s\ncmdline %s\n", m.Files[k].SHA256, m.Files[fileInitrd].SHA256, m.Cmdline)
	return hex.EncodeToString(h.Sum(nil))
}

// Load returns the image built in cacheDir without rebuilding or rehashing it.
func Load(cacheDir string) (Image, error) {
	dir := filepath.Join(cacheDir, imageSubdir)
	b, err := os.ReadFile(filepath.Join(dir, manifestName))
	if errors.Is(err, os.ErrNotExist) {
		return Image{}, fmt.Errorf("%w (no %s)", ErrNotBuilt, filepath.Join(dir, manifestName))
	}
	if err != nil {
		return Image{}, fmt.Errorf("loading test guest image: %w", err)
	}
	var m Manifest
	if err := json.Unmarshal(b, &m); err != nil {
		return Image{}, fmt.Errorf("%w (unreadable manifest %s: %v)", ErrNotBuilt, filepath.Join(dir, manifestName), err)
	}
	if m.FormatVersion != formatVersion {
		return Image{}, fmt.Errorf("%w (image format %d, this firstboot needs %d)", ErrNotBuilt, m.FormatVersion, formatVersion)
	}
	img := Image{
		Dir: dir, BzImage: filepath.Join(dir, fileBzImage), Initrd: filepath.Join(dir, fileInitrd),
		Cmdline: m.Cmdline, InitrdSHA256: m.Files[fileInitrd].SHA256, SHA256: m.SHA256, Manifest: m,
	}
	if m.KernelFormat == "vmlinux-pvh" {
		img.Kernel = filepath.Join(dir, fileVmlinux)
		img.KernelSHA256 = m.Files[fileVmlinux].SHA256
	} else {
		img.Kernel = img.BzImage
		img.KernelSHA256 = m.Files[fileBzImage].SHA256
	}
	for name, fi := range m.Files {
		st, err := os.Stat(filepath.Join(dir, name))
		if err != nil || st.Size() != fi.Size {
			return Image{}, fmt.Errorf("%w (%s is missing or has changed)", ErrNotBuilt, filepath.Join(dir, name))
		}
	}
	return img, nil
}

// verify rehashes the image files against the manifest.
func verify(img Image) error {
	for name, fi := range img.Manifest.Files {
		sum, _, err := fsutil.FileSHA256(filepath.Join(img.Dir, name))
		if err != nil {
			return err
		}
		if sum != fi.SHA256 {
			return fmt.Errorf("%s: sha256 %s, manifest says %s", name, sum, fi.SHA256)
		}
	}
	return nil
}

// guestShutdown is what qemu-ga's guest-shutdown runs ("shutdown -P|-H|-r
// +0 MESSAGE", libvirt's shutdown and reboot in agent mode). The guest has
// no init to ask, so the script acts at once through busybox, which syncs
// first.
const guestShutdown = "sbin/shutdown"

var shutdownScript = []byte(`#!/bin/sh
case "$1" in
-r) exec /bin/busybox reboot -f ;;
-H) exec /bin/busybox halt -f ;;
*) exec /bin/busybox poweroff -f ;;
esac
`)

type modFile struct {
	name string
	data []byte
}

type initramfsSpec struct {
	agent, busybox []byte
	applets        []string // paths relative to /, e.g. "sbin/ifconfig"
	release        string
	modules        []modFile // in load order
	deviceModules  int       // modules[deviceModules:] go to the device list
	info           []byte
	qga            []GuestAgentFile // qemu-ga, its libraries and loader
	interp         string           // qemu-ga's PT_INTERP, made a link to the loader
}

// buildInitramfs writes the newc archive gzip-compressed. Its bytes depend
// only on the inputs (no timestamps), so equal inputs give an equal image.
// Stored (uncompressed) gzip blocks would save about half a second of
// inflate under TCG, but OVMF cannot load the 25 MB archive into a 256 MiB
// UEFI machine (it faults before the kernel starts); compressed it is 11 MB.
func buildInitramfs(s initramfsSpec) ([]byte, error) {
	var buf bytes.Buffer
	zw, err := gzip.NewWriterLevel(&buf, gzip.DefaultCompression)
	if err != nil {
		return nil, err
	}
	cw := NewCPIOWriter(zw)
	dirs := []string{"bin", "dev", "etc", "etc/firstboot-guest", "lib", "lib/modules",
		"lib/modules/" + s.release, guestLibDir, "lib64", "mnt", "proc", "root", "run", "sbin", "sys", "tmp",
		"usr", "usr/bin", "usr/sbin", "var"}
	for _, d := range dirs {
		perm := os.FileMode(0o755)
		if d == "tmp" {
			perm = 0o777
		}
		if err := cw.Dir(d, perm); err != nil {
			return nil, err
		}
	}
	if err := cw.CharDev("dev/console", 0o600, 5, 1); err != nil {
		return nil, err
	}
	if err := cw.CharDev("dev/null", 0o666, 1, 3); err != nil {
		return nil, err
	}
	if err := cw.File("init", 0o755, s.agent); err != nil {
		return nil, err
	}
	if err := cw.File("bin/busybox", 0o755, s.busybox); err != nil {
		return nil, err
	}
	if err := cw.File(guestShutdown, 0o755, shutdownScript); err != nil {
		return nil, err
	}
	for _, a := range s.applets {
		if a == "bin/busybox" || a == guestShutdown {
			continue
		}
		if err := cw.Symlink(a, "/bin/busybox"); err != nil {
			return nil, err
		}
	}
	// qemu-ga expects /var/run (its default state directory) and finds its
	// libraries in Debian's multiarch directory, which Debian's loader
	// searches without an ld.so.cache.
	if err := cw.Symlink("var/run", "/run"); err != nil {
		return nil, err
	}
	for _, f := range s.qga {
		if err := cw.File(f.Path, 0o755, f.data); err != nil {
			return nil, err
		}
	}
	if s.interp != "" {
		if err := cw.Symlink(s.interp, "/"+guestLibDir+"/"+path.Base(s.interp)); err != nil {
			return nil, err
		}
	}
	var list, devList strings.Builder
	for i, m := range s.modules {
		p := "lib/modules/" + s.release + "/" + m.name + ".ko"
		if err := cw.File(p, 0o644, m.data); err != nil {
			return nil, err
		}
		if i < s.deviceModules {
			list.WriteString("/" + p + "\n")
		} else {
			devList.WriteString("/" + p + "\n")
		}
	}
	etc := []struct {
		name string
		data []byte
	}{
		{guestModuleList, []byte(list.String())},
		{guestDeviceList, []byte(devList.String())},
		{guestImageInfo, append(s.info, '\n')},
		{"etc/hosts", []byte("127.0.0.1 localhost\n::1 localhost\n")},
		{"etc/hostname", []byte("firstboot-testguest\n")},
		{"etc/passwd", []byte("root:x:0:0:root:/root:/bin/sh\n")},
		{"etc/group", []byte("root:x:0:\n")},
		// guest-get-osinfo reads os-release.
		{"etc/os-release", []byte("NAME=\"firstboot test guest\"\nID=firstboot-testguest\nPRETTY_NAME=\"firstboot test guest\"\nVERSION_ID=\"" + fmt.Sprint(formatVersion) + "\"\n")},
	}
	for _, f := range etc {
		if err := cw.File(f.name, 0o644, f.data); err != nil {
			return nil, err
		}
	}
	if err := cw.Close(); err != nil {
		return nil, err
	}
	if err := zw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// busyboxApplets asks the packaged busybox for its applet paths. Applets
// outside the directories the archive creates are skipped.
func busyboxApplets(ctx context.Context, busybox string) ([]string, error) {
	out, err := exec.CommandContext(ctx, busybox, "--list-full").Output()
	if err != nil {
		return nil, fmt.Errorf("listing busybox applets: %w", err)
	}
	var applets []string
	for _, l := range strings.Split(string(out), "\n") {
		l = strings.TrimSpace(l)
		switch filepath.Dir(l) {
		case "bin", "sbin", "usr/bin", "usr/sbin":
			applets = append(applets, l)
		}
	}
	if len(applets) == 0 {
		return nil, errors.New("listing busybox applets: busybox --list-full printed nothing")
	}
	sort.Strings(applets)
	return slices.Compact(applets), nil
}

// kernelRelease finds the one kernel release in an extracted kernel package.
func kernelRelease(root string) (string, error) {
	ents, err := os.ReadDir(filepath.Join(root, "lib", "modules"))
	if err != nil {
		return "", fmt.Errorf("finding the kernel release: %w", err)
	}
	var rel []string
	for _, e := range ents {
		if e.IsDir() {
			rel = append(rel, e.Name())
		}
	}
	if len(rel) != 1 {
		return "", fmt.Errorf("finding the kernel release: want one directory under lib/modules, found %v", rel)
	}
	return rel[0], nil
}

// checkStaticELF rejects an agent that would not run in the initramfs,
// which has no dynamic loader.
func checkStaticELF(b []byte) error {
	f, err := elf.NewFile(bytes.NewReader(b))
	if err != nil {
		return fmt.Errorf("not an ELF executable: %w", err)
	}
	defer f.Close()
	if f.Machine != elf.EM_X86_64 || f.Type != elf.ET_EXEC && f.Type != elf.ET_DYN {
		return fmt.Errorf("not an x86-64 executable (%v %v)", f.Machine, f.Type)
	}
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return errors.New("dynamically linked; build it with CGO_ENABLED=0")
		}
	}
	return nil
}

func sha256Hex(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}
