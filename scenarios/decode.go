package scenarios

import (
	"errors"
	"fmt"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// PosError is a mistake in a scenario file, at a line and column.
type PosError struct {
	File      string
	Line, Col int
	Msg       string
}

func (e *PosError) Error() string {
	return fmt.Sprintf("%s:%d:%d: %s", e.File, e.Line, e.Col, e.Msg)
}

// decoder walks a YAML node tree into Go values, strictly: unknown keys, wrong
// types, duplicate keys and bad enum values are errors with positions. yaml.v3's
// own KnownFields mode reports lines only and stops at the first mistake; a
// researcher fixing a scenario wants every mistake with its column at once.
type decoder struct {
	file string
	errs []error
	// manual: a scenario for a person at the keyboard, whose name and
	// steps may be left out (LoadOptions.Manual).
	manual bool
}

func (d *decoder) fail(n *yaml.Node, format string, args ...any) {
	d.errs = append(d.errs, &PosError{File: d.file, Line: n.Line, Col: n.Column, Msg: fmt.Sprintf(format, args...)})
}

// nodeDecoder is implemented by types with their own YAML forms.
type nodeDecoder interface {
	decodeNode(d *decoder, n *yaml.Node)
}

var nodeDecoderType = reflect.TypeOf((*nodeDecoder)(nil)).Elem()

func (d *decoder) decode(n *yaml.Node, v reflect.Value, what string) {
	if n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	if v.CanAddr() && v.Addr().Type().Implements(nodeDecoderType) {
		v.Addr().Interface().(nodeDecoder).decodeNode(d, n)
		return
	}
	switch v.Kind() {
	case reflect.Struct:
		d.decodeStruct(n, v, what)
	case reflect.Slice:
		if n.Kind != yaml.SequenceNode {
			d.fail(n, "%s: expected a list, found %s", what, describe(n))
			return
		}
		s := reflect.MakeSlice(v.Type(), len(n.Content), len(n.Content))
		for i, item := range n.Content {
			d.decode(item, s.Index(i), fmt.Sprintf("%s[%d]", what, i))
		}
		v.Set(s)
	case reflect.Pointer:
		p := reflect.New(v.Type().Elem())
		d.decode(n, p.Elem(), what)
		v.Set(p)
	case reflect.String:
		if s, ok := d.scalar(n, what); ok {
			v.SetString(s)
		}
	case reflect.Bool:
		if s, ok := d.scalar(n, what); ok {
			b, err := strconv.ParseBool(s)
			if err != nil {
				d.fail(n, "%s: expected true or false, found %q", what, s)
				return
			}
			v.SetBool(b)
		}
	case reflect.Int, reflect.Int64:
		if s, ok := d.scalar(n, what); ok {
			i, err := strconv.ParseInt(s, 10, 64)
			if err != nil {
				d.fail(n, "%s: expected a whole number, found %q", what, s)
				return
			}
			v.SetInt(i)
		}
	case reflect.Float64:
		if s, ok := d.scalar(n, what); ok {
			f, err := strconv.ParseFloat(s, 64)
			if err != nil {
				d.fail(n, "%s: expected a number, found %q", what, s)
				return
			}
			v.SetFloat(f)
		}
	default:
		panic("scenarios: no decoder for " + v.Type().String())
	}
}

func (d *decoder) scalar(n *yaml.Node, what string) (string, bool) {
	if n.Kind != yaml.ScalarNode {
		d.fail(n, "%s: expected a single value, found %s", what, describe(n))
		return "", false
	}
	return n.Value, true
}

type fieldInfo struct {
	index    int
	name     string
	required bool
	enum     []string
}

func fieldsOf(t reflect.Type) []fieldInfo {
	var fs []fieldInfo
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		name := f.Tag.Get("yaml")
		if name == "" || name == "-" {
			continue
		}
		fi := fieldInfo{index: i, name: name, required: f.Tag.Get("required") == "true"}
		if e, ok := f.Tag.Lookup("enum"); ok {
			fi.enum = strings.Split(e, ",")
		}
		fs = append(fs, fi)
	}
	return fs
}

