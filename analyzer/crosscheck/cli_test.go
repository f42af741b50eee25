package crosscheck

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/firstboot/firstboot/results/schema"
)

// buildCLI compiles cmd/firstboot the way `make build` does.
func buildCLI(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "firstboot")
	cmd := exec.Command("go", "build", "-o", bin, "github.com/firstboot/firstboot/cmd/firstboot")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/firstboot: %v\n%s", err, out)
	}
	return bin
}

func runCLI(t *testing.T, bin string, args ...string) (stdout string) {
	t.Helper()
	cmd := exec.Command(bin, args...)
	var so, se bytes.Buffer
	cmd.Stdout, cmd.Stderr = &so, &se
	if err := cmd.Run(); err != nil {
		t.Fatalf("firstboot %s: %v\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), err, so.String(), se.String())
	}
	return so.String()
}

// logCounts maps each log file to the analysis.json list it mirrors.
func logCounts(a *schema.Analysis) map[string]int {
	return map[string]int{
		"conn.log": len(a.Conns), "dns.log": len(a.DNS), "ssl.log": len(a.TLS), "http.log": len(a.HTTP),
		"ntp.log": len(a.NTP), "dhcp.log": len(a.DHCP), "fingerprint.log": len(a.Fingerprints),
	}
}

// TestCLIAnalyze runs the built binary on a generated capture the way a user
// would and checks every output file.
func TestCLIAnalyze(t *testing.T) {
	pcap, gen := generate(t)
	bin := buildCLI(t)
	tsvDir, jsonDir, tableDir := t.TempDir(), t.TempDir(), t.TempDir()

	runCLI(t, bin, "analyze", pcap, "--out", tsvDir)
	raw, err := os.ReadFile(filepath.Join(tsvDir, "analysis.json"))
	if err != nil {
		t.Fatalf("analysis.json: %v", err)
	}
	var a schema.Analysis
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&a); err != nil {
		t.Fatalf("analysis.json does not decode into results/schema: %v", err)
	}
	if a.SchemaVersion != schema.Version || a.Input.File != filepath.Base(pcap) || a.Input.Format != "pcap" {
		t.Errorf("schema_version %q input %+v, want %q and the pcap's name", a.SchemaVersion, a.Input, schema.Version)
	}
	if a.Summary.Packets != gen.Capture.Captured {
		t.Errorf("analysis.json counts %d packets, tcpdump captured %d", a.Summary.Packets, gen.Capture.Captured)
	}

	fieldsOf := map[string][]string{}
	for file, want := range logCounts(&a) {
		t.Run("tsv "+file, func(t *testing.T) {
			fields, rows := readZeekTSV(t, filepath.Join(tsvDir, file))
			fieldsOf[file] = fields
			if len(rows) != want {
				t.Errorf("%s has %d records, analysis.json %d", file, len(rows), want)
			}
			if want == 0 {
				t.Errorf("%s: the generated capture should give records", file)
			}
			if file == "conn.log" {
				i := slices.Index(fields, "uid")
				var got, exp []string
				for _, r := range rows {
					got = append(got, r[i])
				}
				for _, c := range a.Conns {
					exp = append(exp, c.UID)
				}
				if !slices.Equal(got, exp) {
					t.Errorf("conn.log uids differ from analysis.json's, in order")
				}
			}
		})
	}

	runCLI(t, bin, "analyze", pcap, "--out", jsonDir, "--logs", "json")
	for file, want := range logCounts(&a) {
		t.Run("json "+file, func(t *testing.T) {
			data, err := os.ReadFile(filepath.Join(jsonDir, file))
			if err != nil {
				t.Fatal(err)
			}
			lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
			if want == 0 && len(lines) == 1 && lines[0] == "" {
				lines = nil
			}
			if len(lines) != want {
				t.Errorf("%s has %d lines, analysis.json %d records", file, len(lines), want)
			}
			for i, l := range lines {
				var rec map[string]any
				if err := json.Unmarshal([]byte(l), &rec); err != nil {
					t.Fatalf("%s line %d is not a JSON object: %v", file, i+1, err)
				}
				if fields := fieldsOf[file]; fields != nil {
					for k := range rec {
						if !slices.Contains(fields, k) {
							t.Fatalf("%s line %d: key %q is not a column of the TSV log %v", file, i+1, k, fields)
						}
					}
				}
			}
		})
	}

	out := runCLI(t, bin, "analyze", pcap, "--out", tableDir, "--format", "table")
	for _, name := range []string{"deb.debian.org", "connectivity-check.ubuntu.com"} {
		if !strings.Contains(out, name) {
			t.Errorf("--format table output does not mention %s:\n%s", name, out)
		}
	}
	again, err := os.ReadFile(filepath.Join(tableDir, "analysis.json"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(raw, again) {
		t.Errorf("two analyses of the same capture gave different analysis.json bytes")
	}

	t.Run("missing input", func(t *testing.T) {
		missing := filepath.Join(t.TempDir(), "nope.pcap")
		cmd := exec.Command(bin, "analyze", missing, "--out", t.TempDir())
		out, err := cmd.CombinedOutput()
		if err == nil {
			t.Fatalf("analyze of a missing file succeeded:\n%s", out)
		}
		if !strings.Contains(string(out), "nope.pcap") {
			t.Errorf("error does not name the file:\n%s", out)
		}
	})
}

// readZeekTSV checks the header Zeek's ASCII writer produces and returns the
// field names and the data rows (each with exactly one value per field).
func readZeekTSV(t *testing.T, path string) (fields []string, rows [][]string) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("log missing: %v", err)
	}
	lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	if len(lines) < 9 {
		t.Fatalf("%s: %d lines, too short for a Zeek header", path, len(lines))
	}
	wantHead := []string{"#separator \\x09", "#set_separator\t,", "#empty_field\t(empty)", "#unset_field\t-",
		"#path\t" + strings.TrimSuffix(filepath.Base(path), ".log")}
	for i, w := range wantHead {
		if lines[i] != w {
			t.Errorf("%s line %d = %q, want %q", path, i+1, lines[i], w)
		}
	}
	if !strings.HasPrefix(lines[5], "#open\t") {
		t.Errorf("%s line 6 = %q, want #open", path, lines[5])
	}
	fields = strings.Split(strings.TrimPrefix(lines[6], "#fields\t"), "\t")
	types := strings.Split(strings.TrimPrefix(lines[7], "#types\t"), "\t")
	if !strings.HasPrefix(lines[6], "#fields\t") || !strings.HasPrefix(lines[7], "#types\t") || len(fields) != len(types) {
		t.Fatalf("%s: bad #fields/#types lines (%d fields, %d types)", path, len(fields), len(types))
	}
	if !strings.HasPrefix(lines[len(lines)-1], "#close\t") {
		t.Errorf("%s: last line %q, want #close", path, lines[len(lines)-1])
	}
	for i, l := range lines[8 : len(lines)-1] {
		cols := strings.Split(l, "\t")
		if len(cols) != len(fields) {
			t.Fatalf("%s line %d: %d columns, header has %d", path, i+9, len(cols), len(fields))
		}
		rows = append(rows, cols)
	}
	return fields, rows
}
