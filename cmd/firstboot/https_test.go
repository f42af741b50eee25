package main

import (
	"encoding/pem"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/firstboot/firstboot/internal/simuplink"
	"github.com/firstboot/firstboot/results/manifest"
)

// TestRunTrustLabCA runs the test guest made to trust the lab CA
// (scenarios/testguest-https.yaml) and checks what issue 14 promises: the
// report lists its HTTPS requests (HTTP/2 and HTTP/3, paths and user agent)
// under their destinations, tshark decrypts the run's capture with nothing
// but the capture, the run directory has tls-keys.log, and a dataset built
// without --keep-tls-secrets carries no secrets.
func TestRunTrustLabCA(t *testing.T) {
	e := newE2E(t)
	scenario, err := filepath.Abs("../../scenarios/testguest-https.yaml")
	if err != nil {
		t.Fatal(err)
	}
	runs := t.TempDir()
	if out, code := e.run(t, "", "run", scenario, "--runs-dir", runs); code != 0 {
		e.logDaemonLogs(t)
		t.Fatalf("run: exit %d\n%s", code, out)
	}
	dirs, _ := filepath.Glob(filepath.Join(runs, "*-testguest-https-*"))
	if len(dirs) != 1 {
		t.Fatalf("run directories: %v", dirs)
	}
	dir := dirs[0]
	report, err := os.ReadFile(filepath.Join(dir, "report.md"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"TLS and QUIC connections decrypted",
		"#### news.example.com\n",
		"| `GET` | `news.example.com` | `/` | HTTP/2 | `firstboot-testguest/1` | `200` |",
		"#### video.example.com\n",
		"| `GET` | `video.example.com` | `/` | HTTP/3 | `firstboot-testguest/1` | `200` |",
	} {
		if !strings.Contains(string(report), want) {
			t.Errorf("report.md lacks %q", want)
		}
	}
	if keys, err := os.ReadFile(filepath.Join(dir, "tls-keys.log")); err != nil || !strings.Contains(string(keys), "CLIENT_TRAFFIC_SECRET_0 ") {
		t.Errorf("tls-keys.log: %v\n%s", err, keys)
	}
	// tshark, one pass, the capture alone.
	pcap := filepath.Join(dir, "capture.pcapng")
	h2 := tsharkShow(t, pcap, "http2.headers.method", "http2.headers.authority", "http2.headers.path", "http2.headers.user_agent")
	if !strings.Contains(h2, "GET\tnews.example.com\t/\tfirstboot-testguest/1") {
		t.Errorf("tshark did not decrypt the HTTP/2 request to news.example.com:\n%s", h2)
	}
	if h3 := tsharkShow(t, pcap, "http3.frame_type"); !strings.Contains(h3, "1") {
		t.Errorf("tshark saw no HTTP/3 HEADERS frame:\n%s", h3)
	}
	// A dataset leaves the secrets out by default.
	bundle := filepath.Join(t.TempDir(), "bundle")
	if out, code := e.run(t, "", "dataset", "build", dir, "--out", bundle, "--creator", "Test", "--publisher", "Test", "--title", "t"); code != 0 {
		t.Fatalf("dataset build: exit %d\n%s", code, out)
	}
	bundled, _ := filepath.Glob(filepath.Join(bundle, "runs", "*", "capture.pcapng"))
	if len(bundled) != 1 {
		t.Fatalf("bundled captures: %v", bundled)
	}
	if h2 := tsharkShow(t, bundled[0], "http2.headers.path"); strings.TrimSpace(h2) != "" {
		t.Errorf("the bundled capture still decrypts:\n%s", h2)
	}
	if _, err := os.Stat(filepath.Join(filepath.Dir(bundled[0]), "tls-keys.log")); err == nil {
		t.Error("the bundle has tls-keys.log")
	}
	if out, code := e.run(t, "", "dataset", "verify", bundle); code != 0 {
		t.Errorf("dataset verify: exit %d\n%s", code, out)
	}
}

// tsharkShow prints fields of the frames that have the first one.
func tsharkShow(t *testing.T, pcap string, fields ...string) string {
	t.Helper()
	args := []string{"-r", pcap, "-n", "-T", "fields", "-Y", fields[0]}
	for _, f := range fields {
		args = append(args, "-e", f)
	}
	out, err := exec.Command("tshark", args...).Output()
	if err != nil {
		t.Fatalf("tshark %v: %v", args, err)
	}
	return string(out)
}

// TestRoutedInterceptTLS runs the test guest, trusting the lab CA, in routed
// mode against the simulated uplink with network.intercept_tls and
// refuse_quic: its HTTPS request to the uplink's server goes through the
// interceptor (which checked the server against the uplink's own CA), the
// report lists it and shows the interception per destination, and a client
// pinning its server's key is reported as refusing the interception.
func TestRoutedInterceptTLS(t *testing.T) {
	e := newE2E(t)
	u := simuplink.New(t)
	dir := t.TempDir()
	roots := filepath.Join(dir, "uplink-ca.pem")
	if err := os.WriteFile(roots, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: u.CA.Raw}), 0o644); err != nil {
		t.Fatal(err)
	}
	scenario := filepath.Join(dir, "intercept.yaml")
	text := strings.Replace(guestScenario("intercept", "4m", `  - name: browse
    actions:
      - console_send: "fbguest run browse https news.example.com"
      - console_expect: {pattern: "FIRSTBOOT-GUEST done browse", timeout: 90s}
  - name: pinned
    actions:
      - console_send: "fbguest run pin pinned shop.example.net"
      - console_expect: {pattern: "FIRSTBOOT-GUEST done pin", timeout: 90s}
`), "image: {builtin: testguest}", "image: {builtin: testguest, trust_lab_ca: true}\nnetwork: {mode: routed, intercept_tls: true, refuse_quic: true}", 1)
	if err := os.WriteFile(scenario, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	runs := t.TempDir()
	if out, code := e.runIn(t, u.Host.Name, "run", scenario, "--runs-dir", runs, "--intercept-roots", roots); code != 0 {
		e.logDaemonLogs(t)
		t.Fatalf("run: exit %d\n%s", code, out)
	}
	dirs, _ := filepath.Glob(filepath.Join(runs, "*-intercept-*"))
	if len(dirs) != 1 {
		t.Fatalf("run directories: %v", dirs)
	}
	run := dirs[0]
	m, err := manifest.Read(run)
	if err != nil {
		t.Fatal(err)
	}
	if ic := m.Network.Intercept; ic == nil || !ic.RefuseQUIC || ic.Log != manifest.InterceptFile || len(ic.Roots) != 2 {
		t.Errorf("manifest intercept %+v", m.Network.Intercept)
	}
	// The real server saw the request, relayed.
	seen := false
	for _, r := range u.Requests() {
		if r.TLS && r.SNI == "news.example.com" {
			seen = true
		}
	}
	if !seen {
		t.Errorf("the uplink's server saw no HTTPS request for news.example.com: %+v", u.Requests())
	}
	report, err := os.ReadFile(filepath.Join(run, "report.md"))
	if err != nil {
		t.Fatal(err)
	}
	r := string(report)
	for _, want := range []string{
		"### TLS interception",
		"| `news.example.com` | 1 | 0 | 0 |",
		"issued by CN=" + simuplink.CAName,
		"| `shop.example.net` | 0 | 1 | 0 |",
		"refused interception",
		"#### news.example.com\n",
		"| `GET` | `news.example.com` | `/` |",
		"`firstboot-testguest/1`",
	} {
		if !strings.Contains(r, want) {
			t.Errorf("report.md lacks %q", want)
		}
	}
	if t.Failed() {
		log, _ := os.ReadFile(filepath.Join(run, manifest.InterceptFile))
		t.Logf("intercept.jsonl:\n%s\nreport:\n%s", log, r)
	}
	// tshark decrypts the guest's leg from the capture alone.
	if h := tsharkShow(t, filepath.Join(run, "capture.pcapng"), "http2.headers.authority"); !strings.Contains(h, "news.example.com") {
		if h1 := tsharkShow(t, filepath.Join(run, "capture.pcapng"), "http.host"); !strings.Contains(h1, "news.example.com") {
			t.Errorf("tshark did not decrypt the intercepted request:\n%s%s", h, h1)
		}
	}
}
