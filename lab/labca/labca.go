// Package labca makes guest images trust the lab CA (lab/simnet's CA, which
// stays the same across runs on one host): in the system trust store, where
// curl, apt, Go and GnuTLS programs look, and in Firefox through an
// enterprise policy. Trusted, the lab's HTTPS and QUIC responders complete
// the guest's handshakes, and the sessions' secrets let the analysis read
// the requests.
//
// Three ways in, one per kind of image: InstallInRoot for a root file
// system being built (the desktop image's build calls it), IntoInitrd for
// an initramfs guest (the test guest: an extra cpio archive after the
// image's, which the kernel unpacks over it), IntoDisk for a built Debian
// disk (a copy with the files written into its ext4 file system).
package labca

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/firstboot/firstboot/lab/guest"
)

// Paths inside a guest.
const (
	// CertPath is where Debian's update-ca-certificates picks local CAs up.
	CertPath = "/usr/local/share/ca-certificates/firstboot-lab-ca.crt"
	// BundlePath is the system bundle (Debian's ca-certificates; Go reads it too).
	BundlePath = "/etc/ssl/certs/ca-certificates.crt"
)

// firefoxPolicies are where Firefox on Linux reads enterprise policies: the
// system-wide file, and Debian's firefox-esr distribution directory.
var firefoxPolicies = []string{"/etc/firefox/policies/policies.json", "/usr/lib/firefox-esr/distribution/policies.json"}

// Fingerprint is a short name of a CA certificate (PEM): the first 8 bytes
// of the SHA-256 of its text, in hex. Images made to trust it carry it in
// their names, so a new CA means new images, never a wrong cached one.
func Fingerprint(caPEM []byte) string {
	s := sha256.Sum256(caPEM)
	return hex.EncodeToString(s[:8])
}

// policies returns Firefox's policies.json with the certificate policy
// added to existing (which may be empty or hold other policies: they stay).
func policies(existing []byte) ([]byte, error) {
	doc := map[string]any{}
	if len(bytes.TrimSpace(existing)) > 0 {
		if err := json.Unmarshal(existing, &doc); err != nil {
			return nil, fmt.Errorf("existing Firefox policies.json: %w", err)
		}
	}
	pol, _ := doc["policies"].(map[string]any)
	if pol == nil {
		pol = map[string]any{}
		doc["policies"] = pol
	}
	certs, _ := pol["Certificates"].(map[string]any)
	if certs == nil {
		certs = map[string]any{}
		pol["Certificates"] = certs
	}
	// ImportEnterpriseRoots reads the OS store where Firefox can (Windows,
	// macOS); Install adds the file on Linux.
	certs["ImportEnterpriseRoots"] = true
	install, _ := certs["Install"].([]any)
	for _, p := range install {
		if p == CertPath {
			return json.MarshalIndent(doc, "", "  ")
		}
	}
	certs["Install"] = append(install, CertPath)
	return json.MarshalIndent(doc, "", "  ")
}

// InstallInRoot makes the root file system at root (a Debian-like tree
// being built, e.g. by debootstrap) trust caPEM: it writes CertPath, runs
// update-ca-certificates inside root when the tree has it (else appends to
// the bundle), and adds the certificate policy to Firefox's policies.json.
// It needs root (chroot).
func InstallInRoot(ctx context.Context, root string, caPEM []byte) error {
	if err := checkPEM(caPEM); err != nil {
		return err
	}
	if err := writeIn(root, CertPath, caPEM); err != nil {
		return err
	}
	if _, err := os.Stat(filepath.Join(root, "usr/sbin/update-ca-certificates")); err == nil {
		out, err := exec.CommandContext(ctx, "chroot", root, "update-ca-certificates").CombinedOutput()
		if err != nil {
			return fmt.Errorf("lab CA: update-ca-certificates in %s: %w\n%s", root, err, out)
		}
	} else {
		old, err := os.ReadFile(filepath.Join(root, BundlePath))
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("lab CA: %w", err)
		}
		if err := writeIn(root, BundlePath, appendPEM(old, caPEM)); err != nil {
			return err
		}
	}
	for _, p := range firefoxPolicies {
		old, err := os.ReadFile(filepath.Join(root, p))
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("lab CA: %w", err)
		}
		doc, err := policies(old)
		if err != nil {
			return fmt.Errorf("lab CA: %s: %w", p, err)
		}
		if err := writeIn(root, p, doc); err != nil {
			return err
		}
	}
	return nil
}

