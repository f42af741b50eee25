package guest

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"

	"github.com/firstboot/firstboot/internal/fsutil"
)

// debPackage is one Debian package the image is built from.
type debPackage struct {
	Name    string `json:"name"`
	Version string `json:"version"`
	File    string `json:"file"`
	SHA256  string `json:"sha256"`
}

// apt wraps the apt tools; running them is the only way the builder reaches
// the network (Debian's mirror), and only for downloads.
type apt struct {
	logger    *slog.Logger
	updated   bool // apt-get update already run in this build
	aptGetOpt []string
}

func newApt(logger *slog.Logger) *apt {
	// Downloading as root into a directory _apt cannot write makes apt warn;
	// the sandbox user buys nothing here.
	return &apt{logger: logger, aptGetOpt: []string{"-q", "-o", "APT::Sandbox::User=root"}}
}

func run(ctx context.Context, dir, name string, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return out, fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return out, nil
}

func (a *apt) update(ctx context.Context) error {
	if a.updated {
		return nil
	}
	a.updated = true
	a.logger.Info("running apt-get update (package lists are missing or stale)")
	_, err := run(ctx, "", "apt-get", append(a.aptGetOpt, "update")...)
	return err
}

var kernelPkgRE = regexp.MustCompile(`Depends:\s*(linux-image-6\.1\.0-[0-9]+-amd64)\b`)

// kernelPackage resolves the exact versioned kernel package from the
// linux-image-amd64 metapackage.
func (a *apt) kernelPackage(ctx context.Context) (string, error) {
	for attempt := 0; attempt < 2; attempt++ {
		out, err := run(ctx, "", "apt-cache", "depends", "linux-image-amd64")
		if err == nil {
			if m := kernelPkgRE.FindSubmatch(out); m != nil {
				return string(m[1]), nil
			}
		}
		if attempt == 0 {
			if err := a.update(ctx); err != nil {
				return "", fmt.Errorf("resolving the kernel package: %w", err)
			}
		}
	}
	return "", errors.New("resolving the kernel package: apt-cache depends linux-image-amd64 names no linux-image-6.1.0-*-amd64; is this Debian 12 with its main archive in sources.list?")
}

// candidates returns, for each package, the version apt would install and
// the SHA-256 the archive's (signed) index gives for its .deb, with one
// apt-cache call.
func (a *apt) candidates(ctx context.Context, pkgs ...string) (map[string][2]string, error) {
	for attempt := 0; attempt < 2; attempt++ {
		out, err := run(ctx, "", "apt-cache", append([]string{"show", "--no-all-versions"}, pkgs...)...)
		if err == nil {
			got := parseAptShow(out)
			complete := true
			for _, p := range pkgs {
				if v := got[p]; v[0] == "" || v[1] == "" {
					complete = false
				}
			}
			if complete {
				return got, nil
			}
		}
		if attempt == 0 {
			if err := a.update(ctx); err != nil {
				return nil, fmt.Errorf("finding the versions of %s: %w", strings.Join(pkgs, ", "), err)
			}
		}
	}
	return nil, fmt.Errorf("finding the versions of %s: apt-cache knows no such package (or gives no Version/SHA256)", strings.Join(pkgs, ", "))
}

// parseAptShow reads Package, Version and SHA256 from apt-cache show's
// stanzas.
func parseAptShow(out []byte) map[string][2]string {
	got := map[string][2]string{}
	var pkg, ver, sha string
	flush := func() {
		if pkg != "" {
			got[pkg] = [2]string{ver, sha}
		}
		pkg, ver, sha = "", "", ""
	}
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		line := sc.Text()
		if strings.TrimSpace(line) == "" {
			flush()
			continue
		}
		if v, ok := strings.CutPrefix(line, "Package: "); ok {
			pkg = strings.TrimSpace(v)
		} else if v, ok := strings.CutPrefix(line, "Version: "); ok {
			ver = strings.TrimSpace(v)
		} else if v, ok := strings.CutPrefix(line, "SHA256: "); ok {
			sha = strings.TrimSpace(v)
		}
	}
	flush()
	return got
}

// debFileName is how apt names a downloaded package file (the epoch's colon
// becomes %3a).
func debFileName(pkg, version string) string {
	return fmt.Sprintf("%s_%s_amd64.deb", pkg, strings.ReplaceAll(version, ":", "%3a"))
}

// fetch downloads pkg=version into dir unless it is already there, and
// checks a download against the index's SHA-256. A file already in the cache
// was checked when it was downloaded, so reuse costs no hashing.
func (a *apt) fetch(ctx context.Context, dir, pkg, version, sha string) (debPackage, error) {
	file := filepath.Join(dir, debFileName(pkg, version))
	p := debPackage{Name: pkg, Version: version, File: file, SHA256: sha}
	if _, err := os.Stat(file); err != nil {
		a.logger.Info("downloading Debian package", "package", pkg, "version", version)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return debPackage{}, err
		}
		if _, err := run(ctx, dir, "apt-get", append(a.aptGetOpt, "download", pkg+"="+version)...); err != nil {
			return debPackage{}, fmt.Errorf("downloading %s: %w", pkg, err)
		}
		if _, err := os.Stat(file); err != nil {
			return debPackage{}, fmt.Errorf("downloading %s: apt-get did not write %s: %w", pkg, file, err)
		}
		sum, _, err := fsutil.FileSHA256(file)
		if err != nil {
			return debPackage{}, err
		}
		if sum != sha {
			_ = os.Remove(file)
			return debPackage{}, fmt.Errorf("downloading %s: sha256 %s, the archive index says %s", pkg, sum, sha)
		}
	}
	return p, nil
}

// extract unpacks a .deb's data into dir with dpkg-deb.
func extract(ctx context.Context, deb, dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	if _, err := run(ctx, "", "dpkg-deb", "-x", deb, dir); err != nil {
		return fmt.Errorf("extracting %s: %w", deb, err)
	}
	return nil
}
