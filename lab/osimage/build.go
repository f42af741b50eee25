package osimage

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/firstboot/firstboot/internal/fsutil"
	"github.com/firstboot/firstboot/lab"
	"github.com/firstboot/firstboot/lab/guest"
)

// formatVersion changes whenever the build changes what it produces; a cached
// image of another format is rebuilt.
const formatVersion = 3

// Files in CacheDir/<release>/.
const (
	FileDisk     = "disk.qcow2"
	FileVmlinuz  = "vmlinuz"    // Debian's bzImage
	FileVmlinux  = "vmlinux"    // the same kernel uncompressed (PVH entry), faster under TCG
	FileInitrd   = "initrd.img" // Debian's initramfs (initramfs-tools)
	FileManifest = "manifest.json"
	FileBuildLog = "build.log"
)

// Cmdline boots the root file system by label, so it does not matter which
// bus the disk is on; console=ttyS0 puts the kernel log and a login prompt on
// the serial console (systemd starts serial-getty@ttyS0 for it).
const Cmdline = "root=LABEL=" + RootLabel + " rw console=ttyS0"

// DefaultDiskSize is the disk's virtual size; the qcow2 holds only what is used.
const DefaultDiskSize = 4 << 30

// BuildConfig says what to build and where.
type BuildConfig struct {
	// CacheDir is the image cache; the image goes to CacheDir/<Release>.
	CacheDir string
	// Release is a builtin image name: "debian-12" or "debian-13".
	Release string
	// Mirror is the Debian archive debootstrap downloads from; empty means
	// the one the build host's apt uses (HostMirror("/etc/apt")). The guest's
	// own apt sources always name deb.debian.org, like a stock install.
	Mirror string
	// DiskSize is the virtual disk size in bytes (default DefaultDiskSize).
	DiskSize int64
	// Force rebuilds even when a verified image is cached.
	Force  bool
	Logger *slog.Logger
}

// Image is a built Debian image.
type Image struct {
	Dir      string
	Disk     string
	Kernel   string // vmlinux when extractable, else vmlinuz
	Initrd   string
	Cmdline  string
	Manifest Manifest
}

// MachineSpec fills the boot fields of a lab machine: direct kernel boot of
// the image's kernel and initrd with its disk as the virtio root disk. A
// machine with a TPM boots the bzImage (see KernelFor).
func (img Image) MachineSpec(spec lab.MachineSpec) lab.MachineSpec {
	spec.Kernel, spec.Initrd, spec.Cmdline, spec.Disk = img.KernelFor(spec.Firmware == "uefi", spec.TPM), img.Initrd, img.Cmdline, img.Disk
	return spec
}

// KernelFor returns the kernel to boot with UEFI firmware or not, with an
// emulated TPM or not: the bzImage for UEFI (its EFI stub) and for a TPM
// (QEMU's PVH boot of the vmlinux then leaves the kernel without ACPI: no
// TPM, no power button; see guest.Image.KernelFor).
func (img Image) KernelFor(uefi, tpm bool) string {
	if uefi || tpm {
		return filepath.Join(img.Dir, FileVmlinuz)
	}
	return img.Kernel
}

// Manifest is CacheDir/<release>/manifest.json.
type Manifest struct {
	FormatVersion int       `json:"format_version"`
	Release       string    `json:"release"`
	Suite         string    `json:"suite"`
	Mirror        string    `json:"mirror"`
	BuiltAt       time.Time `json:"built_at"`
	BuildSeconds  float64   `json:"build_seconds"`
	KernelRelease string    `json:"kernel_release"`
	// Kernel is the file to boot (FileVmlinux or FileVmlinuz).
	Kernel   string `json:"kernel"`
	Cmdline  string `json:"cmdline"`
	DiskSize int64  `json:"disk_virtual_size"`
	// RootfsBytes is the installed size of the root file system.
	RootfsBytes int64  `json:"rootfs_bytes"`
	User        string `json:"user"`
	// Desktop are the desktop packages asked for (debian-12-desktop); the
	// installed versions are in Packages.
	Desktop  []string            `json:"desktop,omitempty"`
	Packages []Package           `json:"packages"`
	Files    map[string]FileInfo `json:"files"`
}

