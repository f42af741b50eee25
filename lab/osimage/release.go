package osimage

import (
	"fmt"
	"sort"
	"strings"
)

// Release is a Debian release firstboot can build.
type Release struct {
	// Name is the builtin image name used in scenarios ("debian-12").
	Name string
	// Suite is Debian's code name ("bookworm").
	Suite   string
	Version string
	// Packages are added to debootstrap's default set (required + important
	// priority, which is what the installer's base system contains).
	Packages []string
	// DebSources writes apt's sources the way that release's installer does:
	// one-line sources.list for bookworm, deb822 debian.sources for trixie.
	DebSources bool
	// Desktop are installed with apt-get (without recommends) after
	// debootstrap: a graphical system's packages have alternatives and
	// virtual dependencies that apt resolves and debootstrap does not.
	Desktop []string
}

// Default user and passwords, documented in docs/images.md. The image is only
// ever booted in the isolated lab, where a known password is what lets a
// scenario log in on the serial console.
const (
	UserName     = "firstboot"
	UserPassword = "firstboot"
	RootPassword = "firstboot"
	Hostname     = "debian"
	// RootLabel is the ext4 label the kernel command line and fstab mount.
	RootLabel = "debian-root"
)

// commonPackages are what every release adds to the base system: the init,
// the time sync client whose NTP queries are classic first-boot traffic, the
// kernel, the network configuration a stock install uses, and curl for the
// scenarios' user actions. dbus and libpam-systemd are systemd's
// recommendations, which the installer installs and debootstrap does not;
// without the bus, timedatectl, hostnamectl and logind do not work.
// qemu-guest-agent is the lab's addition (a stock install has it only when
// the user picks it): udev starts it when the machine has the
// org.qemu.guest_agent.0 port, which is what lets a scenario's guest_exec
// run commands. It sends nothing on the network.
var commonPackages = []string{
	"systemd-sysv", "systemd-timesyncd", "dbus", "libpam-systemd", "linux-image-amd64", "ifupdown",
	"ca-certificates", "curl", "qemu-guest-agent",
}

var releases = map[string]Release{
	"debian-12": {
		Name: "debian-12", Suite: "bookworm", Version: "12",
		// The bookworm installer configures ifupdown with ISC dhclient.
		Packages: append(append([]string{}, commonPackages...), "isc-dhcp-client"),
	},
	// debian-12 with a graphical login (LightDM and its GTK greeter, no
	// autologin), the Xfce desktop and Firefox ESR. Recommends are left out
	// (Debian's desktop task would add office, media and printing packages):
	// under TCG every process counts. dbus-user-session gives the session its
	// bus as on a stock desktop; fonts-dejavu-core the fonts the screen (and
	// its OCR) reads.
	"debian-12-desktop": {
		Name: "debian-12-desktop", Suite: "bookworm", Version: "12",
		Packages: append(append([]string{}, commonPackages...), "isc-dhcp-client"),
		Desktop: []string{
			"xserver-xorg-core", "xserver-xorg-input-libinput", "lightdm", "lightdm-gtk-greeter",
			"xfce4", "dbus-user-session", "fonts-dejavu-core", "firefox-esr",
		},
	},
	"debian-13": {
		Name: "debian-13", Suite: "trixie", Version: "13",
		// The trixie installer switched ifupdown's DHCP client to dhcpcd.
		Packages:   append(append([]string{}, commonPackages...), "dhcpcd-base"),
		DebSources: true,
	},
}

// ReleaseNames lists the buildable images, sorted.
func ReleaseNames() []string {
	var out []string
	for k := range releases {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// LookupRelease returns the release for a builtin image name.
func LookupRelease(name string) (Release, error) {
	r, ok := releases[name]
	if !ok {
		return Release{}, fmt.Errorf("no Debian image %q (known: %s)", name, strings.Join(ReleaseNames(), ", "))
	}
	return r, nil
}
