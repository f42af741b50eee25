package labca

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/firstboot/firstboot/internal/testenv"
	"github.com/firstboot/firstboot/lab/guest"
	"github.com/firstboot/firstboot/lab/simnet"
)

func testCA(t *testing.T) []byte {
	ca, err := simnet.NewCA()
	if err != nil {
		t.Fatal(err)
	}
	return ca.CertPEM
}

func need(t *testing.T, tools ...string) {
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			testenv.Missing(t, "%s not installed (scripts/provision.sh installs it)", tool)
		}
	}
}

// checkTrusts verifies that a bundle's certificates include caPEM's.
func checkTrusts(t *testing.T, bundle, caPEM []byte) {
	t.Helper()
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(bundle) {
		t.Fatal("bundle holds no certificate")
	}
	b, _ := pem.Decode(caPEM)
	c, _ := x509.ParseCertificate(b.Bytes)
	if _, err := c.Verify(x509.VerifyOptions{Roots: pool}); err != nil {
		t.Errorf("the bundle does not trust the lab CA: %v", err)
	}
}

func TestIntoInitrd(t *testing.T) {
	ca := testCA(t)
	dir := t.TempDir()
	var base bytes.Buffer
	w := guest.NewCPIOWriter(&base)
	w.File("init", 0o755, []byte("#!/bin/sh\n"))
	w.Close()
	src, dst := filepath.Join(dir, "initrd"), filepath.Join(dir, "initrd-ca")
	os.WriteFile(src, base.Bytes(), 0o644)
	if err := IntoInitrd(src, dst, ca); err != nil {
		t.Fatal(err)
	}
	got, _ := os.ReadFile(dst)
	if !bytes.HasPrefix(got, base.Bytes()) {
		t.Fatal("the image's own archive changed")
	}
	// The kernel reads the second archive after the first: so does ReadCPIO's caller here.
	rest := got[(len(base.Bytes())+3)&^3:]
	entries, err := guest.ReadCPIO(bytes.NewReader(rest))
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, e := range entries {
		if "/"+e.Name == BundlePath {
			found = true
			checkTrusts(t, e.Data, ca)
		}
	}
	if !found {
		t.Errorf("no %s in the added archive: %+v", BundlePath, entries)
	}
}

func TestPoliciesKeepOthers(t *testing.T) {
	doc, err := policies([]byte(`{"policies":{"DisableAppUpdate":true,"Certificates":{"Install":["/x.crt"]}}}`))
	if err != nil {
		t.Fatal(err)
	}
	var v struct {
		Policies struct {
			DisableAppUpdate bool
			Certificates     struct {
				ImportEnterpriseRoots bool
				Install               []string
			}
		} `json:"policies"`
	}
	if err := json.Unmarshal(doc, &v); err != nil {
		t.Fatal(err)
	}
	if !v.Policies.DisableAppUpdate || !v.Policies.Certificates.ImportEnterpriseRoots || strings.Join(v.Policies.Certificates.Install, " ") != "/x.crt "+CertPath {
		t.Errorf("policies %s", doc)
	}
	again, _ := policies(doc)
	if strings.Count(string(again), CertPath) != 1 {
		t.Errorf("installed twice: %s", again)
	}
}

// TestIntoDisk builds a small ext4 disk like lab/osimage's (the whole disk
// one file system, a Debian-style bundle in it), makes the trusting copy
// and reads the files back with debugfs.
func TestIntoDisk(t *testing.T) {
	need(t, "mkfs.ext4", "debugfs", "qemu-img", "openssl")
	ca := testCA(t)
	other := testCA(t)
	dir := t.TempDir()
	root := filepath.Join(dir, "root")
	os.MkdirAll(filepath.Join(root, "etc/ssl/certs"), 0o755)
	os.MkdirAll(filepath.Join(root, "usr/local/share"), 0o755)
	os.WriteFile(filepath.Join(root, BundlePath), other, 0o644)
	raw := filepath.Join(dir, "disk.raw")
	if out, err := exec.Command("mkfs.ext4", "-q", "-d", root, raw, "16M").CombinedOutput(); err != nil {
		t.Fatalf("mkfs.ext4: %v\n%s", err, out)
	}
	src, dst := filepath.Join(dir, "disk.qcow2"), filepath.Join(dir, "disk-ca.qcow2")
	if out, err := exec.Command("qemu-img", "convert", "-O", "qcow2", raw, src).CombinedOutput(); err != nil {
		t.Fatalf("qemu-img: %v\n%s", err, out)
	}
	if err := IntoDisk(context.Background(), src, dst, ca); err != nil {
		t.Fatal(err)
	}
	back := filepath.Join(dir, "back.raw")
	exec.Command("qemu-img", "convert", "-O", "raw", dst, back).Run()
	cat := func(p string) []byte {
		out, err := exec.Command("debugfs", "-R", "cat "+p, back).Output()
		if err != nil {
			t.Fatalf("debugfs cat %s: %v", p, err)
		}
		return out
	}
	bundle := cat(BundlePath)
	checkTrusts(t, bundle, ca)
	checkTrusts(t, bundle, other) // the CAs the image had stay
	if !bytes.Equal(cat(CertPath), ca) {
		t.Errorf("%s differs from the CA", CertPath)
	}
	if !strings.Contains(string(cat(firefoxPolicies[0])), CertPath) {
		t.Errorf("Firefox policies lack the CA")
	}
	hash, _ := exec.Command("sh", "-c", "openssl x509 -noout -subject_hash <<'EOF'\n"+string(ca)+"EOF").Output()
	ls, _ := exec.Command("debugfs", "-R", "stat /etc/ssl/certs/"+strings.TrimSpace(string(hash))+".0", back).CombinedOutput()
	if !strings.Contains(string(ls), "symlink") && !strings.Contains(string(ls), "Fast link dest") {
		t.Errorf("no OpenSSL hash link:\n%s", ls)
	}
}

// TestInstallInRoot installs into a root without update-ca-certificates
// (the bundle is appended to) that has a Firefox policy of its own.
func TestInstallInRoot(t *testing.T) {
	ca, other := testCA(t), testCA(t)
	root := t.TempDir()
	os.MkdirAll(filepath.Join(root, "etc/ssl/certs"), 0o755)
	os.WriteFile(filepath.Join(root, BundlePath), other, 0o644)
	os.MkdirAll(filepath.Join(root, "etc/firefox/policies"), 0o755)
	os.WriteFile(filepath.Join(root, firefoxPolicies[0]), []byte(`{"policies":{"DisableTelemetry":true}}`), 0o644)
	if err := InstallInRoot(context.Background(), root, ca); err != nil {
		t.Fatal(err)
	}
	bundle, _ := os.ReadFile(filepath.Join(root, BundlePath))
	checkTrusts(t, bundle, ca)
	checkTrusts(t, bundle, other)
	for _, p := range firefoxPolicies {
		doc, err := os.ReadFile(filepath.Join(root, p))
		if err != nil || !strings.Contains(string(doc), CertPath) {
			t.Errorf("%s: %v %s", p, err, doc)
		}
	}
	if doc, _ := os.ReadFile(filepath.Join(root, firefoxPolicies[0])); !strings.Contains(string(doc), "DisableTelemetry") {
		t.Errorf("the image's own policy is gone: %s", doc)
	}
	if err := InstallInRoot(context.Background(), root, []byte("not a certificate")); err == nil {
		t.Error("a non-PEM CA was installed")
	}
}