// Package is one installed Debian package.
type Package struct {
	Name    string `json:"name"`
	Version string `json:"version"`
	Arch    string `json:"arch"`
}

// FileInfo describes one output file.
type FileInfo struct {
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256"`
}

// ErrNotBuilt is returned (wrapped) by Load when the image is not in the cache.
var ErrNotBuilt = errors.New("Debian image not built")

// Build builds the release into CacheDir/<release>, or returns the cached
// image when one is there and its files match the manifest. Builds into one
// cache directory serialise on a lock file. It needs root (debootstrap,
// chroot) and the tools debootstrap, mkfs.ext4 (e2fsprogs ≥ 1.43 for -d) and
// qemu-img.
func Build(ctx context.Context, cfg BuildConfig) (Image, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if cfg.DiskSize == 0 {
		cfg.DiskSize = DefaultDiskSize
	}
	if cfg.Mirror == "" {
		cfg.Mirror = HostMirror("/etc/apt")
	}
	rel, err := LookupRelease(cfg.Release)
	if err != nil {
		return Image{}, fmt.Errorf("image build: %w", err)
	}
	if cfg.CacheDir == "" {
		return Image{}, errors.New("image build: no image cache directory given")
	}
	dir := filepath.Join(cfg.CacheDir, rel.Name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return Image{}, fmt.Errorf("image build: %w", err)
	}
	unlock, err := fsutil.LockDir(ctx, dir)
	if err != nil {
		return Image{}, fmt.Errorf("image build: %w", err)
	}
	defer unlock()
	if !cfg.Force {
		if img, err := Load(cfg.CacheDir, rel.Name); err == nil {
			verr := verify(img)
			if verr == nil {
				cfg.Logger.Info("Debian image is cached", "dir", dir)
				return img, nil
			}
			cfg.Logger.Warn("cached Debian image does not verify; rebuilding", "dir", dir, "err", verr)
		}
	}
	if os.Geteuid() != 0 {
		return Image{}, errors.New("image build: building a Debian image needs root (debootstrap and chroot)")
	}
	for _, tool := range []string{"debootstrap", "mkfs.ext4", "qemu-img", "chroot", "dpkg-query"} {
		if _, err := exec.LookPath(tool); err != nil {
			return Image{}, fmt.Errorf("image build: %s not found: install it (apt-get install debootstrap e2fsprogs qemu-utils)", tool)
		}
	}
	return build(ctx, cfg, rel, dir)
}

