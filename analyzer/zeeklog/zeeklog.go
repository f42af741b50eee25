// Package zeeklog writes logs in Zeek's ASCII (TSV) format, or as JSON lines
// the way Zeek's JSON writer does, from rows of typed values.
//
// TSV headers carry #separator, #set_separator, #empty_field, #unset_field,
// #path, #open, #fields and #types, and a #close trailer. #open and #close are
// given by the caller (derived from capture time, not the wall clock) so the
// same input always gives the same bytes.
package zeeklog

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"
)

// Column is one log column: Zeek's field name and type ("time", "string",
// "addr", "port", "count", "int", "double", "interval", "bool", "enum",
// "set[string]", "vector[string]", "vector[interval]").
type Column struct {
	Name string
	Type string
}

type kind uint8

const (
	kUnset kind = iota
	kString
	kCount
	kInt
	kDouble // printed with 6 decimals, like Zeek's time and interval
	kBool
	kList
	kFloatList
)

// Value is one field of a row.
type Value struct {
	k  kind
	s  string
	n  int64
	f  float64
	b  bool
	ls []string
	lf []float64
}

// Unset is a field without a value ("-").
func Unset() Value { return Value{} }

// Str is a string (also addr and enum); "" is written as (empty).
func Str(s string) Value { return Value{k: kString, s: s} }

// OptStr is Str, or Unset for "".
func OptStr(s string) Value {
	if s == "" {
		return Unset()
	}
	return Str(s)
}

// Count is an unsigned integer (also port).
func Count(n int64) Value { return Value{k: kCount, n: n} }

// Int is a signed integer.
func Int(n int64) Value { return Value{k: kInt, n: n} }

// Time is a timestamp, written as seconds since the epoch with 6 decimals.
func Time(t time.Time) Value {
	if t.IsZero() {
		return Unset()
	}
	return Value{k: kDouble, f: float64(t.UnixNano()) / 1e9, n: t.UnixNano(), b: true}
}

// Interval is a duration in seconds.
func Interval(sec float64) Value { return Value{k: kDouble, f: sec} }

// Double is a floating point number.
func Double(f float64) Value { return Value{k: kDouble, f: f} }

// Bool is T or F.
func Bool(b bool) Value { return Value{k: kBool, b: b} }

// List is a set or vector of strings.
func List(ls []string) Value { return Value{k: kList, ls: ls} }

// Intervals is a vector of intervals.
func Intervals(lf []float64) Value { return Value{k: kFloatList, lf: lf} }

// Writer writes one log.
type Writer struct {
	w    *bufio.Writer
	json bool
	cols []Column
	buf  bytes.Buffer
	line []byte // the row being built: no allocation per row
}

// New starts a log at path (Zeek's #path, e.g. "conn") with the given columns.
// With asJSON, rows are JSON objects, one a line, and there are no headers.
func New(w io.Writer, path string, cols []Column, open time.Time, asJSON bool) (*Writer, error) {
	lw := NewRows(w, cols, asJSON)
	if err := Header(lw.w, path, cols, open, asJSON); err != nil {
		return nil, err
	}
	return lw, nil
}

// NewRows returns a Writer of rows alone, with no header (see Header) and,
// when flushed with Flush, no trailer (see Trailer): rows written before the
// log's #open time is known are assembled into a log later.
func NewRows(w io.Writer, cols []Column, asJSON bool) *Writer {
	return &Writer{w: bufio.NewWriterSize(w, 64<<10), json: asJSON, cols: cols}
}

// Header writes the header lines of a log (nothing for JSON lines).
func Header(w io.Writer, path string, cols []Column, open time.Time, asJSON bool) error {
	if asJSON {
		return nil
	}
	names := make([]string, len(cols))
	types := make([]string, len(cols))
	for i, c := range cols {
		names[i], types[i] = c.Name, c.Type
	}
	_, err := fmt.Fprintf(w, "#separator \\x09\n#set_separator\t,\n#empty_field\t(empty)\n#unset_field\t-\n#path\t%s\n#open\t%s\n#fields\t%s\n#types\t%s\n",
		path, zeekTime(open), strings.Join(names, "\t"), strings.Join(types, "\t"))
	return err
}

// Trailer writes the #close line of a log (nothing for JSON lines).
func Trailer(w io.Writer, closeTS time.Time, asJSON bool) error {
	if asJSON {
		return nil
	}
	_, err := fmt.Fprintf(w, "#close\t%s\n", zeekTime(closeTS))
	return err
}

func zeekTime(t time.Time) string { return t.UTC().Format("2006-01-02-15-04-05") }