func (d *decoder) decodeStruct(n *yaml.Node, v reflect.Value, what string) {
	if n.Kind != yaml.MappingNode {
		d.fail(n, "%s: expected a mapping of keys, found %s", what, describe(n))
		return
	}
	fields := fieldsOf(v.Type())
	seen := map[string]bool{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, val := n.Content[i], n.Content[i+1]
		var fi *fieldInfo
		for j := range fields {
			if fields[j].name == k.Value {
				fi = &fields[j]
			}
		}
		if fi == nil {
			where := what
			if where == "" {
				where = "the top level"
			}
			d.fail(k, "unknown key %q in %s%s (expected one of: %s)", k.Value, where, suggest(k.Value, names(fields)), strings.Join(names(fields), ", "))
			continue
		}
		if seen[k.Value] {
			d.fail(k, "key %q appears twice in %s", k.Value, what)
			continue
		}
		seen[k.Value] = true
		fv := v.Field(fi.index)
		d.decode(val, fv, joinPath(what, k.Value))
		if fi.enum != nil && fv.Kind() == reflect.String && !contains(fi.enum, fv.String()) {
			d.fail(val, "%s: %q is not one of: %s%s", joinPath(what, k.Value), fv.String(), strings.Join(nonEmpty(fi.enum), ", "), suggest(fv.String(), fi.enum))
		}
	}
	for _, f := range fields {
		if !f.required || seen[f.name] {
			continue
		}
		switch {
		case what == "" && d.manual && (f.name == "name" || f.name == "steps"):
		case what == "" && f.name == "steps":
			d.fail(n, "missing required key \"steps\" (a scenario without steps is for a person at the keyboard: firstboot run --manual or firstboot record)")
		default:
			d.fail(n, "%s: missing required key %q", what, f.name)
		}
	}
}

func joinPath(a, b string) string {
	if a == "" {
		return b
	}
	return a + "." + b
}

func names(fs []fieldInfo) []string {
	out := make([]string, len(fs))
	for i, f := range fs {
		out[i] = f.name
	}
	return out
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func nonEmpty(list []string) []string {
	var out []string
	for _, x := range list {
		if x != "" {
			out = append(out, x)
		}
	}
	return out
}

// Suggest returns ` (did you mean "x"?)` for the closest candidate within a
// small edit distance, or "": the same hint for every file firstboot reads.
func Suggest(got string, candidates []string) string { return suggest(got, candidates) }

// suggest returns ` (did you mean "x"?)` for the closest candidate within a
// small edit distance, or "".
func suggest(got string, candidates []string) string {
	best, bestDist := "", 3
	sorted := append([]string(nil), candidates...)
	sort.Strings(sorted)
	for _, c := range sorted {
		if c == "" {
			continue
		}
		if dist := editDistance(strings.ToLower(got), c); dist < bestDist {
			best, bestDist = c, dist
		}
	}
	if best == "" {
		return ""
	}
	return fmt.Sprintf(" (did you mean %q?)", best)
}

func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		return fmt.Sprintf("%q", n.Value)
	}
	return "nothing"
}

func (t *Duration) decodeNode(d *decoder, n *yaml.Node) {
	s, ok := d.scalar(n, "duration")
	if !ok {
		return
	}
	dur, err := time.ParseDuration(s)
	if err != nil || dur < 0 {
		d.fail(n, "%q is not a duration: write it like 90s, 5m or 1h30m", s)
		return
	}
	*t = Duration(dur)
}

// D returns the duration as a time.Duration.
func (t Duration) D() time.Duration { return time.Duration(t) }

func (t Duration) String() string { return time.Duration(t).String() }

var sizeUnits = []struct {
	suffix string
	mult   int64
}{
	{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"TiB", 1 << 40},
	{"K", 1000}, {"M", 1000 * 1000}, {"G", 1000 * 1000 * 1000}, {"T", 1000 * 1000 * 1000 * 1000},
	{"B", 1},
}

func (s *Size) decodeNode(d *decoder, n *yaml.Node) {
	str, ok := d.scalar(n, "size")
	if !ok {
		return
	}
	v, err := ParseSize(str)
	if err != nil {
		d.fail(n, "%v", err)
		return
	}
	*s = v
}

// ParseSize reads "512MiB", "4GiB", "2G" or a plain byte count.
func ParseSize(str string) (Size, error) {
	t := strings.TrimSpace(str)
	for _, u := range sizeUnits {
		if num, ok := strings.CutSuffix(t, u.suffix); ok {
			f, err := strconv.ParseFloat(strings.TrimSpace(num), 64)
			if err != nil || f < 0 {
				break
			}
			return Size(f * float64(u.mult)), nil
		}
	}
	if i, err := strconv.ParseInt(t, 10, 64); err == nil && i >= 0 {
		return Size(i), nil
	}
	return 0, fmt.Errorf("%q is not a size: write it like 512MiB or 4GiB", str)
}

// MiB returns the size in mebibytes, rounded up.
func (s Size) MiB() int { return int((int64(s) + (1<<20 - 1)) >> 20) }

var errNoDocument = errors.New("the file is empty")