func checkPEM(caPEM []byte) error {
	if !bytes.Contains(caPEM, []byte("-----BEGIN CERTIFICATE-----")) {
		return errors.New("lab CA: not a PEM certificate")
	}
	return nil
}

func appendPEM(bundle, caPEM []byte) []byte {
	if bytes.Contains(bundle, bytes.TrimSpace(caPEM)) {
		return bundle
	}
	out := append([]byte{}, bundle...)
	if len(out) > 0 && out[len(out)-1] != '\n' {
		out = append(out, '\n')
	}
	return append(out, caPEM...)
}

// writeIn writes a file at guest path p under root (directories made as
// needed), refusing paths that would leave root.
func writeIn(root, p string, data []byte) error {
	if !strings.HasPrefix(p, "/") || strings.Contains(p, "..") {
		return fmt.Errorf("lab CA: guest path %q", p)
	}
	full := filepath.Join(root, p)
	if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
		return fmt.Errorf("lab CA: %w", err)
	}
	if err := os.WriteFile(full, data, 0o644); err != nil {
		return fmt.Errorf("lab CA: %w", err)
	}
	return nil
}

// IntoInitrd writes to dst the initramfs src followed by a cpio archive
// holding the CA as the system bundle (the test guest has no other CAs)
// and as CertPath; the kernel unpacks both archives, the second over the
// first.
func IntoInitrd(src, dst string, caPEM []byte) error {
	if err := checkPEM(caPEM); err != nil {
		return err
	}
	base, err := os.ReadFile(src)
	if err != nil {
		return fmt.Errorf("lab CA: %w", err)
	}
	var extra bytes.Buffer
	w := guest.NewCPIOWriter(&extra)
	for _, d := range []string{"etc", "etc/ssl", "etc/ssl/certs", "usr", "usr/local", "usr/local/share", "usr/local/share/ca-certificates"} {
		if err := w.Dir(d, 0o755); err != nil {
			return fmt.Errorf("lab CA: %w", err)
		}
	}
	if err := w.File(strings.TrimPrefix(BundlePath, "/"), 0o644, caPEM); err != nil {
		return fmt.Errorf("lab CA: %w", err)
	}
	if err := w.File(strings.TrimPrefix(CertPath, "/"), 0o644, caPEM); err != nil {
		return fmt.Errorf("lab CA: %w", err)
	}
	if err := w.Close(); err != nil {
		return fmt.Errorf("lab CA: %w", err)
	}
	// The kernel looks for the next archive at a 4-byte boundary.
	for len(base)%4 != 0 {
		base = append(base, 0)
	}
	return writeAtomic(dst, append(base, extra.Bytes()...))
}

func writeAtomic(dst string, data []byte) error {
	tmp := dst + ".tmp"
	if err := os.WriteFile(tmp, data, 0o644); err != nil {
		return fmt.Errorf("lab CA: %w", err)
	}
	if err := os.Rename(tmp, dst); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("lab CA: %w", err)
	}
	return nil
}

