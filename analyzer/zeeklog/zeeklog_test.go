package zeeklog

import (
	"bytes"
	"encoding/json"
	"math"
	"strconv"
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
	// The bytes, as encoding/json writes the strings; unset fields left out.
	buf.Reset()
	w, _ = New(&buf, "test", cols, time.Time{}, true)
	w.Row(row())
	w.Row([]Value{Time(time.Unix(5, 0)), Str(""), Count(0), Interval(0), Bool(false), List(nil), Str("-")})
	w.Close(time.Time{})
	want := `{"ts":1700000000.123456,"s":"a\tb\\c,d\u0001é","n":42,"d":1.500000,"b":true,"l":["x,y","-",""]}` + "\n" +
		`{"ts":5.000000,"s":"","n":0,"d":0.000000,"b":false,"l":[],"u":"-"}` + "\n"
	if buf.String() != want {
		t.Errorf("got\n%s\nwant\n%s", buf.String(), want)
	}
}

// TestJSONString: JSON strings are encoding/json's (SetEscapeHTML(false))
// byte for byte, the plain ones written by hand included.
func TestJSONString(t *testing.T) {
	lw := NewRows(&bytes.Buffer{}, cols, true)
	for _, s := range []string{"", "plain", "id.orig_h", "a\"b", `back\slash`, "tab\tnl\n\r", "\x00\x1f\x7f", "é ü",
		"\u2028\u2029", "<&>", "bad\xffutf8", "~ !#$%"} {
		var want bytes.Buffer
		enc := json.NewEncoder(&want)
		enc.SetEscapeHTML(false)
		enc.Encode(s)
		if got := lw.jsonString([]byte("x"), s); string(got) != "x"+strings.TrimSuffix(want.String(), "\n") {
			t.Errorf("%q: got %s, want x%s", s, got, want.String())
		}
	}
}

// plainWriter hides bytes.Buffer's AvailableBuffer: the Writer buffers rows itself.
type plainWriter struct{ b bytes.Buffer }

func (w *plainWriter) Write(p []byte) (int, error) { return w.b.Write(p) }

// TestAppendedRows: rows appended straight into a buffer (bytes.Buffer has
// AvailableBuffer) are the bytes of rows written through the Writer's own
// buffer, many rows past its size, in both formats.
func TestAppendedRows(t *testing.T) {
	for _, asJSON := range []bool{false, true} {
		var direct bytes.Buffer
		var plain plainWriter
		open, closeTS := time.Unix(1700000000, 0), time.Unix(1700000100, 0)
		wd, _ := New(&direct, "test", cols, open, asJSON)
		wp, _ := New(&plain, "test", cols, open, asJSON)
		if wd.bw != nil || wp.bw == nil {
			t.Fatal("bytes.Buffer must be appended to, a plain writer buffered")
		}
		for i := range 5000 {
			r := row()
			r[2] = Count(int64(i))
			r[3] = Interval(float64(i) / 7)
			if i%3 == 0 {
				r[1] = Str(strings.Repeat("long\t", i%50))
			}
			wd.Row(r)
			wp.Row(r)
		}
		if err := wd.Close(closeTS); err != nil {
			t.Fatal(err)
		}
		if err := wp.Close(closeTS); err != nil {
			t.Fatal(err)
		}
		if direct.Len() < 100000 || !bytes.Equal(direct.Bytes(), plain.b.Bytes()) {
			t.Errorf("json %v: %d bytes appended, %d buffered, or they differ", asJSON, direct.Len(), plain.b.Len())
		}
	}
}

// TestPlain: the 8-bytes-at-a-time check agrees with the byte by byte one for
// every byte value at every position of strings of every length up to 24.
func TestPlain(t *testing.T) {
	slow := func(s string, c byte) bool {
		for i := 0; i < len(s); i++ {
			if b := s[i]; b < 0x20 || b >= 0x7f || b == '\\' || b == c {
				return false
			}
		}
		return true
	}
	base := []byte("abcdefghijklmnopqrstuvwxyz")
	for _, c := range []byte{'"', ',', '\\'} {
		for n := 0; n <= 24; n++ {
			if !Plain(string(base[:n]), c) {
				t.Fatalf("%q: not plain", base[:n])
			}
			for pos := 0; pos < n; pos++ {
				for v := 0; v < 256; v++ {
					s := []byte(string(base[:n]))
					s[pos] = byte(v)
					if got, want := Plain(string(s), c), slow(string(s), c); got != want {
						t.Fatalf("Plain(%q, %q) = %v, want %v", s, c, got, want)
					}
				}
			}
		}
	}
}

// TestFloat6: strconv's 6 decimals, whole numbers (done without it) included.
func TestFloat6(t *testing.T) {
	for _, f := range []float64{0, math.Copysign(0, -1), 1, 300, 86400, 1<<53 - 1, 1 << 53, 1e300, -1, -300, 0.5, 1.0 / 3, 1e-7, 2.5e-6, math.NaN(), math.Inf(1)} {
		if got, want := string(appendFloat6(nil, f)), strconv.FormatFloat(f, 'f', 6, 64); got != want {
			t.Errorf("%v: got %s, want %s", f, got, want)
		}
	}
}

// TestTimeField: times are seconds and microseconds (cut, not rounded), also before 1970.
func TestTimeField(t *testing.T) {
	for _, c := range []struct {
		t    time.Time
		want string
	}{
		{time.Unix(1700000000, 123456789), "1700000000.123456"},
		{time.Unix(1700000000, 999), "1700000000.000000"},
		{time.Unix(1700000000, 1000), "1700000000.000001"},
		{time.Unix(5, 0), "5.000000"},
		{time.Unix(0, 1), "0.000000"},
		{time.Unix(-1, 5000), "-1.000005"},
		{time.Unix(-2, 999999999), "-2.999999"},
	} {
		v := Time(c.t)
		if got := string(appendFixed6(nil, &v)); got != c.want {
			t.Errorf("%v: got %s, want %s", c.t, got, c.want)
		}
	}
}
