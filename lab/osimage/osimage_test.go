package osimage

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/firstboot/firstboot/lab"
)

func TestHostMirror(t *testing.T) {
	tests := []struct {
		name  string
		files map[string]string
		want  string
	}{
		{"deb822 like this machine", map[string]string{
			"sources.list.d/debian.sources": "Types: deb\n# http://snapshot.debian.org/archive/debian/20250520T000000Z\n" +
				"URIs: http://deb.debian.org/debian\nSuites: bookworm bookworm-updates\nComponents: main\n\n" +
				"Types: deb\nURIs: http://deb.debian.org/debian-security\nSuites: bookworm-security\nComponents: main\n",
			"sources.list.d/nodesource.sources": "Types: deb\nURIs: https://deb.nodesource.com/node_20.x\nSuites: nodistro\n",
		}, "http://deb.debian.org/debian"},
		{"one-line with options and a local mirror", map[string]string{
			"sources.list": "# comment\ndeb-src http://src.example/debian bookworm main\n" +
				"deb [arch=amd64 signed-by=/k.gpg] http://mirror.example.org/debian/ bookworm main\n",
		}, "http://mirror.example.org/debian"},
		{"security only falls back", map[string]string{
			"sources.list": "deb http://security.debian.org/debian-security bookworm-security main\n",
		}, DefaultMirror},
		{"disabled deb822 stanza is skipped", map[string]string{
			"sources.list.d/a.sources": "Enabled: no\nTypes: deb\nURIs: http://off.example/debian\n\n" +
				"Types: deb deb-src\nURIs: http://on.example/debian/\n",
		}, "http://on.example/debian"},
		{"deb-src only is not an archive for debootstrap", map[string]string{
			"sources.list.d/a.sources": "Types: deb-src\nURIs: http://src.example/debian\n",
		}, DefaultMirror},
		{"nothing configured", nil, DefaultMirror},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			for name, content := range tt.files {
				p := filepath.Join(dir, name)
				if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			if got := HostMirror(dir); got != tt.want {
				t.Errorf("HostMirror = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestMountsUnder(t *testing.T) {
	// Lines in the format of proc(5) /proc/self/mountinfo.
	info := "22 1 0:21 / / rw - ext4 /dev/vda rw\n" +
		"30 22 0:5 / /var/tmp/w/rootfs/proc rw - proc proc rw\n" +
		"31 22 0:6 / /var/tmp/w/rootfs/sys rw - sysfs sysfs rw\n" +
		"32 31 0:7 / /var/tmp/w/rootfs/sys/fs/cgroup rw - cgroup2 cgroup rw\n" +
		"33 22 0:8 / /var/tmp/w/rootfs\\040x/proc rw - proc proc rw\n" +
		"34 22 0:9 / /var/tmp/wother rw - tmpfs tmpfs rw\n" +
		"garbage\n"
	got := mountsUnder(info, "/var/tmp/w/")
	want := []string{"/var/tmp/w/rootfs/sys/fs/cgroup", "/var/tmp/w/rootfs x/proc", "/var/tmp/w/rootfs/proc", "/var/tmp/w/rootfs/sys"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("mountsUnder = %q, want %q", got, want)
	}
}

func TestParsePackages(t *testing.T) {
	out := "ii \tsystemd\t252.38-1~deb12u1\tamd64\n" +
		"rc \told-pkg\t1.0\tamd64\n" +
		"ii \tapt\t2.6.1\tamd64\n" +
		"bad line\n\n"
	got := parsePackages(out)
	want := []Package{{"apt", "2.6.1", "amd64"}, {"systemd", "252.38-1~deb12u1", "amd64"}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("parsePackages = %+v, want %+v", got, want)
	}
}

func TestWriteGuestFiles(t *testing.T) {
	for _, name := range ReleaseNames() {
		t.Run(name, func(t *testing.T) {
			rel, err := LookupRelease(name)
			if err != nil {
				t.Fatal(err)
			}
			root := t.TempDir()
			// State debootstrap leaves behind that must not survive.
			for p, c := range map[string]string{
				"etc/resolv.conf": "nameserver 192.0.2.53\n", "etc/machine-id": "d8cc8ab168764851a7f221711d91c272\n",
				"var/cache/apt/archives/x_1_amd64.deb": "deb", "etc/apt/sources.list": "deb http://mirror.example/debian " + rel.Suite + " main\n",
			} {
				mustWrite(t, filepath.Join(root, p), c)
			}
			if err := writeGuestFiles(root, rel); err != nil {
				t.Fatal(err)
			}
			if b := read(t, root, "etc/resolv.conf"); b != "" {
				t.Errorf("resolv.conf keeps the host's resolver: %q", b)
			}
			if b := read(t, root, "etc/machine-id"); b != "" {
				t.Errorf("machine-id is %q, want empty (first boot generates it)", b)
			}
			if _, err := os.Stat(filepath.Join(root, "var/cache/apt/archives/x_1_amd64.deb")); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("downloaded .deb kept: %v", err)
			}
			if got := read(t, root, "etc/hostname"); got != "debian\n" {
				t.Errorf("hostname %q", got)
			}
			if l, err := os.Readlink(filepath.Join(root, "etc/systemd/network/99-default.link")); err != nil || l != "/dev/null" {
				t.Errorf("99-default.link: %q %v, want a link to /dev/null", l, err)
			}
			if !strings.Contains(read(t, root, "etc/network/interfaces"), "allow-hotplug eth0\niface eth0 inet dhcp\n") {
				t.Errorf("interfaces has no DHCP stanza for eth0")
			}
			if !strings.Contains(read(t, root, "etc/fstab"), "LABEL="+RootLabel+" ") || !strings.Contains(Cmdline, "root=LABEL="+RootLabel+" ") {
				t.Errorf("fstab and the command line must mount the same label")
			}
			sources := read(t, root, "etc/apt/sources.list")
			if rel.DebSources {
				if strings.TrimSpace(sources) != "" {
					t.Errorf("sources.list should be empty with deb822 sources: %q", sources)
				}
				sources = read(t, root, "etc/apt/sources.list.d/debian.sources")
			}
			for _, want := range []string{"http://deb.debian.org/debian", "http://security.debian.org/debian-security",
				rel.Suite + "-security", rel.Suite + "-updates"} {
				if !strings.Contains(sources, want) {
					t.Errorf("apt sources lack %q:\n%s", want, sources)
				}
			}
			if strings.Contains(sources, "mirror.example") {
				t.Errorf("apt sources keep the build mirror:\n%s", sources)
			}
			fi, err := os.Stat(filepath.Join(root, "etc/machine-id"))
			if err != nil || fi.Mode().Perm() != 0o444 {
				t.Errorf("machine-id mode %v %v, want 0444", fi.Mode(), err)
			}
		})
	}
}

func TestLookupRelease(t *testing.T) {
	if _, err := LookupRelease("debian-11"); err == nil || !strings.Contains(err.Error(), "debian-12") {
		t.Errorf("unknown release: err %v should list the known ones", err)
	}
	for _, n := range []string{"debian-12", "debian-13"} {
		r, err := LookupRelease(n)
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range []string{"systemd-timesyncd", "linux-image-amd64", "ifupdown", "qemu-guest-agent"} {
			if !contains(r.Packages, p) {
				t.Errorf("%s does not install %s", n, p)
			}
		}
	}
}

func TestLoad(t *testing.T) {
	cache := t.TempDir()
	if _, err := Load(cache, "debian-12"); !errors.Is(err, ErrNotBuilt) || !strings.Contains(err.Error(), "firstboot image build debian-12") {
		t.Errorf("missing image: err %v, want ErrNotBuilt with the command to run", err)
	}
	dir := filepath.Join(cache, "debian-12")
	files := map[string]string{FileDisk: "disk", FileVmlinux: "kernel", FileInitrd: "initrd"}
	m := Manifest{FormatVersion: formatVersion, Release: "debian-12", Kernel: FileVmlinux, Cmdline: Cmdline, Files: map[string]FileInfo{}}
	for name, c := range files {
		p := filepath.Join(dir, name)
		mustWrite(t, p, c)
		fi, err := describe(p)
		if err != nil {
			t.Fatal(err)
		}
		m.Files[name] = fi
	}
	b, _ := json.Marshal(m)
	mustWrite(t, filepath.Join(dir, FileManifest), string(b))
	img, err := Load(cache, "debian-12")
	if err != nil {
		t.Fatal(err)
	}
	if img.Kernel != filepath.Join(dir, FileVmlinux) || img.Disk != filepath.Join(dir, FileDisk) || img.Cmdline != Cmdline {
		t.Errorf("Load = %+v", img)
	}
	if err := verify(img); err != nil {
		t.Errorf("verify of intact files: %v", err)
	}
	mustWrite(t, filepath.Join(dir, FileInitrd), "tampered")
	if err := verify(img); err == nil || !strings.Contains(err.Error(), FileInitrd) {
		t.Errorf("verify of a changed initrd: err %v, want it named", err)
	}
	if _, err := Load(cache, "debian-13"); !errors.Is(err, ErrNotBuilt) {
		t.Errorf("other release: %v", err)
	}
	m.FormatVersion = formatVersion + 1
	b, _ = json.Marshal(m)
	mustWrite(t, filepath.Join(dir, FileManifest), string(b))
	if _, err := Load(cache, "debian-12"); !errors.Is(err, ErrNotBuilt) || !strings.Contains(err.Error(), "--force") {
		t.Errorf("other format: err %v, want ErrNotBuilt asking for --force", err)
	}
	spec := img.MachineSpec(labSpec())
	if spec.Kernel != img.Kernel || spec.Initrd != img.Initrd || spec.Disk != img.Disk || spec.Cmdline != Cmdline || spec.Name != "x" {
		t.Errorf("MachineSpec = %+v", spec)
	}
	// A machine with a TPM boots the bzImage (PVH with a TPM loses ACPI).
	withTPM := labSpec()
	withTPM.TPM = true
	if spec := img.MachineSpec(withTPM); spec.Kernel != filepath.Join(dir, FileVmlinuz) || !spec.TPM {
		t.Errorf("MachineSpec with a TPM boots %s, want %s", spec.Kernel, filepath.Join(dir, FileVmlinuz))
	}
}

func mustWrite(t *testing.T, p, c string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(c), 0o644); err != nil {
		t.Fatal(err)
	}
}

func read(t *testing.T, root, p string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(root, p))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func labSpec() lab.MachineSpec { return lab.MachineSpec{Name: "x", RunDir: "/tmp/run"} }
