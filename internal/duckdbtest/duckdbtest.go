// Package duckdbtest queries Parquet files with DuckDB for tests: an
// independent reader (its own C++ Parquet implementation), run through Node
// from scripts/parquet-reader, which scripts/provision.sh installs.
package duckdbtest

import (
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"testing"

	"github.com/firstboot/firstboot/internal/testenv"
)

// script is scripts/parquet-reader/query.mjs, found from this file.
func script() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..", "scripts", "parquet-reader", "query.mjs")
}

// Query runs sql and returns the rows (numbers of DuckDB's BIGINT type as
// strings, as JSON cannot hold them all).
func Query(t testing.TB, sql string) []map[string]any {
	t.Helper()
	s := script()
	if _, err := exec.LookPath("node"); err != nil {
		testenv.Missing(t, "node is not installed: run scripts/provision.sh")
	}
	if _, err := os.Stat(filepath.Join(filepath.Dir(s), "node_modules", "@duckdb", "node-api")); err != nil {
		testenv.Missing(t, "DuckDB for node is not installed in scripts/parquet-reader: run scripts/provision.sh")
	}
	out, err := exec.Command("node", s, sql).Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			t.Fatalf("duckdb %q: %v\n%s", sql, err, ee.Stderr)
		}
		t.Fatalf("duckdb %q: %v", sql, err)
	}
	var rows []map[string]any
	if err := json.Unmarshal(out, &rows); err != nil {
		t.Fatalf("duckdb output: %v\n%s", err, out)
	}
	return rows
}

// Int reads a number DuckDB returned.
func Int(t testing.TB, v any) int64 {
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
