package export

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/firstboot/firstboot/analyzer"
	"github.com/firstboot/firstboot/internal/testenv"
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

// duckdb runs a query with DuckDB (scripts/parquet-reader, installed by
// scripts/provision.sh): an independent Parquet implementation.
func duckdb(t *testing.T, sql string) []map[string]any {
	t.Helper()
	script, _ := filepath.Abs("../../scripts/parquet-reader/query.mjs")
	if _, err := exec.LookPath("node"); err != nil {
		testenv.Missing(t, "node is not installed: run scripts/provision.sh")
	}
	if _, err := os.Stat(filepath.Join(filepath.Dir(script), "node_modules", "@duckdb", "node-api")); err != nil {
		testenv.Missing(t, "DuckDB for node is not installed in scripts/parquet-reader: run scripts/provision.sh")
	}
	out, err := exec.Command("node", script, sql).Output()
	if err != nil {
		var ee *exec.ExitError
		if e, ok := err.(*exec.ExitError); ok {
			ee = e
		}
		t.Fatalf("duckdb %q: %v\n%s", sql, err, ee.Stderr)
	}
	var rows []map[string]any
	if err := json.Unmarshal(out, &rows); err != nil {
		t.Fatalf("duckdb output: %v\n%s", err, out)
	}
	return rows
}

func num(t *testing.T, v any) int64 {
	t.Helper()
	switch x := v.(type) {
	case string:
		n, err := strconv.ParseInt(x, 10, 64)
		if err != nil {
			t.Fatalf("not a number: %q", x)
		}
		return n
	case float64:
		return int64(x)
	}
	t.Fatalf("not a number: %#v", v)
	return 0
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
	for _, table := range Tables {
		// This traffic has no TLS (the campaign test exports real test
		// guest runs, which do); every other table must have rows.
		if want[table] == 0 && table != "tls" {
			t.Errorf("the test traffic has no %s records: the test would prove nothing", table)
		}
		rows := duckdb(t, fmt.Sprintf("SELECT count(*) AS n FROM '%s/%s.parquet'", out, table))
		if got := num(t, rows[0]["n"]); got != int64(want[table]) || res.Rows[table] != want[table] {
			t.Errorf("%s: DuckDB reads %d rows, export says %d; analysis.json has %d", table, got, res.Rows[table], want[table])
		}
	}
	for i, a := range []*schema.Analysis{a1, a2} {
		run := fmt.Sprintf("r%d", i+1)
		var ipBytes int64
		for _, c := range a.Conns {
			ipBytes += c.OrigIPBytes + c.RespIPBytes
		}
		rows := duckdb(t, fmt.Sprintf(`SELECT count(*) AS n, sum(orig_ip_bytes + resp_ip_bytes) AS b, min(scenario) AS s, min(os_release) AS rel,
			min(repetition) AS rep, min(host_label) AS label, min(job) AS job, min(campaign) AS c FROM '%s/conns.parquet' WHERE run = '%s'`, out, run))
		r := rows[0]
		if num(t, r["n"]) != int64(len(a.Conns)) || num(t, r["b"]) != ipBytes || r["s"] != "s" || r["rel"] != "7" ||
			num(t, r["rep"]) != int64(i+1) || r["label"] != "eu-1" || r["job"] != fmt.Sprintf("s@eu-1/r%d", i+1) || r["c"] != "c" {
			t.Errorf("%s conns: %v; analysis.json: %d conns, %d IP bytes", run, r, len(a.Conns), ipBytes)
		}
		// Record by record: the first conn, DNS answer list and a timestamp.
		c := a.Conns[0]
		rows = duckdb(t, fmt.Sprintf(`SELECT step, name, resp_p, epoch_us(ts) AS us FROM '%s/conns.parquet' WHERE run = '%s' AND uid = '%s'`, out, run, c.UID))
		if len(rows) != 1 || rows[0]["step"] != c.Step || rows[0]["name"] != c.Name || num(t, rows[0]["resp_p"]) != int64(c.RespP) || num(t, rows[0]["us"]) != c.TS.UnixMicro() {
			t.Errorf("%s conn %s: %v; analysis.json: %+v", run, c.UID, rows, c)
		}
		d := a.DNS[0]
		rows = duckdb(t, fmt.Sprintf(`SELECT query, len(answers) AS n, answers[1] AS first FROM '%s/dns.parquet' WHERE run = '%s' AND uid = '%s' AND query = '%s'`, out, run, d.UID, d.Query))
		if len(rows) == 0 || num(t, rows[0]["n"]) != int64(len(d.Answers)) || (len(d.Answers) > 0 && rows[0]["first"] != d.Answers[0]) {
			t.Errorf("%s dns %s: %v; analysis.json: %+v", run, d.Query, rows, d)
		}
		for _, dst := range a.Destinations {
			rows = duckdb(t, fmt.Sprintf(`SELECT connections AS c, bytes_up + bytes_down AS b FROM '%s/destinations.parquet' WHERE run = '%s' AND step = '' AND name = '%s'`, out, run, dst.Name))
			if len(rows) != 1 || num(t, rows[0]["c"]) != dst.Connections || num(t, rows[0]["b"]) != dst.BytesUp+dst.BytesDown {
				t.Errorf("%s destination %s: %v; analysis.json: %d conns %d bytes", run, dst.Name, rows, dst.Connections, dst.BytesUp+dst.BytesDown)
			}
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