func build(ctx context.Context, cfg BuildConfig, rel Release, dir string) (img Image, err error) {
	start := time.Now()
	work, err := os.MkdirTemp(dir, "work-")
	if err != nil {
		return Image{}, fmt.Errorf("image build: %w", err)
	}
	root := filepath.Join(work, "rootfs")
	defer func() {
		// A failed debootstrap can leave /proc or /sys mounted inside the
		// root; removing through a mount would delete host files.
		if uerr := unmountUnder(work); uerr != nil {
			err = errors.Join(err, fmt.Errorf("image build: %w; left %s in place", uerr, work))
			return
		}
		if rerr := os.RemoveAll(work); rerr != nil {
			err = errors.Join(err, fmt.Errorf("image build: removing %s: %w", work, rerr))
		}
	}()
	logf, err := os.Create(filepath.Join(dir, FileBuildLog))
	if err != nil {
		return Image{}, fmt.Errorf("image build: %w", err)
	}
	defer logf.Close()
	run := func(what string, name string, args ...string) error {
		fmt.Fprintf(logf, "\n$ %s %s\n", name, strings.Join(args, " "))
		cmd := exec.CommandContext(ctx, name, args...)
		var tail tailBuffer
		cmd.Stdout = io.MultiWriter(logf, &tail)
		cmd.Stderr = cmd.Stdout
		// Debian's maintainer scripts must not ask questions or read the
		// host's locale settings.
		cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive", "LC_ALL=C.UTF-8", "LANG=C.UTF-8")
		t0 := time.Now()
		if err := cmd.Run(); err != nil {
			return fmt.Errorf("image build: %s: %w\n%s(full log: %s)", what, err, tail.String(), logf.Name())
		}
		cfg.Logger.Info("image build", "step", what, "took", time.Since(t0).Round(time.Millisecond))
		return nil
	}

	// Downloaded .debs are kept across builds so --force and CI rebuilds do
	// not download them again.
	debs, err := filepath.Abs(filepath.Join(cfg.CacheDir, "debootstrap-cache", rel.Suite))
	if err != nil {
		return Image{}, fmt.Errorf("image build: %w", err)
	}
	if err := os.MkdirAll(debs, 0o755); err != nil {
		return Image{}, fmt.Errorf("image build: %w", err)
	}
	cfg.Logger.Info("debootstrap", "suite", rel.Suite, "mirror", cfg.Mirror)
	if err := run("debootstrap "+rel.Suite, "debootstrap", "--arch=amd64", "--components=main", "--cache-dir="+debs,
		"--include="+strings.Join(rel.Packages, ","), rel.Suite, root, cfg.Mirror); err != nil {
		return Image{}, err
	}
	if err := unmountUnder(root); err != nil {
		return Image{}, fmt.Errorf("image build: after debootstrap: %w", err)
	}
	if len(rel.Desktop) > 0 {
		if err := installDesktop(ctx, run, root, rel, debs); err != nil {
			return Image{}, err
		}
	}
	if err := writeGuestFiles(root, rel); err != nil {
		return Image{}, fmt.Errorf("image build: %w", err)
	}
	if err := run("creating the user", "chroot", root, "useradd", "--create-home", "--shell", "/bin/bash",
		"--comment", "firstboot", UserName); err != nil {
		return Image{}, err
	}
	if err := runInput(ctx, logf, strings.NewReader("root:"+RootPassword+"\n"+UserName+":"+UserPassword+"\n"),
		"chroot", root, "chpasswd"); err != nil {
		return Image{}, fmt.Errorf("image build: setting passwords: %w", err)
	}
	kernelRel, err := kernelRelease(root)
	if err != nil {
		return Image{}, fmt.Errorf("image build: %w", err)
	}
	// The initramfs was made by the kernel's postinst before our resume
	// setting existed; make it again so it does not wait for a resume device.
	if err := run("update-initramfs", "chroot", root, "update-initramfs", "-u", "-k", kernelRel); err != nil {
		return Image{}, err
	}
	if err := unmountUnder(root); err != nil {
		return Image{}, fmt.Errorf("image build: after update-initramfs: %w", err)
	}
	pkgs, err := installedPackages(ctx, root)
	if err != nil {
		return Image{}, fmt.Errorf("image build: %w", err)
	}

	// Outputs go to the work directory first and are renamed into place only
	// when everything worked, manifest last, so a half-built image never loads.
	bz, err := os.ReadFile(filepath.Join(root, "boot", "vmlinuz-"+kernelRel))
	if err != nil {
		return Image{}, fmt.Errorf("image build: reading the kernel: %w", err)
	}
	outputs := map[string]string{}
	put := func(name string, data []byte) error {
		p := filepath.Join(work, name)
		outputs[name] = p
		return os.WriteFile(p, data, 0o644)
	}
	if err := put(FileVmlinuz, bz); err != nil {
		return Image{}, fmt.Errorf("image build: %w", err)
	}
	kernelFile := FileVmlinuz
	if vmlinux, xerr := guest.ExtractVmlinux(bz); xerr == nil {
		if err := put(FileVmlinux, vmlinux); err != nil {
			return Image{}, fmt.Errorf("image build: %w", err)
		}
		kernelFile = FileVmlinux
	} else {
		cfg.Logger.Warn("no uncompressed kernel; booting the bzImage (slower under TCG)", "err", xerr)
	}
	initrd, err := os.ReadFile(filepath.Join(root, "boot", "initrd.img-"+kernelRel))
	if err != nil {
		return Image{}, fmt.Errorf("image build: reading the initrd: %w", err)
	}
	if err := put(FileInitrd, initrd); err != nil {
		return Image{}, fmt.Errorf("image build: %w", err)
	}
	rootBytes, err := treeSize(root)
	if err != nil {
		return Image{}, fmt.Errorf("image build: %w", err)
	}
	raw := filepath.Join(work, "disk.raw")
	if err := run("mkfs.ext4 -d", "mkfs.ext4", "-q", "-F", "-L", RootLabel, "-d", root, raw,
		fmt.Sprintf("%dk", cfg.DiskSize/1024)); err != nil {
		return Image{}, err
	}
	outputs[FileDisk] = filepath.Join(work, FileDisk)
	if err := run("qemu-img convert", "qemu-img", "convert", "-f", "raw", "-O", "qcow2", raw, outputs[FileDisk]); err != nil {
		return Image{}, err
	}
	_ = os.Remove(raw)

	m := Manifest{
		FormatVersion: formatVersion, Release: rel.Name, Suite: rel.Suite, Mirror: cfg.Mirror,
		BuiltAt: time.Now().UTC().Truncate(time.Second), KernelRelease: kernelRel, Kernel: kernelFile,
		Cmdline: Cmdline, DiskSize: cfg.DiskSize, RootfsBytes: rootBytes, User: UserName, Desktop: rel.Desktop,
		Packages: pkgs, Files: map[string]FileInfo{},
	}
	// Stale outputs of an earlier build (a vmlinux this build lacks) must go.
	for _, name := range []string{FileManifest, FileDisk, FileVmlinuz, FileVmlinux, FileInitrd} {
		if err := os.Remove(filepath.Join(dir, name)); err != nil && !os.IsNotExist(err) {
			return Image{}, fmt.Errorf("image build: %w", err)
		}
	}
	names := make([]string, 0, len(outputs))
	for name := range outputs {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		fi, err := describe(outputs[name])
		if err != nil {
			return Image{}, fmt.Errorf("image build: %w", err)
		}
		m.Files[name] = fi
		if err := os.Rename(outputs[name], filepath.Join(dir, name)); err != nil {
			return Image{}, fmt.Errorf("image build: %w", err)
		}
	}
	m.BuildSeconds = time.Since(start).Round(time.Second).Seconds()
	b, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return Image{}, err
	}
	if err := fsutil.WriteFileAtomic(filepath.Join(dir, FileManifest), append(b, '\n'), 0o644); err != nil {
		return Image{}, fmt.Errorf("image build: writing the manifest: %w", err)
	}
	cfg.Logger.Info("Debian image built", "release", rel.Name, "dir", dir, "took", time.Since(start).Round(time.Second))
	return Load(cfg.CacheDir, rel.Name)
}

