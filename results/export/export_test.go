package export

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/firstboot/firstboot/analyzer"
	"github.com/firstboot/firstboot/internal/duckdbtest"
	"github.com/firstboot/firstboot/results/dataset/testcapture"
	"github.com/firstboot/firstboot/results/manifest"
	"github.com/firstboot/firstboot/results/schema"
)

// analysedRun writes a run of real (gopacket-built) traffic, analysed, as a
// campaign's job.
func analysedRun(t *testing.T, dir, id string, rep int, names ...string) *schema.Analysis {
	t.Helper()
	m, _, err := testcapture.Write(dir, testcapture.Config{RunID: id, Names: names})
	if err != nil {
		t.Fatal(err)
	}
	m.Scenario.Name, m.Scenario.OS.Release = "s", "7"
	m.Campaign = &manifest.Campaign{Name: "c", Instance: "e1", Job: fmt.Sprintf("s@eu-1/r%d", rep), Repetition: rep, Label: "eu-1", Attempt: 1}
	if err := manifest.Write(dir, m); err != nil {
		t.Fatal(err)
	}
	var steps []analyzer.Step
	for _, s := range m.Steps() {
		steps = append(steps, analyzer.Step{Name: s.Name, Start: s.Start, End: s.End})
	}
	a, err := analyzer.AnalyzeFile(context.Background(), filepath.Join(dir, m.Capture.File), analyzer.Options{Steps: steps})
	if err != nil {
		t.Fatal(err)
	}
	if err := analyzer.WriteOutputs(dir, a, "tsv"); err != nil {
		t.Fatal(err)
	}
	return a
}

// TestExportReadByDuckDB exports two analysed runs and reads the tables back
// with DuckDB: every table has each run's records, with the run's columns,
// and the values agree with analysis.json. A second export is byte-identical.
func TestExportReadByDuckDB(t *testing.T) {
	root := t.TempDir()
	a1 := analysedRun(t, filepath.Join(root, "exec", "runs", "r1"), "r1", 1, "example.org")
	a2 := analysedRun(t, filepath.Join(root, "exec", "runs", "r2"), "r2", 2, "example.org", "tracker.example.net")
	runs, err := FindRuns([]string{filepath.Join(root, "exec")})
	if err != nil || len(runs) != 2 {
		t.Fatalf("FindRuns: %v %v", runs, err)
	}
	out := filepath.Join(root, "out")
	res, err := Write(context.Background(), runs, out)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]int{}
	for _, a := range []*schema.Analysis{a1, a2} {
		want["conns"] += len(a.Conns)
		want["dns"] += len(a.DNS)
		want["tls"] += len(a.TLS)
		want["http"] += len(a.HTTP)
		want["steps"] += len(a.Steps)
		want["destinations"] += len(a.Destinations)
		for _, s := range a.Steps {
			want["destinations"] += len(s.Destinations)
		}
	}
	var counts []string
	for _, table := range Tables {
		// This traffic has no TLS (the campaign test exports real test
		// guest runs, which do); every other table must have rows.
		if want[table] == 0 && table != "tls" {
			t.Errorf("the test traffic has no %s records: the test would prove nothing", table)
		}
		counts = append(counts, fmt.Sprintf("(SELECT count(*) FROM '%s/%s.parquet') AS %s", out, table, table))
	}
	got := duckdbtest.Query(t, "SELECT "+strings.Join(counts, ", "))[0]
	for _, table := range Tables {
		if n := duckdbtest.Int(t, got[table]); n != int64(want[table]) || res.Rows[table] != want[table] {
			t.Errorf("%s: DuckDB reads %d rows, export says %d; analysis.json has %d", table, n, res.Rows[table], want[table])
		}
	}
	// Every record, by run and uid, against analysis.json.
	conns := map[string]map[string]any{}
	for _, r := range duckdbtest.Query(t, fmt.Sprintf(`SELECT run, uid, step, name, resp_p, epoch_us(ts) AS us, orig_ip_bytes + resp_ip_bytes AS b,
		scenario, os_release, repetition, host_label, job, campaign FROM '%s/conns.parquet'`, out)) {
		conns[r["run"].(string)+" "+r["uid"].(string)] = r
	}
	dns := map[string]map[string]any{}
	for _, r := range duckdbtest.Query(t, fmt.Sprintf(`SELECT run, uid, query, answers FROM '%s/dns.parquet'`, out)) {
		dns[fmt.Sprint(r["run"], " ", r["uid"], " ", r["query"])] = r
	}
	dests := map[string]map[string]any{}
	for _, r := range duckdbtest.Query(t, fmt.Sprintf(`SELECT run, step, name, connections, bytes_up + bytes_down AS b FROM '%s/destinations.parquet'`, out)) {
		dests[fmt.Sprint(r["run"], " ", r["step"], " ", r["name"])] = r
	}
	for i, a := range []*schema.Analysis{a1, a2} {
		run := fmt.Sprintf("r%d", i+1)
		for _, c := range a.Conns {
			r := conns[run+" "+c.UID]
			if r == nil || r["step"] != c.Step || r["name"] != c.Name || duckdbtest.Int(t, r["resp_p"]) != int64(c.RespP) ||
				duckdbtest.Int(t, r["us"]) != c.TS.UnixMicro() || duckdbtest.Int(t, r["b"]) != c.OrigIPBytes+c.RespIPBytes {
				t.Errorf("%s conn %s: %v; analysis.json: %+v", run, c.UID, r, c)
				continue
			}
			if r["scenario"] != "s" || r["os_release"] != "7" || duckdbtest.Int(t, r["repetition"]) != int64(i+1) ||
				r["host_label"] != "eu-1" || r["job"] != fmt.Sprintf("s@eu-1/r%d", i+1) || r["campaign"] != "c" {
				t.Errorf("%s conn %s: run columns %v", run, c.UID, r)
			}
		}
		for _, d := range a.DNS {
			r := dns[fmt.Sprint(run, " ", d.UID, " ", d.Query)]
			answers, _ := r["answers"].([]any)
			if r == nil || len(answers) != len(d.Answers) || (len(d.Answers) > 0 && answers[0] != d.Answers[0]) {
				t.Errorf("%s dns %s %s: %v; analysis.json: %+v", run, d.UID, d.Query, r, d)
			}
		}
		check := func(step string, ds []schema.Destination) {
			for _, d := range ds {
				r := dests[fmt.Sprint(run, " ", step, " ", d.Name)]
				if r == nil || duckdbtest.Int(t, r["connections"]) != d.Connections || duckdbtest.Int(t, r["b"]) != d.BytesUp+d.BytesDown {
					t.Errorf("%s destination %s (step %q): %v; analysis.json: %d conns %d bytes", run, d.Name, step, r, d.Connections, d.BytesUp+d.BytesDown)
				}
			}
		}
		check("", a.Destinations)
		for _, st := range a.Steps {
			check(st.Name, st.Destinations)
		}
	}
	// The same input gives the same bytes.
	again := filepath.Join(root, "again")
	if _, err := Write(context.Background(), runs, again); err != nil {
		t.Fatal(err)
	}
	for _, table := range Tables {
		x, _ := os.ReadFile(filepath.Join(out, table+".parquet"))
		y, _ := os.ReadFile(filepath.Join(again, table+".parquet"))
		if len(x) == 0 || !bytes.Equal(x, y) {
			t.Errorf("%s.parquet differs between two exports of the same runs", table)
		}
	}
}
