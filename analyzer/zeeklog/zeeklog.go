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
	"math"
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
	kSafe // a string that needs no escape scan (see Safe)
	kCount
	kInt
	kTime   // printed as seconds with 6 decimals, from integer nanoseconds
	kDouble // printed with 6 decimals, like Zeek's interval
	kBool
	kList
	kFloatList
)

// Value is one field of a row. It is built for every field of every row:
// it is kept small (one int64 holds a count, a time or a double's bits).
type Value struct {
	k  kind
	b  bool
	s  string
	n  int64
	ls []string
	lf []float64
}

// Unset is a field without a value ("-").
func Unset() Value { return Value{} }

// Str is a string (also addr and enum); "" is written as (empty).
func Str(s string) Value { return Value{k: kString, s: s} }

// Safe is a string the caller built from a fixed alphabet (a uid, an
// address, an enum): printable ASCII without a backslash, comma or double
// quote. It is written without the escape scan every other string gets;
// the empty string is still written as (empty).
func Safe(s string) Value { return Value{k: kSafe, s: s} }

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
	return Value{k: kTime, n: t.UnixNano()}
}

// Interval is a duration in seconds.
func Interval(sec float64) Value { return Double(sec) }

// Double is a floating point number.
func Double(f float64) Value { return Value{k: kDouble, n: int64(math.Float64bits(f))} }

// Bool is T or F.
func Bool(b bool) Value { return Value{k: kBool, b: b} }

// List is a set or vector of strings.
func List(ls []string) Value { return Value{k: kList, ls: ls} }

// Intervals is a vector of intervals.
func Intervals(lf []float64) Value { return Value{k: kFloatList, lf: lf} }

// appender is an in-memory buffer with bufio.Writer's AvailableBuffer: a row
// appended to its free space is written without a copy.
type appender interface {
	io.Writer
	AvailableBuffer() []byte
}

// Writer writes one log.
type Writer struct {
	w    appender      // where rows go: bw, or the caller's in-memory buffer
	bw   *bufio.Writer // nil when w is the caller's
	json bool
	cols []Column
	slow bytes.Buffer // JSON strings with escapes, encoded by enc
	enc  *json.Encoder
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
//
// Rows are buffered, unless w is itself a buffer with an AvailableBuffer
// method (bufio.Writer, bytes.Buffer): rows are then appended straight into it.
func NewRows(w io.Writer, cols []Column, asJSON bool) *Writer {
	lw := &Writer{json: asJSON, cols: cols}
	if a, ok := w.(appender); ok {
		lw.w = a
	} else {
		lw.bw = bufio.NewWriterSize(w, 64<<10)
		lw.w = lw.bw
	}
	if asJSON {
		lw.enc = json.NewEncoder(&lw.slow)
		lw.enc.SetEscapeHTML(false)
	}
	return lw
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
	// The row is appended to the free space of the buffer and written once.
	if lw.bw != nil && lw.bw.Available() < 4<<10 {
		// Room for a row: appending to little room would allocate.
		if err := lw.bw.Flush(); err != nil {
			return err
		}
	}
	b := lw.w.AvailableBuffer()
	if lw.json {
		b = lw.appendJSONRow(b, vals)
	} else {
		b = appendRow(b, vals)
	}
	_, err := lw.w.Write(b)
	return err
}

func appendRow(b []byte, vals []Value) []byte {
	for i := range vals {
		v := &vals[i] // not a copy: a Value is 80 bytes
		if i > 0 {
			b = append(b, '\t')
		}
		switch v.k {
		case kUnset:
			b = append(b, '-')
		case kString:
			b = appendEscaped(b, v.s, false)
		case kSafe:
			if len(v.s) > 1 && v.s != "(empty)" {
				b = append(b, v.s...)
			} else {
				b = appendEscaped(b, v.s, false) // the markers: "", "-"
			}
		case kCount, kInt:
			b = AppendInt(b, v.n)
		case kTime, kDouble:
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
				b = appendFloat6(b, f)
			}
		}
	}
	return append(b, '\n')
}

// appendFixed6 prints seconds with 6 decimals; times use their integer
// nanoseconds so large epochs do not lose digits to float rounding.
func appendFixed6(b []byte, v *Value) []byte {
	if v.k == kTime {
		ns := v.n
		sec, frac := ns/1e9, ns%1e9
		if frac < 0 {
			sec--
			frac += 1e9
		}
		return appendMicros(AppendInt(b, sec), frac/1000)
	}
	return appendFloat6(b, math.Float64frombits(uint64(v.n)))
}

// appendFloat6 appends f with 6 decimals, as strconv.AppendFloat(b, f, 'f',
// 6, 64) does; whole numbers (TTLs, polls) are done without it.
func appendFloat6(b []byte, f float64) []byte {
	if f >= 0 && f < 1<<53 && f == math.Trunc(f) && !(f == 0 && math.Signbit(f)) {
		return append(AppendInt(b, int64(f)), ".000000"...)
	}
	if out, ok := appendFixed6Fast(b, f); ok {
		return out
	}
	return strconv.AppendFloat(b, f, 'f', 6, 64)
}

