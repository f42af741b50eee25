package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spf13/cobra"

	"github.com/firstboot/firstboot/results/dataset/testcapture"
	"github.com/firstboot/firstboot/results/diff"
	"github.com/firstboot/firstboot/results/publish/publishtest"
)

func testApp(t *testing.T) *app {
	cfg := defaultConfig()
	cfg.ImageCache = t.TempDir()
	return &app{cfg: cfg, logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
}

// runCmd runs a command built by a constructor and returns stdout and the exit code main would use.
func runCmd(t *testing.T, cmd *cobra.Command, args ...string) (string, int) {
	t.Helper()
	var out bytes.Buffer
	cmd.SetArgs(args)
	cmd.SetOut(&out)
	cmd.SetErr(io.Discard)
	cmd.SilenceErrors, cmd.SilenceUsage = true, true
	ctx := context.Background()
	err := cmd.ExecuteContext(ctx)
	if err != nil {
		out.WriteString("ERROR: " + err.Error())
	}
	return out.String(), exitCodeQuiet(ctx, err)
}

func exitCodeQuiet(ctx context.Context, err error) int {
	old := os.Stderr
	os.Stderr, _ = os.Open(os.DevNull)
	defer func() { os.Stderr = old }()
	return exitCode(ctx, err)
}

func TestDatasetDiffCommands(t *testing.T) {
	root := t.TempDir()
	r1, r2 := filepath.Join(root, "r1"), filepath.Join(root, "r2")
	if _, _, err := testcapture.Write(r1, testcapture.Config{RunID: "r1"}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := testcapture.Write(r2, testcapture.Config{RunID: "r2", Names: []string{"example.org", "tracker.example.net"}}); err != nil {
		t.Fatal(err)
	}
	// r1 has reports (which name the lab): the bundle must get fresh, anonymised ones.
	if err := analyzeRunDir(context.Background(), r1, nil); err != nil {
		t.Fatal(err)
	}
	if _, _, err := writeRunReport(r1, nil, io.Discard); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(filepath.Join(r1, "report.md")); !bytes.Contains(b, []byte("10.77.0.57")) {
		t.Fatalf("the source report does not name the machine; the test would prove nothing")
	}
	a := testApp(t)
	bundle := filepath.Join(root, "bundle")
	if out, code := runCmd(t, newDatasetCmd(a), "build", r1, r2, "--out", bundle); code != exitUsage || !strings.Contains(out, "--creator") {
		t.Errorf("build without creator: code %d, %s", code, out)
	}
	out, code := runCmd(t, newDatasetCmd(a), "build", r1, r2, "--out", bundle, "--creator", "A. Researcher", "--publisher", "Uni", "--anonymize")
	if code != 0 {
		t.Fatalf("build: %d %s", code, out)
	}
	if out, code := runCmd(t, newDatasetCmd(a), "verify", bundle); code != 0 || !strings.Contains(out, "OK") {
		t.Fatalf("verify: %d %s", code, out)
	}
	for _, f := range []string{"report.md", "report.html"} {
		b, err := os.ReadFile(filepath.Join(bundle, "runs", "r1", f))
		if err != nil || bytes.Contains(b, []byte("10.77.0.57")) || !bytes.Contains(b, []byte("192.0.2.2")) {
			t.Errorf("bundled %s: %v; must name 192.0.2.2 and not 10.77.0.57", f, err)
		}
	}
	// Built again (reports included): the same bytes, so the same MANIFEST.
	bundle2 := filepath.Join(root, "bundle2")
	if out, code := runCmd(t, newDatasetCmd(a), "build", r2, r1, "--out", bundle2, "--creator", "A. Researcher", "--publisher", "Uni", "--anonymize"); code != 0 {
		t.Fatalf("build 2: %s", out)
	}
	m1, _ := os.ReadFile(filepath.Join(bundle, "MANIFEST"))
	m2, _ := os.ReadFile(filepath.Join(bundle2, "MANIFEST"))
	if len(m1) == 0 || !bytes.Equal(m1, m2) {
		t.Errorf("two builds differ:\n%s\n%s", m1, m2)
	}
	os.WriteFile(filepath.Join(bundle, "runs", "r1", "steps", "01-boot.pcapng"), []byte("x"), 0o644)
	if out, code := runCmd(t, newDatasetCmd(a), "verify", bundle); code != exitError || !strings.Contains(out, "runs/r1/steps/01-boot.pcapng") {
		t.Errorf("verify after tampering: %d %s", code, out)
	}

	// diff the bundled runs: r2 contacts a new third party over plain HTTP.
	ra, rb := filepath.Join(bundle, "runs", "r1"), filepath.Join(bundle, "runs", "r2")
	out, code = runCmd(t, newDiffCmd(a), ra, rb, "--format", "json")
	if code != 0 || !strings.Contains(out, `"tracker.example.net"`) {
		t.Fatalf("diff: %d %s", code, out)
	}
	if out, code := runCmd(t, newDiffCmd(a), ra, rb, "--fail-on", "new-third-party,new-plain-http"); code != exitExpectation || !strings.Contains(out, "new-third-party (1)") {
		t.Errorf("diff --fail-on: code %d, want %d: %s", code, exitExpectation, out)
	}
	if _, code := runCmd(t, newDiffCmd(a), "--a", rb, "--b", rb, "--fail-on", "new-third-party"); code != 0 {
		t.Errorf("diff of a run with itself fails: %d", code)
	}
	if _, code := runCmd(t, newDiffCmd(a), ra, rb, "--fail-on", "nonsense"); code != exitUsage {
		t.Errorf("unknown --fail-on: code %d", code)
	}
	rules, code := runCmd(t, newDiffCmd(a), "--show-rules")
	if code != 0 {
		t.Fatal(rules)
	}
	if rs, err := diff.ParseRules(strings.NewReader(rules), "shown"); err != nil || len(rs) != len(diff.MustDefaultRules()) {
		t.Errorf("--show-rules output does not read back: %v", err)
	}
	// A rules file replaces the defaults.
	rf := filepath.Join(root, "rules.txt")
	os.WriteFile(rf, []byte("^tracker\\. t.\n"), 0o644)
	if out, _ := runCmd(t, newDiffCmd(a), ra, rb, "--normalize", rf, "--format", "json"); !strings.Contains(out, `"t.example.net"`) {
		t.Errorf("--normalize not applied: %s", out)
	}
}

func TestImageFetch(t *testing.T) {
	data := bytes.Repeat([]byte("firstboot image "), 10000)
	sum := sha256.Sum256(data)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.ServeContent(w, r, "img.raw", testModTime, bytes.NewReader(data))
	}))
	t.Cleanup(srv.Close)
	a := testApp(t)
	var out bytes.Buffer
	if err := imageFetch(context.Background(), a, srv.URL+"/images/img.raw", hex.EncodeToString(sum[:]), "", &out); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(filepath.Join(a.cfg.ImageCache, "img.raw"))
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("image: %v", err)
	}
	err = imageFetch(context.Background(), a, srv.URL+"/images/img.raw", strings.Repeat("0", 64), filepath.Join(t.TempDir(), "x"), &out)
	if err == nil || exitCodeQuiet(context.Background(), err) != exitError || !strings.Contains(err.Error(), "sha256 mismatch") {
		t.Errorf("mismatch: %v", err)
	}
	if err := imageFetch(context.Background(), a, "ftp://x/y", strings.Repeat("0", 64), "", &out); exitCodeQuiet(context.Background(), err) != exitUsage {
		t.Errorf("bad URL: %v", err)
	}
}

