package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/firstboot/firstboot/results/schema"
	"github.com/firstboot/firstboot/scenarios"
)

const reportScenario = `name: report-test
image:
  builtin: testguest
first_party: [firstboot.test]
steps:
  - name: first-boot
    actions:
      - start
expect:
  - absent: ["*.tencent.com"]
  - step: first-boot
    present: ["news.example.com"]
    max_plain_http_hosts: %d
`

func writeRunDir(t *testing.T, maxPlain string) string {
	t.Helper()
	dir := t.TempDir()
	t0 := time.Date(2026, 11, 23, 9, 30, 0, 0, time.UTC)
	news := schema.Destination{Name: "news.example.com", Party: "third", Protocols: []string{"http"}, Connections: 1, FirstSeen: t0.Add(time.Second)}
	a := schema.Analysis{
		SchemaVersion: schema.Version,
		Summary:       schema.Summary{FirstTS: t0, LastTS: t0.Add(5 * time.Second), Duration: 5},
		Host:          schema.Host{IP: "10.77.0.10"},
		Destinations:  []schema.Destination{news},
		Steps:         []schema.StepView{{Name: "first-boot", Start: t0, End: t0.Add(5 * time.Second), Destinations: []schema.Destination{news}}},
		HTTP:          []schema.HTTP{{ConnID: schema.ConnID{TS: t0.Add(time.Second)}, Host: "news.example.com", Method: "GET", URI: "/", Step: "first-boot"}},
	}
	data, err := json.Marshal(a)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "analysis.json"), data, 0o644); err != nil {
		t.Fatal(err)
	}
	sc := strings.Replace(reportScenario, "%d", maxPlain, 1)
	if err := os.WriteFile(filepath.Join(dir, scenarioCopy), []byte(sc), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

func runReport(t *testing.T, args ...string) (string, error) {
	t.Helper()
	cmd := newReportCmd(&app{})
	var out bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(&out)
	cmd.SetArgs(args)
	err := cmd.ExecuteContext(context.Background())
	return out.String(), err
}

func TestReportCommand(t *testing.T) {
	for _, tc := range []struct {
		name     string
		maxPlain string
		failed   bool
	}{
		{"all met", "1", false},
		{"plain http over the limit", "0", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := writeRunDir(t, tc.maxPlain)
			out, err := runReport(t, dir)
			if got := errors.Is(err, errExpectationFailed); got != tc.failed {
				t.Fatalf("error %v (expectation failed: %v, want %v)\n%s", err, got, tc.failed, out)
			}
			if tc.failed && exitCode(context.Background(), err) != exitExpectation {
				t.Errorf("exit code %d, want %d", exitCode(context.Background(), err), exitExpectation)
			}
			for _, f := range []string{"report.md", "report.html"} {
				data, err := os.ReadFile(filepath.Join(dir, f))
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Contains(data, []byte("news.example.com")) {
					t.Errorf("%s does not show the destination", f)
				}
			}
			if tc.failed && !strings.Contains(out, "NOT MET #2 at most 0 plain-HTTP hosts (step first-boot)") {
				t.Errorf("output does not name the failed check:\n%s", out)
			}
		})
	}
}

func TestReportCommandBadInput(t *testing.T) {
	var ue usageError
	if _, err := runReport(t, filepath.Join(t.TempDir(), "missing")); !errors.As(err, &ue) {
		t.Errorf("missing run directory: %v, want a usage error", err)
	}
	dir := writeRunDir(t, "1")
	if err := os.WriteFile(filepath.Join(dir, scenarioCopy), []byte("name: x\nbogus: 1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := runReport(t, dir); !errors.As(err, &ue) {
		t.Errorf("bad scenario: %v, want a usage error", err)
	}
}

// TestWriteRunReport is what `firstboot run` calls after its analysis.
func TestWriteRunReport(t *testing.T) {
	dir := writeRunDir(t, "0")
	var out bytes.Buffer
	if _, _, err := writeRunReport(dir, nil, &out); err != nil {
		t.Fatalf("without a scenario nothing can fail: %v", err)
	}
	if !strings.Contains(out.String(), "no scenario file, none checked") {
		t.Errorf("output: %s", out.String())
	}
	s, err := scenarios.Load(filepath.Join(dir, scenarioCopy))
	if err != nil {
		t.Fatal(err)
	}
	if met, failed, err := writeRunReport(dir, s, &out); err != nil || failed != 1 || met+failed == 0 {
		t.Errorf("with max_plain_http_hosts 0 and one plain-HTTP host: %d met, %d failed, %v; want one failed", met, failed, err)
	}
	md, err := os.ReadFile(filepath.Join(dir, "report.md"))
	if err != nil || !strings.Contains(string(md), "NOT MET") {
		t.Errorf("report.md does not show the failed check (%v)", err)
	}
}
