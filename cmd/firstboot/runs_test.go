package main

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/firstboot/firstboot/results/manifest"
)

// labRun makes a run directory in runs from a real test-guest run: its
// manifest (testdata), its capture (the analyzer's lab capture) and the
// scenario it ran, with the run id, status and scenario given; it returns the
// directory.
func labRun(t *testing.T, runs, id, status, name, scenario string) string {
	t.Helper()
	m, err := manifest.Read("testdata/testguest-manifest.json")
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(runs, id)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	m.RunID, m.Status, m.Scenario.Name = id, status, name
	if status == manifest.StatusIncomplete {
		m.Reason, m.FailedStep = `step "browse": action 2 (console_expect, line 30): timed out`, "browse"
	}
	if err := manifest.Write(dir, m); err != nil {
		t.Fatal(err)
	}
	capture, err := os.ReadFile("../../analyzer/crosscheck/testdata/testguest-tap.pcapng")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "capture.pcapng"), capture, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, scenarioCopy), []byte(scenario), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

// TestRunsAndShow lists run directories and shows runs the way a user
// would, with the built binary: a complete analysed run of the real test
// guest, one of a variant whose expectation fails, an incomplete one not yet
// analysed, a damaged manifest, and a directory that is no run.
func TestRunsAndShow(t *testing.T) {
	bin := buildFirstboot(t)
	runs := t.TempDir()
	data, err := os.ReadFile("../../scenarios/testguest.yaml")
	if err != nil {
		t.Fatal(err)
	}
	scenario := string(data)
	variant := strings.ReplaceAll(strings.Replace(scenario, "name: testguest\n", "name: testguest-variant\n", 1), `present: ["news.example.com"]`, `present: ["shop.example.net"]`)
	good := labRun(t, runs, "20261207T060146Z-testguest-c1e9dd", manifest.StatusComplete, "testguest", scenario)
	bad := labRun(t, runs, "20261207T070000Z-testguest-variant-a1b2c3", manifest.StatusComplete, "testguest-variant", variant)
	labRun(t, runs, "20261207T080000Z-testguest-d4e5f6", manifest.StatusIncomplete, "testguest", scenario)
	for _, d := range []string{good, bad} {
		if out, code := runBinary(t, bin, "", "analyze", d, "--format", "none"); code != 0 {
			t.Fatalf("analyze %s: exit %d\n%s", d, code, out)
		}
	}
	os.MkdirAll(filepath.Join(runs, "20261207T090000Z-broken-000000"), 0o755)
	os.WriteFile(filepath.Join(runs, "20261207T090000Z-broken-000000", manifest.FileName), []byte("{not json"), 0o644)
	os.MkdirAll(filepath.Join(runs, "notes"), 0o755)

	r := func(args ...string) (string, int) {
		return runBinary(t, bin, "", append(args, "--runs-dir", runs)...)
	}
	out, code := r("runs")
	if code != 0 {
		t.Fatalf("runs: exit %d\n%s", code, out)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	start := time.Date(2026, 12, 7, 6, 1, 46, 0, time.UTC).Format("2006-01-02 15:04:05") // the manifest's first timeline entry
	for i, want := range []string{
		`^RUN +SCENARIO +RELEASE +STATUS +START \(UTC\) +DURATION +PACKETS +EXPECTATIONS$`,
		`^20261207T060146Z-testguest-c1e9dd +testguest +1 +complete +` + start + ` +33\.2s +117 +2/2 met$`,
		`^20261207T070000Z-testguest-variant-a1b2c3 +testguest-variant +1 +complete +` + start + ` +33\.2s +117 +1/2 met$`,
		`^20261207T080000Z-testguest-d4e5f6 +testguest +1 +incomplete +` + start + ` +33\.2s +117 +-$`,
		`^20261207T090000Z-broken-000000 +- +- +unreadable +- +- +- +-$`,
	} {
		if i >= len(lines) || !regexp.MustCompile(want).MatchString(lines[i]) {
			t.Errorf("runs line %d does not match %s:\n%s", i+1, want, out)
		}
	}
	if len(lines) != 5 {
		t.Errorf("runs printed %d lines, want a header and 4 runs (the directory without a manifest is no run):\n%s", len(lines), out)
	}
	if out, _ := r("runs", "--status", "incomplete"); strings.Count(out, "\n") != 2 || !strings.Contains(out, "d4e5f6") {
		t.Errorf("runs --status incomplete:\n%s", out)
	}
	if out, _ := r("runs", "--scenario", "testguest-variant"); strings.Count(out, "\n") != 2 || !strings.Contains(out, "a1b2c3") {
		t.Errorf("runs --scenario testguest-variant:\n%s", out)
	}

	// show, by the id's last characters: the clean lab capture has no warning.
	out, code = r("show", "c1e9dd")
	for _, want := range []string{
		"run           " + good + "\n",
		"status        complete\n",
		"steps         first-boot 5.2s, browse 0.6s, update 0.2s, shutdown 1.5s\n",
		"capture       capture.pcapng: 117 packets, 0 dropped, stopped by machine-stopped\n",
		"expectations  2/2 met\n",
		"wireshark     " + filepath.Join(good, "capture.pcapng"),
		"zeek logs     " + filepath.Join(good, "*.log") + " (conn.log, dns.log, ssl.log, http.log, ntp.log, dhcp.log, fingerprint.log)",
		"warnings     none\n",
		"news.example.com ",
	} {
		if code != 0 || !strings.Contains(out, want) {
			t.Errorf("show c1e9dd (exit %d) lacks %q:\n%s", code, want, out)
		}
	}
	if out, _ := r("show", "variant"); !strings.Contains(out, "expectations  1/2 met\n") || !strings.Contains(out, "NOT MET #2 present shop.example.net") {
		t.Errorf("show variant does not say which expectation failed:\n%s", out)
	}
	if out, _ := r("show", "last"); !strings.Contains(out, "broken-000000/manifest.json is not a firstboot manifest") {
		t.Errorf("show last (the damaged manifest):\n%s", out)
	}
	if out, _ := r("show", "d4e5f6"); !strings.Contains(out, "status        incomplete: step \"browse\"") || !strings.Contains(out, "not analysed yet: firstboot analyze") {
		t.Errorf("show of the incomplete run:\n%s", out)
	}
	if out, code := r("show", "testguest-"); code != exitUsage || !strings.Contains(out, "names 3 runs") {
		t.Errorf("an ambiguous part: exit %d\n%s", code, out)
	}
	if out, code := r("show", "nosuchrun"); code != exitUsage || !strings.Contains(out, `no run "nosuchrun"`) {
		t.Errorf("an unknown run: exit %d\n%s", code, out)
	}
}
