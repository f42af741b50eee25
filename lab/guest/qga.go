package guest

import (
	"bytes"
	"debug/elf"
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
)

// GuestAgentPackages are the Debian packages the image takes qemu-ga from:
// qemu-guest-agent itself, then the packages holding the shared libraries
// it needs (its DT_NEEDED closure in bookworm: glib and gmodule, libnuma,
// libudev, liburing, pcre2 under glib, and libc with its loader). Only the
// closure's files go into the initrd, not the whole packages. A library
// missing from these packages fails the build and names the library.
var GuestAgentPackages = []string{"qemu-guest-agent", "libc6", "libglib2.0-0", "libnuma1", "libudev1", "liburing2", "libpcre2-8-0"}

const (
	// Paths inside the guest (relative to /, as in the archive).
	guestAgentBin = "usr/sbin/qemu-ga"
	guestLibDir   = "lib/x86_64-linux-gnu"
)

// libSearchDirs are where Debian's packages put x86-64 shared libraries.
var libSearchDirs = []string{"lib/x86_64-linux-gnu", "usr/lib/x86_64-linux-gnu", "lib64", "lib", "usr/lib"}

// pkgRoot is one extracted package.
type pkgRoot struct {
	name, dir string
}

// GuestAgentFile is one file of qemu-ga's closure as installed in the initrd.
type GuestAgentFile struct {
	Path    string `json:"path"` // in the guest, without the leading slash
	Package string `json:"package"`
	Size    int64  `json:"size"`
	SHA256  string `json:"sha256"`
	data    []byte
}

// GuestAgentInfo goes into the image manifest: which qemu-ga, and every file
// of it and its libraries with the package it came from.
type GuestAgentInfo struct {
	Package string `json:"package"`
	Version string `json:"version"`
	// Interpreter is the program interpreter qemu-ga asks for (PT_INTERP);
	// the initrd has it as a symlink to the loader in Files.
	Interpreter string           `json:"interpreter"`
	Files       []GuestAgentFile `json:"files"`
}

// guestAgentClosure collects qemu-ga and every shared library it needs,
// transitively, from the extracted packages. The result is sorted by guest
// path, so the archive written from it is deterministic.
func guestAgentClosure(roots []pkgRoot) (files []GuestAgentFile, interp string, err error) {
	if len(roots) == 0 {
		return nil, "", errors.New("qemu-ga: no packages")
	}
	bin, err := os.ReadFile(filepath.Join(roots[0].dir, guestAgentBin))
	if err != nil {
		return nil, "", fmt.Errorf("qemu-ga: %w (is %s the qemu-guest-agent package?)", err, roots[0].name)
	}
	interp, needed, err := elfDeps(bin)
	if err != nil {
		return nil, "", fmt.Errorf("qemu-ga: /%s: %w", guestAgentBin, err)
	}
	if interp == "" {
		return nil, "", fmt.Errorf("qemu-ga: /%s has no program interpreter; a static qemu-ga needs no libraries, but this builder expects Debian's dynamic one", guestAgentBin)
	}
	files = append(files, GuestAgentFile{Path: guestAgentBin, Package: roots[0].name, data: bin})
	// The loader is found like a library, by its file name.
	queue := append([]string{path.Base(interp)}, needed...)
	seen := map[string]bool{}
	for len(queue) > 0 {
		so := queue[0]
		queue = queue[1:]
		if seen[so] {
			continue
		}
		seen[so] = true
		pkg, data, err := findLibrary(roots, so)
		if err != nil {
			return nil, "", fmt.Errorf("qemu-ga: %w", err)
		}
		_, deps, err := elfDeps(data)
		if err != nil {
			return nil, "", fmt.Errorf("qemu-ga: %s (from %s): %w", so, pkg, err)
		}
		files = append(files, GuestAgentFile{Path: guestLibDir + "/" + so, Package: pkg, data: data})
		queue = append(queue, deps...)
	}
	sort.Slice(files, func(i, j int) bool { return files[i].Path < files[j].Path })
	for i := range files {
		files[i].Size = int64(len(files[i].data))
		files[i].SHA256 = sha256Hex(files[i].data)
	}
	return files, interp, nil
}

// elfDeps reads an x86-64 ELF file's program interpreter and DT_NEEDED list.
func elfDeps(b []byte) (interp string, needed []string, err error) {
	f, err := elf.NewFile(bytes.NewReader(b))
	if err != nil {
		return "", nil, fmt.Errorf("not ELF: %w", err)
	}
	defer f.Close()
	if f.Machine != elf.EM_X86_64 {
		return "", nil, fmt.Errorf("not x86-64 (%v)", f.Machine)
	}
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			data := make([]byte, p.Filesz)
			if _, err := p.ReadAt(data, 0); err != nil {
				return "", nil, fmt.Errorf("reading PT_INTERP: %w", err)
			}
			interp = string(bytes.TrimRight(data, "\x00"))
		}
	}
	needed, err = f.ImportedLibraries()
	if err != nil {
		return "", nil, fmt.Errorf("reading DT_NEEDED: %w", err)
	}
	return interp, needed, nil
}

// findLibrary looks for a library file name in the packages, in order,
// following symlinks inside the package (Debian ships libfoo.so.1 as a link
// to libfoo.so.1.2.3).
func findLibrary(roots []pkgRoot, so string) (pkg string, data []byte, err error) {
	if so == "" || strings.Contains(so, "/") {
		return "", nil, fmt.Errorf("unexpected library name %q", so)
	}
	for _, r := range roots {
		for _, d := range libSearchDirs {
			p, ok := resolveInRoot(r.dir, d+"/"+so)
			if !ok {
				continue
			}
			b, err := os.ReadFile(filepath.Join(r.dir, p))
			if err != nil {
				return "", nil, err
			}
			return r.name, b, nil
		}
	}
	names := make([]string, len(roots))
	for i, r := range roots {
		names[i] = r.name
	}
	return "", nil, fmt.Errorf("library %s is in none of the packages %s; add the package that ships it to guest.GuestAgentPackages", so, strings.Join(names, ", "))
}

// resolveInRoot follows symlinks of rel (a path inside root) as if root
// were /, and reports whether a regular file is at the end.
func resolveInRoot(root, rel string) (string, bool) {
	for range 16 {
		st, err := os.Lstat(filepath.Join(root, rel))
		if err != nil {
			return "", false
		}
		if st.Mode().IsRegular() {
			return rel, true
		}
		if st.Mode()&os.ModeSymlink == 0 {
			return "", false
		}
		t, err := os.Readlink(filepath.Join(root, rel))
		if err != nil {
			return "", false
		}
		if path.IsAbs(t) {
			rel = strings.TrimPrefix(path.Clean(t), "/")
		} else {
			rel = strings.TrimPrefix(path.Clean("/"+path.Join(path.Dir(rel), t)), "/")
		}
	}
	return "", false
}
