package osimage_test

import (
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/firstboot/firstboot/internal/testvm"
)

// TestDesktopImage builds (or reuses) debian-12-desktop and reads its root
// file system with debugfs (e2fsprogs; no mount): the graphical login is
// the display manager, without autologin, Xfce and Firefox ESR are
// installed, and the build's own scaffolding (policy-rc.d, the package
// cache, apt's lists) is gone. That the machine boots to the greeter, logs
// in and runs Firefox is TestRunDesktop's (cmd/firstboot) part.
func TestDesktopImage(t *testing.T) {
	testvm.Require(t, "builds the desktop image", "debootstrap", "mkfs.ext4", "qemu-img", "debugfs")
	img := buildImage(t, "debian-12-desktop")
	for _, want := range []string{"lightdm", "lightdm-gtk-greeter", "xfce4-panel", "xfce4-session", "xfdesktop4", "firefox-esr", "xserver-xorg-core", "xserver-xorg-input-libinput", "qemu-guest-agent"} {
		if !hasPackage(img.Manifest.Packages, want) {
			t.Errorf("package %s is not installed", want)
		}
	}
	raw := filepath.Join(t.TempDir(), "disk.raw")
	mustRun(t, "qemu-img", "convert", "-f", "qcow2", "-O", "raw", img.Disk, raw)
	debugfs := func(cmd string) string {
		out, err := exec.Command("debugfs", "-R", cmd, raw).CombinedOutput()
		if err != nil {
			t.Fatalf("debugfs %s: %v\n%s", cmd, err, out)
		}
		return string(out)
	}
	if out := debugfs("stat /etc/systemd/system/display-manager.service"); !strings.Contains(out, "lightdm.service") {
		t.Errorf("display-manager.service is not LightDM:\n%s", out)
	}
	if out := debugfs("stat /lib/systemd/system/default.target"); !strings.Contains(out, "graphical.target") {
		t.Errorf("the default target is not graphical:\n%s", out)
	}
	for _, line := range strings.Split(debugfs("cat /etc/lightdm/lightdm.conf"), "\n") {
		if l := strings.TrimSpace(line); strings.HasPrefix(l, "autologin-user=") && l != "autologin-user=" {
			t.Errorf("lightdm.conf logs a user in automatically: %q", l)
		}
	}
	for _, gone := range []string{"/usr/sbin/policy-rc.d"} {
		if out := debugfs("stat " + gone); !strings.Contains(out, "File not found") {
			t.Errorf("%s is left in the image:\n%s", gone, out)
		}
	}
	for _, dir := range []string{"/var/cache/apt/archives", "/var/lib/apt/lists"} {
		for _, f := range strings.Fields(debugfs("ls " + dir)) {
			if strings.HasSuffix(f, ".deb") || strings.HasSuffix(f, "_Packages") || strings.HasSuffix(f, "_InRelease") {
				t.Errorf("%s keeps the build's %s", dir, f)
			}
		}
	}
}
