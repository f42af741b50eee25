package testnet

import (
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// Tshark runs tshark with args on a capture and returns its standard output;
// it fails the test (with tshark's stderr) when tshark is missing or fails.
func Tshark(t testing.TB, args ...string) string {
	t.Helper()
	if _, err := exec.LookPath("tshark"); err != nil {
		t.Fatalf("tshark not found: install it with scripts/provision.sh (%v)", err)
	}
	cmd := exec.Command("tshark", args...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("tshark %s: %v: %s", strings.Join(args, " "), err, stderr.String())
	}
	return string(out)
}

// FieldValues returns every value tshark shows for field in the capture, one
// entry per occurrence (multi-valued fields split on tshark's comma), in
// packet order, with an optional display filter.
func FieldValues(t testing.TB, path, field, filter string) []string {
	t.Helper()
	args := []string{"-r", path, "-n", "-T", "fields", "-E", "occurrence=a", "-E", "aggregator=,", "-e", field}
	if filter != "" {
		args = append(args, "-Y", filter)
	}
	var vals []string
	for _, line := range strings.Split(Tshark(t, args...), "\n") {
		for _, v := range strings.Split(strings.TrimSpace(line), ",") {
			if v != "" {
				vals = append(vals, v)
			}
		}
	}
	return vals
}

// FieldSet is FieldValues lower-cased, sorted and without duplicates.
func FieldSet(t testing.TB, path, field, filter string) []string {
	t.Helper()
	vals := FieldValues(t, path, field, filter)
	for i, v := range vals {
		vals[i] = strings.ToLower(v)
	}
	slices.Sort(vals)
	return slices.Compact(vals)
}

// FrameFields runs tshark with a display filter and returns, per frame
// number, the requested fields in order ("" where absent; several
// occurrences joined by ',').
func FrameFields(t testing.TB, path, filter string, fields ...string) map[int][]string {
	t.Helper()
	args := []string{"-n", "-r", path, "-Y", filter, "-T", "fields", "-E", "separator=\t", "-E", "occurrence=a", "-E", "aggregator=,", "-e", "frame.number"}
	for _, f := range fields {
		args = append(args, "-e", f)
	}
	res := map[int][]string{}
	for _, line := range strings.Split(strings.TrimRight(Tshark(t, args...), "\n"), "\n") {
		if line == "" {
			continue
		}
		cols := strings.Split(line, "\t")
		num, err := strconv.Atoi(cols[0])
		if err != nil {
			t.Fatalf("testnet: tshark line %q: %v", line, err)
		}
		for len(cols) < len(fields)+1 {
			cols = append(cols, "")
		}
		res[num] = cols[1:]
	}
	return res
}