// IntoDisk writes to dst (qcow2) a copy of the disk image src (qcow2 or
// raw, its whole disk one ext4 file system, as lab/osimage builds them)
// that trusts caPEM: CertPath, the system bundle with the CA appended, the
// bundle's OpenSSL hash link, and Firefox's policies. It uses qemu-img,
// debugfs and openssl; the copy takes about as long as converting the
// image twice.
func IntoDisk(ctx context.Context, src, dst string, caPEM []byte) error {
	if err := checkPEM(caPEM); err != nil {
		return err
	}
	work, err := os.MkdirTemp(filepath.Dir(dst), ".labca-")
	if err != nil {
		return fmt.Errorf("lab CA: %w", err)
	}
	defer os.RemoveAll(work)
	raw := filepath.Join(work, "disk.raw")
	run := func(name string, args ...string) ([]byte, error) {
		out, err := exec.CommandContext(ctx, name, args...).CombinedOutput()
		if err != nil {
			return out, fmt.Errorf("lab CA: %s %s: %w\n%s", name, strings.Join(args, " "), err, out)
		}
		return out, nil
	}
	if _, err := run("qemu-img", "convert", "-O", "raw", src, raw); err != nil {
		return err
	}
	bundle, err := exec.CommandContext(ctx, "debugfs", "-R", "cat "+BundlePath, raw).Output()
	if err != nil {
		return fmt.Errorf("lab CA: reading %s from %s: %w", BundlePath, src, err)
	}
	hashCmd := exec.CommandContext(ctx, "openssl", "x509", "-noout", "-subject_hash")
	hashCmd.Stdin = bytes.NewReader(caPEM)
	hashOut, err := hashCmd.Output()
	if err != nil {
		return fmt.Errorf("lab CA: openssl x509 -subject_hash: %w", err)
	}
	files := map[string][]byte{"ca.crt": caPEM, "bundle": appendPEM(bundle, caPEM)}
	cmds := []string{
		"mkdir /usr/local/share/ca-certificates",
		"rm " + CertPath, "write " + filepath.Join(work, "ca.crt") + " " + CertPath,
		"rm " + BundlePath, "write " + filepath.Join(work, "bundle") + " " + BundlePath,
		"rm /etc/ssl/certs/firstboot-lab-ca.pem", "symlink /etc/ssl/certs/firstboot-lab-ca.pem " + CertPath,
		"rm /etc/ssl/certs/" + strings.TrimSpace(string(hashOut)) + ".0",
		"symlink /etc/ssl/certs/" + strings.TrimSpace(string(hashOut)) + ".0 firstboot-lab-ca.pem",
	}
	for i, p := range firefoxPolicies {
		name := fmt.Sprintf("policies%d.json", i)
		doc, err := policies(nil)
		if err != nil {
			return err
		}
		files[name] = doc
		dir := filepath.Dir(p)
		for d := dir; d != "/"; d = filepath.Dir(d) {
			cmds = append(cmds, "mkdir "+d) // debugfs ignores existing ones with a message
		}
		cmds = append(cmds, "rm "+p, "write "+filepath.Join(work, name)+" "+p)
	}
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(work, name), data, 0o644); err != nil {
			return fmt.Errorf("lab CA: %w", err)
		}
	}
	script := filepath.Join(work, "debugfs.cmds")
	if err := os.WriteFile(script, []byte(strings.Join(mkdirsFirst(cmds), "\n")+"\n"), 0o644); err != nil {
		return fmt.Errorf("lab CA: %w", err)
	}
	if _, err := run("debugfs", "-w", "-f", script, raw); err != nil {
		return err
	}
	tmp := dst + ".tmp"
	if _, err := run("qemu-img", "convert", "-O", "qcow2", raw, tmp); err != nil {
		os.Remove(tmp)
		return err
	}
	if err := os.Rename(tmp, dst); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("lab CA: %w", err)
	}
	return nil
}

// mkdirsFirst orders debugfs commands so that parent directories are made
// before their children (shortest mkdir paths first), other commands after.
func mkdirsFirst(cmds []string) []string {
	var mk, rest []string
	seen := map[string]bool{}
	for _, c := range cmds {
		if d, ok := strings.CutPrefix(c, "mkdir "); ok {
			if !seen[d] {
				seen[d] = true
				mk = append(mk, d)
			}
			continue
		}
		rest = append(rest, c)
	}
	for i := 1; i < len(mk); i++ { // by depth
		for j := i; j > 0 && strings.Count(mk[j], "/") < strings.Count(mk[j-1], "/"); j-- {
			mk[j], mk[j-1] = mk[j-1], mk[j]
		}
	}
	out := make([]string, 0, len(cmds))
	for _, d := range mk {
		out = append(out, "mkdir "+d)
	}
	return append(out, rest...)
}