// Load returns the cached image of a release, without verifying its hashes.
func Load(cacheDir, release string) (Image, error) {
	dir := filepath.Join(cacheDir, release)
	b, err := os.ReadFile(filepath.Join(dir, FileManifest))
	if errors.Is(err, os.ErrNotExist) {
		return Image{}, fmt.Errorf("%s: %w: run `firstboot image build %s`", dir, ErrNotBuilt, release)
	}
	if err != nil {
		return Image{}, fmt.Errorf("loading the %s image: %w", release, err)
	}
	var m Manifest
	if err := json.Unmarshal(b, &m); err != nil {
		return Image{}, fmt.Errorf("loading the %s image: manifest: %w (rebuild with `firstboot image build --force %s`)", release, err, release)
	}
	if m.FormatVersion != formatVersion || m.Release != release {
		return Image{}, fmt.Errorf("%s: %w: the cached image has format %d for %q, want %d for %q: run `firstboot image build --force %s`",
			dir, ErrNotBuilt, m.FormatVersion, m.Release, formatVersion, release, release)
	}
	img := Image{
		Dir: dir, Disk: filepath.Join(dir, FileDisk), Kernel: filepath.Join(dir, m.Kernel),
		Initrd: filepath.Join(dir, FileInitrd), Cmdline: m.Cmdline, Manifest: m,
	}
	for _, p := range []string{img.Disk, img.Kernel, img.Initrd} {
		if _, err := os.Stat(p); err != nil {
			return Image{}, fmt.Errorf("%s: %w: %v: run `firstboot image build --force %s`", dir, ErrNotBuilt, err, release)
		}
	}
	return img, nil
}