// Row writes one row; vals must match the columns.
func (lw *Writer) Row(vals []Value) error {
	if len(vals) != len(lw.cols) {
		return fmt.Errorf("zeeklog: row has %d values for %d columns", len(vals), len(lw.cols))
	}
	if lw.json {
		return lw.jsonRow(vals)
	}
	// The row is built in one buffer and written once: per-field writes into
	// the bufio.Writer were most of the cost of a log.
	b := lw.line[:0]
	for i, v := range vals {
		if i > 0 {
			b = append(b, '\t')
		}
		switch v.k {
		case kUnset:
			b = append(b, '-')
		case kString:
			b = appendEscaped(b, v.s, false)
		case kCount, kInt:
			b = strconv.AppendInt(b, v.n, 10)
		case kDouble:
			b = appendFixed6(b, v)
		case kBool:
			if v.b {
				b = append(b, 'T')
			} else {
				b = append(b, 'F')
			}
		case kList:
			if len(v.ls) == 0 {
				b = append(b, "(empty)"...)
			}
			for j, s := range v.ls {
				if j > 0 {
					b = append(b, ',')
				}
				b = appendEscaped(b, s, true)
			}
		case kFloatList:
			if len(v.lf) == 0 {
				b = append(b, "(empty)"...)
			}
			for j, f := range v.lf {
				if j > 0 {
					b = append(b, ',')
				}
				b = strconv.AppendFloat(b, f, 'f', 6, 64)
			}
		}
	}
	b = append(b, '\n')
	lw.line = b
	_, err := lw.w.Write(b)
	return err
}

// fixed6 prints seconds with 6 decimals; times use their integer nanoseconds so
// large epochs do not lose digits to float rounding.
func fixed6(v Value) string { return string(appendFixed6(nil, v)) }

func appendFixed6(b []byte, v Value) []byte {
	if v.b && v.k == kDouble { // a Time
		ns := v.n
		sec, frac := ns/1e9, ns%1e9
		if frac < 0 {
			sec--
			frac += 1e9
		}
		b = strconv.AppendInt(b, sec, 10)
		us := frac / 1000
		b = append(b, '.', byte('0'+us/100000), byte('0'+us/10000%10), byte('0'+us/1000%10),
			byte('0'+us/100%10), byte('0'+us/10%10), byte('0'+us%10))
		return b
	}
	return strconv.AppendFloat(b, v.f, 'f', 6, 64)
}

func (lw *Writer) jsonRow(vals []Value) error {
	b := &lw.buf
	b.Reset()
	b.WriteByte('{')
	first := true
	for i, v := range vals {
		if v.k == kUnset {
			continue // Zeek's JSON writer leaves unset fields out
		}
		if !first {
			b.WriteByte(',')
		}
		first = false
		jsonString(b, lw.cols[i].Name)
		b.WriteByte(':')
		switch v.k {
		case kString:
			jsonString(b, v.s)
		case kCount, kInt:
			b.WriteString(strconv.FormatInt(v.n, 10))
		case kDouble:
			b.WriteString(fixed6(v))
		case kBool:
			b.WriteString(strconv.FormatBool(v.b))
		case kList:
			b.WriteByte('[')
			for j, s := range v.ls {
				if j > 0 {
					b.WriteByte(',')
				}
				jsonString(b, s)
			}
			b.WriteByte(']')
		case kFloatList:
			b.WriteByte('[')
			for j, f := range v.lf {
				if j > 0 {
					b.WriteByte(',')
				}
				b.WriteString(strconv.FormatFloat(f, 'f', 6, 64))
			}
			b.WriteByte(']')
		}
	}
	b.WriteString("}\n")
	_, err := lw.w.Write(b.Bytes())
	return err
}

func jsonString(b *bytes.Buffer, s string) {
	enc := json.NewEncoder(b)
	enc.SetEscapeHTML(false)
	enc.Encode(s)           // cannot fail for a string
	b.Truncate(b.Len() - 1) // Encode adds a newline
}

// Close writes the #close trailer (TSV) and flushes.
func (lw *Writer) Close(closeTS time.Time) error {
	Trailer(lw.w, closeTS, lw.json) // a write error sticks in lw.w: Flush reports it
	return lw.w.Flush()
}

// Flush writes out buffered rows.
func (lw *Writer) Flush() error { return lw.w.Flush() }

// appendEscaped appends escape(s, inSet) to b.
func appendEscaped(b []byte, s string, inSet bool) []byte {
	switch s {
	case "", "-", "(empty)":
		return append(b, escape(s, inSet)...)
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < 0x20 || c >= 0x7f || c == '\\' || (inSet && c == ',') {
			return append(b, escape(s, inSet)...)
		}
	}
	return append(b, s...)
}

// escape makes s safe for a TSV field as Zeek does: non-printable bytes, the
// backslash and the separators become \xNN; a value that would read as the
// unset or empty marker is escaped too.
func escape(s string, inSet bool) string {
	if s == "" {
		return "(empty)"
	}
	if s == "-" {
		return `\x2d`
	}
	if s == "(empty)" {
		return `\x28empty)`
	}
	clean := true
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < 0x20 || c >= 0x7f || c == '\\' || (inSet && c == ',') {
			clean = false
			break
		}
	}
	if clean {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < 0x20 || c >= 0x7f || c == '\\' || (inSet && c == ',') {
			fmt.Fprintf(&b, `\x%02x`, c)
		} else {
			b.WriteByte(c)
		}
	}
	return b.String()
}
