package guest_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/firstboot/firstboot/lab/guest"
)

// readelfNeeded returns an ELF file's DT_NEEDED names and its program
// interpreter as binutils' readelf prints them (independent of the builder,
// which uses debug/elf).
func readelfNeeded(t *testing.T, data []byte) (needed []string, interp string) {
	t.Helper()
	p := filepath.Join(t.TempDir(), "elf")
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("readelf", "-d", "-l", "-W", p).Output()
	if err != nil {
		t.Fatalf("readelf: %v", err)
	}
	for _, m := range regexp.MustCompile(`\(NEEDED\)\s+Shared library: \[([^\]]+)\]`).FindAllSubmatch(out, -1) {
		needed = append(needed, string(m[1]))
	}
	if m := regexp.MustCompile(`Requesting program interpreter: ([^\]]+)\]`).FindSubmatch(out); m != nil {
		interp = string(m[1])
	}
	return needed, interp
}

// TestImageGuestAgent: the initrd holds Debian's qemu-ga, every library in
// its DT_NEEDED closure (as readelf sees it) and the loader at the path its
// PT_INTERP names; the manifest records each file with the SHA-256 of the
// bytes in the initrd, and those bytes are the packages' own.
func TestImageGuestAgent(t *testing.T) {
	requireBuildTools(t)
	img := testImage(t)
	ents := initrdEntries(t, img)

	bin, ok := ents["usr/sbin/qemu-ga"]
	if !ok || bin.Mode&0o111 == 0 {
		t.Fatalf("usr/sbin/qemu-ga missing or not executable")
	}
	needed, interp := readelfNeeded(t, bin.Data)
	if interp == "" {
		t.Fatal("qemu-ga has no program interpreter according to readelf")
	}
	link, ok := ents[strings.TrimPrefix(interp, "/")]
	if !ok || link.Mode&0o170000 != 0o120000 {
		t.Fatalf("interpreter %s is not a symlink in the initrd", interp)
	}
	if ld, ok := ents[strings.TrimPrefix(string(link.Data), "/")]; !ok || len(ld.Data) == 0 {
		t.Fatalf("interpreter link %s -> %s points at nothing", interp, link.Data)
	}
	// Walk the closure with readelf.
	seen := map[string]bool{}
	queue := append([]string{path.Base(interp)}, needed...)
	for len(queue) > 0 {
		so := queue[0]
		queue = queue[1:]
		if seen[so] {
			continue
		}
		seen[so] = true
		e, ok := ents["lib/x86_64-linux-gnu/"+so]
		if !ok || len(e.Data) == 0 {
			t.Errorf("library %s (needed by qemu-ga's closure) is not in /lib/x86_64-linux-gnu", so)
			continue
		}
		more, _ := readelfNeeded(t, e.Data)
		queue = append(queue, more...)
	}

	// What qemu-ga expects around it: /var/run (its default state
	// directory), os-release for guest-get-osinfo, and a shutdown command
	// for guest-shutdown that powers off without an init to ask.
	if e := ents["var/run"]; e.Mode&0o170000 != 0o120000 || string(e.Data) != "/run" {
		t.Errorf("var/run: mode %o target %q, want a link to /run", e.Mode, e.Data)
	}
	if e := ents["etc/os-release"]; !strings.Contains(string(e.Data), "ID=firstboot-testguest\n") {
		t.Errorf("etc/os-release: %q", e.Data)
	}
	if e := ents["sbin/shutdown"]; e.Mode&0o111 == 0 || !strings.HasPrefix(string(e.Data), "#!/bin/sh\n") || !strings.Contains(string(e.Data), "poweroff -f") {
		t.Errorf("sbin/shutdown: mode %o %q", e.Mode, e.Data)
	}

	m := img.Manifest
	if len(m.Inputs.AgentPackages) != len(guest.GuestAgentPackages) || m.Inputs.AgentPackages[0].Name != "qemu-guest-agent" {
		t.Fatalf("manifest guest-agent packages %+v", m.Inputs.AgentPackages)
	}
	if m.GuestAgent.Package != "qemu-guest-agent" || m.GuestAgent.Version != m.Inputs.AgentPackages[0].Version || m.GuestAgent.Interpreter != interp {
		t.Errorf("manifest guest_agent %s %s interp %s", m.GuestAgent.Package, m.GuestAgent.Version, m.GuestAgent.Interpreter)
	}
	if len(m.GuestAgent.Files) != len(seen)+1 {
		t.Errorf("manifest lists %d files, want qemu-ga and %d libraries", len(m.GuestAgent.Files), len(seen))
	}
	debs := map[string]string{}
	for _, p := range m.Inputs.AgentPackages {
		debs[p.Name] = p.File
	}
	extracted := map[string]string{}
	for _, f := range m.GuestAgent.Files {
		e, ok := ents[f.Path]
		sum := sha256.Sum256(e.Data)
		if !ok || hex.EncodeToString(sum[:]) != f.SHA256 || int64(len(e.Data)) != f.Size {
			t.Errorf("%s: manifest sha256 %s size %d, initrd has %x size %d", f.Path, f.SHA256, f.Size, sum, len(e.Data))
			continue
		}
		// The bytes are the package's: extract it with dpkg-deb and let the
		// kernel follow its symlinks.
		root, ok := extracted[f.Package]
		if !ok {
			deb, known := debs[f.Package]
			if !known {
				t.Errorf("%s: from package %s, which is not an input", f.Path, f.Package)
				continue
			}
			root = t.TempDir()
			if out, err := exec.Command("dpkg-deb", "-x", deb, root).CombinedOutput(); err != nil {
				t.Fatalf("dpkg-deb -x %s: %v %s", deb, err, out)
			}
			extracted[f.Package] = root
		}
		var found bool
		for _, p := range []string{f.Path, "usr/" + f.Path} {
			if b, err := os.ReadFile(filepath.Join(root, p)); err == nil && bytes.Equal(b, e.Data) {
				found = true
			}
		}
		if !found {
			t.Errorf("%s: not the bytes of %s from %s", f.Path, f.Path, f.Package)
		}
	}
}

// TestImageGuestAgentRuns unpacks the initrd with cpio and runs its qemu-ga
// in a chroot: the loader and libraries are enough, without ld.so.cache.
func TestImageGuestAgentRuns(t *testing.T) {
	requireBuildTools(t)
	if os.Geteuid() != 0 {
		t.Skip("chroot needs root")
	}
	for _, tool := range []string{"cpio", "chroot"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not installed", tool)
		}
	}
	img := testImage(t)
	dir := t.TempDir()
	cmd := exec.Command("sh", "-c", "gzip -dc \"$1\" | cpio -idm --quiet", "sh", img.Initrd)
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("unpacking the initrd: %v %s", err, out)
	}
	out, err := exec.Command("chroot", dir, "/usr/sbin/qemu-ga", "-V").CombinedOutput()
	if err != nil {
		t.Fatalf("qemu-ga -V in the initrd: %v %s", err, out)
	}
	// Debian version 1:7.2+dfsg-... is upstream 7.2.
	v := img.Manifest.GuestAgent.Version
	if _, after, ok := strings.Cut(v, ":"); ok {
		v = after
	}
	v, _, _ = strings.Cut(v, "+")
	if !strings.HasPrefix(string(out), "QEMU Guest Agent "+v) {
		t.Errorf("qemu-ga -V: %q, want QEMU Guest Agent %s", out, v)
	}
	t.Logf("%s", bytes.TrimSpace(out))
}
