package zeeklog

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"
)

var cols = []Column{{"ts", "time"}, {"s", "string"}, {"n", "count"}, {"d", "interval"}, {"b", "bool"}, {"l", "set[string]"}, {"u", "string"}}

func row() []Value {
	return []Value{Time(time.Unix(1700000000, 123456789)), Str("a\tb\\c,d\x01é"), Count(42), Interval(1.5), Bool(true), List([]string{"x,y", "-", ""}), Unset()}
}

func TestTSV(t *testing.T) {
	var buf bytes.Buffer
	w, err := New(&buf, "test", cols, time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC), false)
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Row(row()); err != nil {
		t.Fatal(err)
	}
	if err := w.Row([]Value{Time(time.Unix(5, 0)), Str(""), Count(0), Interval(0), Bool(false), List(nil), Str("-")}); err != nil {
		t.Fatal(err)
	}
	if err := w.Row([]Value{Unset()}); err == nil {
		t.Error("short row accepted")
	}
	w.Close(time.Date(2026, 1, 2, 3, 4, 6, 0, time.UTC))
	// Expected per Zeek's ASCII writer conventions: \x escapes for tabs,
	// backslashes, control and non-ASCII bytes (and commas inside sets),
	// (empty) for empty strings and containers, - for unset.
	want := "#separator \\x09\n#set_separator\t,\n#empty_field\t(empty)\n#unset_field\t-\n#path\ttest\n#open\t2026-01-02-03-04-05\n" +
		"#fields\tts\ts\tn\td\tb\tl\tu\n#types\ttime\tstring\tcount\tinterval\tbool\tset[string]\tstring\n" +
		"1700000000.123456\ta\\x09b\\x5cc,d\\x01\\xc3\\xa9\t42\t1.500000\tT\tx\\x2cy,\\x2d,(empty)\t-\n" +
		"5.000000\t(empty)\t0\t0.000000\tF\t(empty)\t\\x2d\n" +
		"#close\t2026-01-02-03-04-06\n"
	if got := buf.String(); got != want {
		t.Errorf("got:\n%s\nwant:\n%s", got, want)
	}
}

func TestJSON(t *testing.T) {
	var buf bytes.Buffer
	w, _ := New(&buf, "test", cols, time.Time{}, true)
	w.Row(row())
	w.Close(time.Time{})
	line := strings.TrimSuffix(buf.String(), "\n")
	var m map[string]any
	if err := json.Unmarshal([]byte(line), &m); err != nil {
		t.Fatalf("%v: %s", err, line)
	}
	if _, ok := m["u"]; ok {
		t.Error("unset field written")
	}
	if m["s"] != "a\tb\\c,d\x01é" || m["n"] != 42.0 || m["b"] != true || m["ts"] != 1700000000.123456 || len(m["l"].([]any)) != 3 {
		t.Errorf("decoded %v", m)
	}
	if strings.Contains(buf.String(), "#") {
		t.Error("headers in JSON output")
	}
}