func (lw *Writer) appendJSONRow(b []byte, vals []Value) []byte {
	b = append(b, '{')
	first := true
	for i := range vals {
		v := &vals[i]
		if v.k == kUnset {
			continue // Zeek's JSON writer leaves unset fields out
		}
		if !first {
			b = append(b, ',')
		}
		first = false
		b = lw.jsonString(b, lw.cols[i].Name)
		b = append(b, ':')
		switch v.k {
		case kString:
			b = lw.jsonString(b, v.s)
		case kSafe:
			b = AppendQuoted(b, v.s)
		case kCount, kInt:
			b = AppendInt(b, v.n)
		case kTime, kDouble:
			b = appendFixed6(b, v)
		case kBool:
			b = strconv.AppendBool(b, v.b)
		case kList:
			b = append(b, '[')
			for j, s := range v.ls {
				if j > 0 {
					b = append(b, ',')
				}
				b = lw.jsonString(b, s)
			}
			b = append(b, ']')
		case kFloatList:
			b = append(b, '[')
			for j, f := range v.lf {
				if j > 0 {
					b = append(b, ',')
				}
				b = appendFloat6(b, f)
			}
			b = append(b, ']')
		}
	}
	return append(b, "}\n"...)
}

// jsonString appends s as encoding/json (SetEscapeHTML(false)) writes it:
// printable ASCII without quotes or backslashes as it is, anything else
// through encoding/json itself.
func (lw *Writer) jsonString(b []byte, s string) []byte {
	if !Plain(s, '"') {
		lw.slow.Reset()
		lw.enc.Encode(s) // cannot fail for a string
		return append(b, bytes.TrimSuffix(lw.slow.Bytes(), []byte("\n"))...)
	}
	return AppendQuoted(b, s)
}

// AppendQuoted appends s in double quotes: a JSON string, for an s that
// needs no escape (Plain(s, '"'), or built from a fixed alphabet).
func AppendQuoted(b []byte, s string) []byte {
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"')
}

// Close writes the #close trailer (TSV) and flushes.
func (lw *Writer) Close(closeTS time.Time) error {
	err := Trailer(lw.w, closeTS, lw.json)
	if ferr := lw.Flush(); ferr != nil {
		return ferr
	}
	return err
}

// Flush writes out buffered rows.
func (lw *Writer) Flush() error {
	if lw.bw == nil {
		return nil
	}
	return lw.bw.Flush()
}

// appendEscaped appends escape(s, inSet) to b (which, for a string that
// needs no escape, is s itself: no allocation).
func appendEscaped(b []byte, s string, inSet bool) []byte {
	return append(b, escape(s, inSet)...)
}

// Plain reports whether s holds only printable ASCII (0x20–0x7e) other than
// the backslash and c: the strings a log field (c '\\', or ',' in a set) or
// a JSON string (c '"') holds as they are. Every field of every record is
// checked, so it looks at 8 bytes at a time (some twice, overlapping).
func Plain(s string, c byte) bool {
	n := len(s)
	switch {
	case n >= 8:
		for i := 0; i+8 < n; i += 8 {
			if !plain8(load8(s[i:]), c) {
				return false
			}
		}
		return plain8(load8(s[n-8:]), c)
	case n >= 4:
		return plain8(load4(s)|load4(s[n-4:])<<32, c)
	case n > 0:
		const pad = 0x6161616161 << 24 // 'a' where no byte of s is
		return plain8(uint64(s[0])|uint64(s[n/2])<<8|uint64(s[n-1])<<16|pad, c)
	}
	return true
}

func load8(s string) uint64 {
	_ = s[7]
	return uint64(s[0]) | uint64(s[1])<<8 | uint64(s[2])<<16 | uint64(s[3])<<24 |
		uint64(s[4])<<32 | uint64(s[5])<<40 | uint64(s[6])<<48 | uint64(s[7])<<56
}

func load4(s string) uint64 {
	_ = s[3]
	return uint64(s[0]) | uint64(s[1])<<8 | uint64(s[2])<<16 | uint64(s[3])<<24
}

// plain8 is Plain for the 8 bytes of x. Per byte, the top bit of each term
// is set for a byte below 0x20 ((x-0x20)&^x), one equal to the backslash or c
// ((y-1)&^y, y = x^char: zero), and one above 0x7e ((x+1)|x); a borrow or
// carry can set it in a neighbour only when the byte itself matched.
func plain8(x uint64, c byte) bool {
	const ones, tops = 0x0101010101010101, 0x8080808080808080
	bs := x ^ (ones * '\\')
	m := (x-ones*0x20)&^x | (bs-ones)&^bs | (x + ones) | x
	if c != '\\' {
		cc := x ^ (ones * uint64(c))
		m |= (cc - ones) &^ cc
	}
	return m&tops == 0
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
	sep := byte('\\')
	if inSet {
		sep = ','
	}
	if Plain(s, sep) {
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
