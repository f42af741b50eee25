package osimage

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// policyRC is Debian's policy-rc.d convention: exit 101 tells invoke-rc.d
// that no service may start. Without it, installing lightdm in the build's
// chroot would start a display manager on the build host.
const policyRC = "#!/bin/sh\n# firstboot image build: no service starts in the build chroot\nexit 101\n"

// installDesktop installs the release's desktop packages with apt-get inside
// root, from the same mirror debootstrap used. The downloaded .debs go to
// debs (bind-mounted as apt's archive cache), so a rebuild downloads
// nothing again and the base packages debootstrap fetched are reused. /proc
// is mounted for the maintainer scripts and unmounted afterwards, with the
// cache.
func installDesktop(ctx context.Context, run func(what, name string, args ...string) error, root string, rel Release, debs string) (err error) {
	policy := filepath.Join(root, "usr/sbin/policy-rc.d")
	if err := os.WriteFile(policy, []byte(policyRC), 0o755); err != nil {
		return fmt.Errorf("image build: %w", err)
	}
	archives := filepath.Join(root, "var/cache/apt/archives")
	proc := filepath.Join(root, "proc")
	for _, d := range []string{archives, proc} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return fmt.Errorf("image build: %w", err)
		}
	}
	defer func() {
		if uerr := unmountUnder(proc); uerr != nil {
			err = fmt.Errorf("image build: after the desktop packages: %w (and %v)", uerr, err)
		}
		if uerr := unmountUnder(archives); uerr != nil {
			err = fmt.Errorf("image build: after the desktop packages: %w (and %v)", uerr, err)
		}
		if rerr := os.Remove(policy); rerr != nil && err == nil {
			err = fmt.Errorf("image build: %w", rerr)
		}
	}()
	if err := unix.Mount(debs, archives, "", unix.MS_BIND, ""); err != nil {
		return fmt.Errorf("image build: bind-mounting the package cache: %w", err)
	}
	if err := unix.Mount("proc", proc, "proc", 0, ""); err != nil {
		return fmt.Errorf("image build: mounting /proc in the build root: %w", err)
	}
	if err := run("apt-get update", "chroot", root, "apt-get", "update", "-q"); err != nil {
		return err
	}
	args := append([]string{root, "apt-get", "install", "-y", "-q", "--no-install-recommends",
		"-o", "Dpkg::Options::=--force-confdef", "-o", "Dpkg::Options::=--force-confold"}, rel.Desktop...)
	if err := run("apt-get install "+strings.Join(rel.Desktop, " "), "chroot", args...); err != nil {
		return err
	}
	// The package lists are the build's, not the guest's: a stock install
	// fetches its own on the first apt-get update, as the base image does.
	lists, err := filepath.Glob(filepath.Join(root, "var/lib/apt/lists/*_*"))
	if err != nil {
		return fmt.Errorf("image build: %w", err)
	}
	for _, l := range lists {
		if err := os.RemoveAll(l); err != nil {
			return fmt.Errorf("image build: %w", err)
		}
	}
	return nil
}
