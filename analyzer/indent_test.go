package analyzer

import (
	"bytes"
	"encoding/json"
	"testing"
)

// TestAppendIndent compares appendIndent with json.Indent on compact JSON
// from encoding/json, including strings with escapes and structural bytes.
func TestAppendIndent(t *testing.T) {
	vals := []any{
		map[string]any{},
		[]any{},
		map[string]any{"a": []any{}, "b": map[string]any{}, "c": []any{1.5, -2e-9, true, false, nil}},
		map[string]any{"k:{[,\"]}": "v\\\",:{}[]\n\t\u00e9\u2028<>&", "n": []any{map[string]any{"x": []any{[]any{}, "y"}}}},
		"top \" string",
		42,
		[]any{"\\", "\\\\", "a\\\"b"},
	}
	for _, v := range vals {
		var raw bytes.Buffer
		enc := json.NewEncoder(&raw)
		enc.SetEscapeHTML(false)
		if err := enc.Encode(v); err != nil {
			t.Fatal(err)
		}
		src := bytes.TrimSuffix(raw.Bytes(), []byte("\n"))
		for _, prefix := range []string{"", "    "} {
			var want bytes.Buffer
			if err := json.Indent(&want, src, prefix, "  "); err != nil {
				t.Fatal(err)
			}
			if got := appendIndent([]byte("x"), src, prefix); string(got[1:]) != want.String() {
				t.Errorf("prefix %q: appendIndent(%s)\n got %s\nwant %s", prefix, src, got[1:], want.Bytes())
			}
		}
	}
}

// FuzzAppendIndent: on any compact JSON encoding/json produces, appendIndent
// equals json.Indent.
func FuzzAppendIndent(f *testing.F) {
	f.Add(`{"a":[1,{"b":"c\"]"}],"d":{}}`)
	f.Add(`["\\",[],{"":null}]`)
	f.Fuzz(func(t *testing.T, in string) {
		var v any
		if json.Unmarshal([]byte(in), &v) != nil {
			return
		}
		var raw bytes.Buffer
		enc := json.NewEncoder(&raw)
		enc.SetEscapeHTML(false)
		if err := enc.Encode(v); err != nil {
			return
		}
		src := bytes.TrimSuffix(raw.Bytes(), []byte("\n"))
		var want bytes.Buffer
		if err := json.Indent(&want, src, "  ", "  "); err != nil {
			t.Fatal(err)
		}
		if got := appendIndent(nil, src, "  "); !bytes.Equal(got, want.Bytes()) {
			t.Fatalf("appendIndent(%s)\n got %s\nwant %s", src, got, want.Bytes())
		}
	})
}
