package osimage

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// file is one file the build writes into the root file system.
type file struct {
	Path    string // absolute path inside the guest
	Content string
	Mode    os.FileMode
	// Symlink, when set, makes Path a symbolic link to it instead.
	Symlink string
}

// remove lists guest paths the build deletes: host state debootstrap copies
// in, and identity that a real install creates on its own first boot.
var remove = []string{
	"/etc/resolv.conf",         // the build host's resolver; dhclient/dhcpcd write the guest's
	"/var/lib/dbus/machine-id", // regenerated with /etc/machine-id
	"/etc/ssh/ssh_host_*",      // none without openssh-server; never bake host keys
	"/var/cache/apt/archives/*.deb",
	"/var/cache/apt/*.bin",
}

// guestFiles is the configuration a stock install of r would have, plus the
// lab's conveniences (serial console, eth0 naming), as files.
func guestFiles(r Release) []file {
	fs := []file{
		{Path: "/etc/hostname", Content: Hostname + "\n", Mode: 0o644},
		{Path: "/etc/hosts", Mode: 0o644, Content: "127.0.0.1\tlocalhost\n127.0.1.1\t" + Hostname + "\n\n" +
			"# The following lines are desirable for IPv6 capable hosts\n" +
			"::1     localhost ip6-localhost ip6-loopback\nff02::1 ip6-allnodes\nff02::2 ip6-allrouters\n"},
		{Path: "/etc/fstab", Mode: 0o644, Content: "# <file system> <mount point>   <type>  <options>       <dump>  <pass>\n" +
			"LABEL=" + RootLabel + " /               ext4    errors=remount-ro 0       1\n"},
		// An empty machine-id makes systemd generate one and treat the boot
		// as a first boot (ConditionFirstBoot), as on a fresh install.
		{Path: "/etc/machine-id", Content: "", Mode: 0o444},
		{Path: "/etc/resolv.conf", Content: "", Mode: 0o644},
		{Path: "/etc/network/interfaces", Mode: 0o644, Content: "# This file describes the network interfaces available on your system\n" +
			"# and how to activate them. For more information, see interfaces(5).\n\n" +
			"source /etc/network/interfaces.d/*\n\n" +
			"# The loopback network interface\nauto lo\niface lo inet loopback\n\n" +
			"# The primary network interface\nallow-hotplug eth0\niface eth0 inet dhcp\n"},
		// Classic kernel names (eth0) whatever the NIC model and PCI slot,
		// so the one interfaces stanza above always matches the first NIC.
		{Path: "/etc/systemd/network/99-default.link", Symlink: "/dev/null"},
		// Without swap there is nothing to resume from; saying so stops the
		// initramfs from waiting for a resume device.
		{Path: "/etc/initramfs-tools/conf.d/resume", Content: "RESUME=none\n", Mode: 0o644},
	}
	if r.DebSources {
		fs = append(fs,
			file{Path: "/etc/apt/sources.list.d/debian.sources", Mode: 0o644, Content: "Types: deb deb-src\n" +
				"URIs: http://deb.debian.org/debian\nSuites: " + r.Suite + " " + r.Suite + "-updates\n" +
				"Components: main non-free-firmware\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n\n" +
				"Types: deb deb-src\nURIs: http://security.debian.org/debian-security\nSuites: " + r.Suite + "-security\n" +
				"Components: main non-free-firmware\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n"},
			// The deb822 file replaces debootstrap's one-line file.
			file{Path: "/etc/apt/sources.list", Content: "", Mode: 0o644},
		)
	} else {
		fs = append(fs, file{Path: "/etc/apt/sources.list", Mode: 0o644, Content: "" +
			"deb http://deb.debian.org/debian/ " + r.Suite + " main non-free-firmware\n" +
			"deb-src http://deb.debian.org/debian/ " + r.Suite + " main non-free-firmware\n\n" +
			"deb http://security.debian.org/debian-security " + r.Suite + "-security main non-free-firmware\n" +
			"deb-src http://security.debian.org/debian-security " + r.Suite + "-security main non-free-firmware\n\n" +
			"# " + r.Suite + "-updates, to get updates before a point release is made;\n" +
			"deb http://deb.debian.org/debian/ " + r.Suite + "-updates main non-free-firmware\n" +
			"deb-src http://deb.debian.org/debian/ " + r.Suite + "-updates main non-free-firmware\n"})
	}
	return fs
}

// guestPath joins a guest path to root, refusing paths that would leave it.
func guestPath(root, p string) (string, error) {
	if !strings.HasPrefix(p, "/") || strings.Contains(p, "..") {
		return "", fmt.Errorf("guest path %q must be absolute and without ..", p)
	}
	return filepath.Join(root, p), nil
}

// writeGuestFiles removes the host state and writes the configuration. It
// never follows a symlink out of root: every target is replaced, not opened.
func writeGuestFiles(root string, r Release) error {
	for _, pat := range remove {
		p, err := guestPath(root, pat)
		if err != nil {
			return err
		}
		matches, err := filepath.Glob(p)
		if err != nil {
			return fmt.Errorf("configuring %s: %w", pat, err)
		}
		for _, m := range matches {
			if err := os.Remove(m); err != nil {
				return fmt.Errorf("configuring: removing %s: %w", m, err)
			}
		}
	}
	for _, f := range guestFiles(r) {
		p, err := guestPath(root, f.Path)
		if err != nil {
			return err
		}
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return fmt.Errorf("configuring %s: %w", f.Path, err)
		}
		if err := os.Remove(p); err != nil && !os.IsNotExist(err) {
			return fmt.Errorf("configuring %s: %w", f.Path, err)
		}
		if f.Symlink != "" {
			if err := os.Symlink(f.Symlink, p); err != nil {
				return fmt.Errorf("configuring %s: %w", f.Path, err)
			}
			continue
		}
		if err := os.WriteFile(p, []byte(f.Content), f.Mode); err != nil {
			return fmt.Errorf("configuring %s: %w", f.Path, err)
		}
		// WriteFile's mode is filtered by the umask; the guest needs it exact.
		if err := os.Chmod(p, f.Mode); err != nil {
			return fmt.Errorf("configuring %s: %w", f.Path, err)
		}
	}
	return nil
}
