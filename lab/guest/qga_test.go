package guest

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func writeFile(t *testing.T, p string, data []byte) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, data, 0o755); err != nil {
		t.Fatal(err)
	}
}

func symlink(t *testing.T, target, p string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(target, p); err != nil {
		t.Fatal(err)
	}
}

func TestResolveInRoot(t *testing.T) {
	root := t.TempDir()
	writeFile(t, filepath.Join(root, "usr/lib/x86_64-linux-gnu/libfoo.so.1.2.3"), []byte("x"))
	symlink(t, "libfoo.so.1.2.3", filepath.Join(root, "usr/lib/x86_64-linux-gnu/libfoo.so.1"))
	// An absolute link means the package's root, not the build host's.
	symlink(t, "/usr/lib/x86_64-linux-gnu/libfoo.so.1", filepath.Join(root, "lib64/libfoo.so.1"))
	symlink(t, "../../etc/passwd", filepath.Join(root, "lib/x86_64-linux-gnu/escape.so"))
	symlink(t, "loop.so", filepath.Join(root, "lib/loop.so"))
	for _, tc := range []struct {
		rel, want string
		ok        bool
	}{
		{"usr/lib/x86_64-linux-gnu/libfoo.so.1.2.3", "usr/lib/x86_64-linux-gnu/libfoo.so.1.2.3", true},
		{"usr/lib/x86_64-linux-gnu/libfoo.so.1", "usr/lib/x86_64-linux-gnu/libfoo.so.1.2.3", true},
		{"lib64/libfoo.so.1", "usr/lib/x86_64-linux-gnu/libfoo.so.1.2.3", true},
		{"lib/x86_64-linux-gnu/escape.so", "", false}, // etc/passwd is not in the package
		{"lib/loop.so", "", false},
		{"lib/missing.so", "", false},
		{"usr/lib", "", false}, // a directory
	} {
		t.Run(tc.rel, func(t *testing.T) {
			got, ok := resolveInRoot(root, tc.rel)
			if got != tc.want || ok != tc.ok {
				t.Errorf("resolveInRoot(%s) = %q, %v; want %q, %v", tc.rel, got, ok, tc.want, tc.ok)
			}
		})
	}
}

// TestGuestAgentClosure runs the closure over real ELF files: the build
// host's /bin/true standing in for qemu-ga (it needs libc.so.6 and the
// loader), with libc in a second "package" behind a symlink.
func TestGuestAgentClosure(t *testing.T) {
	trueBin, err := os.ReadFile("/bin/true")
	if err != nil {
		t.Skip("no /bin/true")
	}
	interp, needed, err := elfDeps(trueBin)
	if err != nil || interp == "" || len(needed) == 0 {
		t.Skipf("/bin/true is not a dynamic x86-64 executable (%v)", err)
	}
	libs := map[string][]byte{}
	for _, so := range append([]string{filepath.Base(interp)}, needed...) {
		for _, d := range []string{"/lib/x86_64-linux-gnu", "/usr/lib/x86_64-linux-gnu", "/lib64"} {
			if b, err := os.ReadFile(filepath.Join(d, so)); err == nil {
				libs[so] = b
				break
			}
		}
		if libs[so] == nil {
			t.Skipf("cannot find the host's %s", so)
		}
	}
	agentRoot, libRoot := t.TempDir(), t.TempDir()
	writeFile(t, filepath.Join(agentRoot, guestAgentBin), trueBin)
	for so, b := range libs {
		writeFile(t, filepath.Join(libRoot, "usr/lib/x86_64-linux-gnu", so+".real"), b)
		symlink(t, so+".real", filepath.Join(libRoot, "usr/lib/x86_64-linux-gnu", so))
	}
	roots := []pkgRoot{{"fake-qga", agentRoot}, {"fake-libc", libRoot}}
	files, gotInterp, err := guestAgentClosure(roots)
	if err != nil {
		t.Fatal(err)
	}
	if gotInterp != interp {
		t.Errorf("interpreter %q, want %q", gotInterp, interp)
	}
	if len(files) != len(libs)+1 {
		t.Fatalf("%d files, want /bin/true and %d libraries: %+v", len(files), len(libs), files)
	}
	for i, f := range files {
		if i > 0 && files[i-1].Path >= f.Path {
			t.Errorf("files not sorted: %s before %s", files[i-1].Path, f.Path)
		}
		if f.Path == guestAgentBin {
			if f.Package != "fake-qga" || f.SHA256 != sha256Hex(trueBin) {
				t.Errorf("agent file %+v", f)
			}
			continue
		}
		so := strings.TrimPrefix(f.Path, guestLibDir+"/")
		if libs[so] == nil || f.Package != "fake-libc" || f.SHA256 != sha256Hex(libs[so]) || f.Size != int64(len(libs[so])) {
			t.Errorf("library file %s from %s sha %s", f.Path, f.Package, f.SHA256)
		}
	}

	// Without the library package, the error names what is missing.
	_, _, err = guestAgentClosure(roots[:1])
	if err == nil || !strings.Contains(err.Error(), "GuestAgentPackages") {
		t.Errorf("closure without libraries: %v", err)
	}
	if _, _, err := guestAgentClosure([]pkgRoot{{"empty", t.TempDir()}}); err == nil || !strings.Contains(err.Error(), "qemu-guest-agent") {
		t.Errorf("closure without qemu-ga: %v", err)
	}
}

// TestKernelFor: a machine with UEFI or a TPM boots the bzImage: UEFI needs
// its EFI stub, and QEMU's PVH boot with a TPM leaves the kernel without
// ACPI (TestGuestAgentMediaTPM boots both ways it is used).
func TestKernelFor(t *testing.T) {
	img := Image{Kernel: "/c/vmlinux", BzImage: "/c/vmlinuz"}
	for _, tc := range []struct {
		uefi, tpm bool
		want      string
	}{{false, false, img.Kernel}, {false, true, img.BzImage}, {true, false, img.BzImage}, {true, true, img.BzImage}} {
		if got := img.KernelFor(tc.uefi, tc.tpm); got != tc.want {
			t.Errorf("KernelFor(uefi %v, tpm %v) = %s, want %s", tc.uefi, tc.tpm, got, tc.want)
		}
	}
	// An image without a bzImage has only its kernel to offer.
	if got := (Image{Kernel: "/c/vmlinux"}).KernelFor(true, true); got != "/c/vmlinux" {
		t.Errorf("without a bzImage, KernelFor = %s", got)
	}
}