var testModTime = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

func TestPublishCommand(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "MANIFEST"), []byte("m\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "README.md"), []byte("r\n"), 0o644)
	st := publishtest.NewStore()
	srv := httptest.NewServer(st)
	t.Cleanup(srv.Close)
	a := testApp(t)
	out, code := runCmd(t, newPublishCmd(a), dir, "--to", srv.URL+"/x")
	if code != 0 || !strings.Contains(out, "uploaded README.md") || !strings.Contains(out, "2 uploaded, 0 already there") {
		t.Fatalf("publish: %d %s", code, out)
	}
	if b, _ := st.File("/x/MANIFEST"); string(b) != "m\n" {
		t.Errorf("store: MANIFEST is %q", b)
	}
	out, code = runCmd(t, newPublishCmd(a), dir, "--to", srv.URL+"/x")
	if code != 0 || !strings.Contains(out, "0 uploaded, 2 already there") {
		t.Errorf("second publish: %d %s", code, out)
	}
	if _, code := runCmd(t, newPublishCmd(a), dir); code != exitUsage {
		t.Errorf("no --to: code %d", code)
	}
	if _, code := runCmd(t, newPublishCmd(a), dir, "--to", "ftp://x"); code != exitUsage {
		t.Errorf("ftp --to: code %d", code)
	}
	if _, code := runCmd(t, newImageFetchCmd(a), srv.URL+"/x/README.md"); code != exitUsage {
		t.Errorf("image fetch without --sha256: code %d", code)
	}
	s := sha256.Sum256([]byte("r\n"))
	dest := filepath.Join(t.TempDir(), "img")
	if out, code := runCmd(t, newImageFetchCmd(a), srv.URL+"/x/README.md", "--sha256", hex.EncodeToString(s[:]), "--out", dest); code != 0 {
		t.Errorf("image fetch: %d %s", code, out)
	}
}