// verify checks every file against the manifest's size and SHA-256.
func verify(img Image) error {
	for name, want := range img.Manifest.Files {
		got, err := describe(filepath.Join(img.Dir, name))
		if err != nil {
			return err
		}
		if got != want {
			return fmt.Errorf("%s: size %d sha256 %s, manifest says %d %s", name, got.Size, got.SHA256, want.Size, want.SHA256)
		}
	}
	return nil
}

// kernelRelease finds the one kernel installed in root's /boot.
func kernelRelease(root string) (string, error) {
	m, err := filepath.Glob(filepath.Join(root, "boot", "vmlinuz-*"))
	if err != nil {
		return "", err
	}
	if len(m) != 1 {
		return "", fmt.Errorf("want one kernel in %s/boot, found %d", root, len(m))
	}
	return strings.TrimPrefix(filepath.Base(m[0]), "vmlinuz-"), nil
}

// installedPackages lists root's packages with the host's dpkg-query.
func installedPackages(ctx context.Context, root string) ([]Package, error) {
	out, err := exec.CommandContext(ctx, "dpkg-query", "--admindir="+filepath.Join(root, "var", "lib", "dpkg"),
		"-W", "-f", "${db:Status-Abbrev}\t${Package}\t${Version}\t${Architecture}\n").Output()
	if err != nil {
		return nil, fmt.Errorf("listing installed packages: %w", err)
	}
	return parsePackages(string(out)), nil
}

// parsePackages keeps the installed ("ii") lines of dpkg-query's output, sorted by name.
func parsePackages(s string) []Package {
	var out []Package
	for _, line := range strings.Split(s, "\n") {
		f := strings.Split(line, "\t")
		if len(f) != 4 || strings.TrimSpace(f[0]) != "ii" {
			continue
		}
		out = append(out, Package{Name: f[1], Version: f[2], Arch: f[3]})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// treeSize sums the sizes of the regular files under root.
func treeSize(root string) (int64, error) {
	var n int64
	err := filepath.WalkDir(root, func(_ string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.Type().IsRegular() {
			fi, err := d.Info()
			if err != nil {
				return err
			}
			n += fi.Size()
		}
		return nil
	})
	return n, err
}

func runInput(ctx context.Context, log io.Writer, in io.Reader, name string, args ...string) error {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Stdin = in
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	_, _ = log.Write(out.Bytes())
	if err != nil {
		return fmt.Errorf("%s: %w: %s", name, err, strings.TrimSpace(out.String()))
	}
	return nil
}

// tailBuffer keeps the last 2 KiB written, for error messages.
type tailBuffer struct{ b []byte }

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.b = append(t.b, p...)
	if len(t.b) > 2048 {
		t.b = t.b[len(t.b)-2048:]
	}
	return len(p), nil
}

func (t *tailBuffer) String() string { return string(t.b) }

// describe is the size and SHA-256 a manifest records for a file.
func describe(path string) (FileInfo, error) {
	sum, n, err := fsutil.FileSHA256(path)
	if err != nil {
		return FileInfo{}, err
	}
	return FileInfo{Size: n, SHA256: sum}, nil
}
