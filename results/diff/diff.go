// Package diff compares what two sets of runs said on the network: the same
// OS before and after an update, two releases, two settings. Per scenario
// step (matched by name) and for the whole run it reports destinations that
// are new or gone, connection and byte changes beyond thresholds, protocol
// changes (HTTPS turning into plain HTTP is news), TCP SYN and JA4
// fingerprint changes, and first/third-party changes.
//
// Destination names are compared after normalisation rules (rules.go) that
// fold volatile CDN node names. With several runs per side a destination
// counts as present when seen in at least k of the side's n runs (default: a
// majority), and every destination's stability (seen in x/n) is reported.
package diff

import (
	"fmt"
	"slices"
	"sort"
	"strings"

	"github.com/firstboot/firstboot/results/schema"
)

// Category names a kind of change; `--fail-on` takes these.
type Category string

const (
	NewDestination    Category = "new-destination"
	GoneDestination   Category = "gone-destination"
	NewThirdParty     Category = "new-third-party"
	NewPlainHTTP      Category = "new-plain-http"
	ProtocolChange    Category = "protocol-change"
	FingerprintChange Category = "fingerprint-change"
	VolumeChange      Category = "volume-change"
	PartyChange       Category = "party-change"
)

// Categories lists every category, in report order.
var Categories = []Category{NewDestination, GoneDestination, NewThirdParty, NewPlainHTTP, ProtocolChange, FingerprintChange, VolumeChange, PartyChange}

// ParseCategories parses a comma list of category names.
func ParseCategories(list []string) ([]Category, error) {
	var out []Category
	for _, item := range list {
		for _, s := range strings.Split(item, ",") {
			s = strings.TrimSpace(s)
			if s == "" {
				continue
			}
			c := Category(s)
			if !slices.Contains(Categories, c) {
				names := make([]string, len(Categories))
				for i, c := range Categories {
					names[i] = string(c)
				}
				return nil, fmt.Errorf("unknown change kind %q; known: %s", s, strings.Join(names, ", "))
			}
			if !slices.Contains(out, c) {
				out = append(out, c)
			}
		}
	}
	return out, nil
}

// Options tune a comparison.
type Options struct {
	Rules []Rule
	// RulesSource says where the rules came from ("default" or a file name).
	RulesSource string
	// K is the number of runs of a side a destination must be seen in to count
	// as present; 0 means a majority (more than half). It is capped at n.
	K int
	// ThresholdBytes and ThresholdConns: a change in a destination's bytes
	// (up + down, IP layer) or connections of at least this much is reported;
	// 0 turns that check off.
	ThresholdBytes int64
	ThresholdConns int64
}

// Report is the comparison's result (also the JSON output).
type Report struct {
	A           Side    `json:"a"`
	B           Side    `json:"b"`
	Rules       int     `json:"normalisation_rules"`
	RulesSource string  `json:"normalisation_source"`
	Thresholds  Thresh  `json:"thresholds"`
	Whole       Scope   `json:"whole_run"`
	Steps       []Scope `json:"steps"`
	// Counts counts changes by category, whole run and steps separately.
	Counts     map[Category]int `json:"counts_whole_run"`
	StepCounts map[Category]int `json:"counts_steps"`
	FailOn     []Category       `json:"fail_on,omitempty"`
	FailedOn   []Category       `json:"failed_on,omitempty"`
}

// Thresh echoes the thresholds used.
type Thresh struct {
	Bytes int64 `json:"bytes"`
	Conns int64 `json:"connections"`
}

// Side describes one side's runs.
type Side struct {
	N    int      `json:"n"`
	K    int      `json:"k"`
	Runs []RunRef `json:"runs"`
}

// RunRef names a run.
type RunRef struct {
	ID string `json:"id"`
	OS string `json:"os,omitempty"`
}

// Scope is the comparison of the whole run or one step.
type Scope struct {
	// Name is the step's name; "" for the whole run.
	Name string `json:"name"`
	// RunsA and RunsB count the runs of each side that have this step.
	RunsA int `json:"runs_a"`
	RunsB int `json:"runs_b"`
	KA    int `json:"k_a"`
	KB    int `json:"k_b"`
	// Missing is "a" or "b" when no run of that side has the step; then nothing is compared.
	Missing      string        `json:"missing,omitempty"`
	Destinations []Dest        `json:"destinations"`
	Fingerprints []Fingerprint `json:"fingerprints"`
}

// Dest is one normalised destination in a scope.
type Dest struct {
	Name string `json:"name"`
	// Variants are the raw names that normalised to Name (when any differs from it).
	Variants []string `json:"variants,omitempty"`
	PartyA   string   `json:"party_a,omitempty"`
	PartyB   string   `json:"party_b,omitempty"`
	// SeenA/SeenB count the runs with this destination; PresentA/B apply k.
	SeenA    int  `json:"seen_a"`
	SeenB    int  `json:"seen_b"`
	PresentA bool `json:"present_a"`
	PresentB bool `json:"present_b"`
	// Connections and bytes (IP layer, up + down) are medians over the runs that saw the destination.
	ConnsA     int64    `json:"connections_a"`
	ConnsB     int64    `json:"connections_b"`
	BytesA     int64    `json:"bytes_a"`
	BytesB     int64    `json:"bytes_b"`
	ProtocolsA []string `json:"protocols_a"`
	ProtocolsB []string `json:"protocols_b"`
	// Status is "new", "gone", "changed", "same" or "unstable" (seen, but in fewer than k runs on both sides).
	Status     string     `json:"status"`
	Categories []Category `json:"categories,omitempty"`
	Notes      []string   `json:"notes,omitempty"`
}

// Fingerprint is one TCP SYN line (kind "syn", tcpdump style) or JA4 of the studied machine.
type Fingerprint struct {
	Kind     string `json:"kind"`
	Value    string `json:"value"`
	SeenA    int    `json:"seen_a"`
	SeenB    int    `json:"seen_b"`
	PresentA bool   `json:"present_a"`
	PresentB bool   `json:"present_b"`
	// Status is "new", "gone", "same" or "unstable".
	Status string `json:"status"`
}

// majority is the smallest count that is more than half of n.
func majority(n int) int { return n/2 + 1 }

func kFor(opt, n int) int {
	if n == 0 {
		return 0
	}
	if opt <= 0 {
		return majority(n)
	}
	return min(opt, n)
}

// Compare compares side A (before) with side B (after).
func Compare(a, b []Run, opts Options) *Report {
	r := &Report{
		Rules: len(opts.Rules), RulesSource: opts.RulesSource,
		Thresholds: Thresh{Bytes: opts.ThresholdBytes, Conns: opts.ThresholdConns},
		Counts:     map[Category]int{}, StepCounts: map[Category]int{},
	}
	side := func(runs []Run) Side {
		s := Side{N: len(runs), K: kFor(opts.K, len(runs))}
		for _, x := range runs {
			s.Runs = append(s.Runs, RunRef{ID: x.ID, OS: x.OS})
		}
		return s
	}
	r.A, r.B = side(a), side(b)
	r.Whole = compareScope("", viewsOf(a, "", opts.Rules), viewsOf(b, "", opts.Rules), opts)
	for _, c := range r.Whole.categories() {
		r.Counts[c]++
	}
	for _, name := range stepNames(a, b) {
		s := compareScope(name, viewsOf(a, name, opts.Rules), viewsOf(b, name, opts.Rules), opts)
		for _, c := range s.categories() {
			r.StepCounts[c]++
		}
		r.Steps = append(r.Steps, s)
	}
	return r
}

// Fail records which of the fail-on categories occurred in the whole run.
func (r *Report) Fail(on []Category) []Category {
	r.FailOn = on
	r.FailedOn = nil
	for _, c := range on {
		if r.Counts[c] > 0 {
			r.FailedOn = append(r.FailedOn, c)
		}
	}
	return r.FailedOn
}

func (s *Scope) categories() []Category {
	var out []Category
	for _, d := range s.Destinations {
		out = append(out, d.Categories...)
	}
	for _, f := range s.Fingerprints {
		if f.Status == "new" || f.Status == "gone" {
			out = append(out, FingerprintChange)
		}
	}
	return out
}

// stepNames lists the steps of both sides: B's order first, then A's others.
func stepNames(a, b []Run) []string {
	var out []string
	seen := map[string]bool{}
	for _, side := range [][]Run{b, a} {
		for _, r := range side {
			for _, s := range r.Analysis.Steps {
				if !seen[s.Name] {
					seen[s.Name] = true
					out = append(out, s.Name)
				}
			}
		}
	}
	return out
}

// view is one run's facts in one scope; nil when the run lacks the step.
type view struct {
	dests map[string]*destAgg
	fps   map[[2]string]bool
}

type destAgg struct {
	raw   map[string]bool
	party string
	conns int64
	bytes int64
	proto map[string]bool
}

func viewsOf(runs []Run, step string, rules []Rule) []*view {
	out := make([]*view, len(runs))
	for i, r := range runs {
		out[i] = viewOf(r.Analysis, step, rules)
	}
	return out
}

func viewOf(a *schema.Analysis, step string, rules []Rule) *view {
	dests, fps := a.Destinations, a.Fingerprints
	if step != "" {
		found := false
		for _, s := range a.Steps {
			if s.Name == step {
				dests, fps, found = s.Destinations, s.Fingerprints, true
				break
			}
		}
		if !found {
			return nil
		}
	}
	v := &view{dests: map[string]*destAgg{}, fps: map[[2]string]bool{}}
	for _, d := range dests {
		key := Normalize(rules, d.Name)
		if d.Party == "local" {
			// Router, resolver, DHCP, multicast chatter: one local network,
			// whatever its addresses (they change with the lab and the MAC).
			key = LocalNetwork
		}
		g := v.dests[key]
		if g == nil {
			g = &destAgg{raw: map[string]bool{}, proto: map[string]bool{}, party: d.Party}
			v.dests[key] = g
		}
		g.raw[strings.ToLower(d.Name)] = true
		if d.Party == "third" {
			g.party = "third"
		}
		g.conns += d.Connections
		g.bytes += d.BytesUp + d.BytesDown
		for _, p := range d.Protocols {
			g.proto[p] = true
		}
	}
	host := map[string]bool{}
	if a.Host.IP != "" {
		host[a.Host.IP] = true
		for _, ip := range a.Host.OtherIPs {
			host[ip] = true
		}
	}
	for _, f := range fps {
		if f.Kind == "syn" && (len(host) == 0 || host[f.Host]) && f.Tcpdump != "" {
			v.fps[[2]string{"syn", f.Tcpdump}] = true
		}
	}
	for _, t := range a.TLS {
		if t.JA4 == "" || (len(host) > 0 && !host[t.OrigH]) || (step != "" && t.Step != step) {
			continue
		}
		v.fps[[2]string{"ja4", t.JA4}] = true
	}
	return v
}

func present(vs []*view) int {
	n := 0
	for _, v := range vs {
		if v != nil {
			n++
		}
	}
	return n
}

func compareScope(name string, va, vb []*view, opts Options) Scope {
	s := Scope{Name: name, RunsA: present(va), RunsB: present(vb), Destinations: []Dest{}, Fingerprints: []Fingerprint{}}
	s.KA, s.KB = kFor(opts.K, s.RunsA), kFor(opts.K, s.RunsB)
	switch {
	case s.RunsA == 0:
		s.Missing = "a"
	case s.RunsB == 0:
		s.Missing = "b"
	}
	keys := map[string]bool{}
	for _, vs := range [][]*view{va, vb} {
		for _, v := range vs {
			if v == nil {
				continue
			}
			for k := range v.dests {
				keys[k] = true
			}
		}
	}
	names := make([]string, 0, len(keys))
	for k := range keys {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, key := range names {
		d := Dest{Name: key}
		raw := map[string]bool{}
		var protoA, protoB map[string]int
		d.SeenA, d.ConnsA, d.BytesA, d.PartyA, protoA = collect(va, key, raw)
		d.SeenB, d.ConnsB, d.BytesB, d.PartyB, protoB = collect(vb, key, raw)
		d.PresentA, d.PresentB = s.KA > 0 && d.SeenA >= s.KA, s.KB > 0 && d.SeenB >= s.KB
		d.ProtocolsA, d.ProtocolsB = atLeast(protoA, s.KA), atLeast(protoB, s.KB)
		for v := range raw {
			if v != key {
				d.Variants = append(d.Variants, v)
			}
		}
		if len(d.Variants) > 0 {
			d.Variants = nil
			for v := range raw {
				d.Variants = append(d.Variants, v)
			}
			sort.Strings(d.Variants)
		}
		classify(&d, s.Missing != "", opts)
		s.Destinations = append(s.Destinations, d)
	}
	// Fingerprints.
	fkeys := map[[2]string]bool{}
	for _, vs := range [][]*view{va, vb} {
		for _, v := range vs {
			if v != nil {
				for k := range v.fps {
					fkeys[k] = true
				}
			}
		}
	}
	fl := make([][2]string, 0, len(fkeys))
	for k := range fkeys {
		fl = append(fl, k)
	}
	sort.Slice(fl, func(i, j int) bool {
		if fl[i][0] != fl[j][0] {
			return fl[i][0] > fl[j][0] // syn before ja4
		}
		return fl[i][1] < fl[j][1]
	})
	for _, k := range fl {
		f := Fingerprint{Kind: k[0], Value: k[1]}
		for _, v := range va {
			if v != nil && v.fps[k] {
				f.SeenA++
			}
		}
		for _, v := range vb {
			if v != nil && v.fps[k] {
				f.SeenB++
			}
		}
		f.PresentA, f.PresentB = s.KA > 0 && f.SeenA >= s.KA, s.KB > 0 && f.SeenB >= s.KB
		switch {
		case s.Missing != "":
			f.Status = "only-" + map[string]string{"a": "b", "b": "a"}[s.Missing]
		case f.PresentA && f.PresentB:
			f.Status = "same"
		case f.PresentB:
			f.Status = "new"
		case f.PresentA:
			f.Status = "gone"
		default:
			f.Status = "unstable"
		}
		s.Fingerprints = append(s.Fingerprints, f)
	}
	return s
}

// collect aggregates one destination over a side's runs: how many runs saw
// it, the medians of connections and bytes over those runs, the party, and
// per protocol the number of runs that used it.
func collect(vs []*view, key string, raw map[string]bool) (seen int, conns, bytes int64, party string, protos map[string]int) {
	protos = map[string]int{}
	var cs, bs []int64
	for _, v := range vs {
		if v == nil {
			continue
		}
		g := v.dests[key]
		if g == nil {
			continue
		}
		seen++
		cs = append(cs, g.conns)
		bs = append(bs, g.bytes)
		if party == "" || g.party == "third" {
			party = g.party
		}
		for r := range g.raw {
			raw[r] = true
		}
		for p := range g.proto {
			protos[p]++
		}
	}
	return seen, median(cs), median(bs), party, protos
}

func median(xs []int64) int64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

func atLeast(m map[string]int, k int) []string {
	out := []string{}
	for p, n := range m {
		if k > 0 && n >= k {
			out = append(out, p)
		}
	}
	sort.Strings(out)
	return out
}

func classify(d *Dest, oneSided bool, opts Options) {
	add := func(c Category, note string) {
		if !slices.Contains(d.Categories, c) {
			d.Categories = append(d.Categories, c)
		}
		if note != "" {
			d.Notes = append(d.Notes, note)
		}
	}
	if oneSided {
		d.Status = "unstable"
		if d.PresentA || d.PresentB {
			d.Status = "only-" + map[bool]string{true: "a", false: "b"}[d.PresentA]
		}
		return
	}
	hasA, hasB := slices.Contains(d.ProtocolsA, "http"), slices.Contains(d.ProtocolsB, "http")
	switch {
	case d.PresentA && !d.PresentB:
		d.Status = "gone"
		add(GoneDestination, "")
	case !d.PresentA && d.PresentB:
		d.Status = "new"
		add(NewDestination, "")
		if d.PartyB == "third" {
			add(NewThirdParty, "third party")
		}
		if hasB {
			add(NewPlainHTTP, "plain HTTP")
		}
	case d.PresentA && d.PresentB:
		d.Status = "same"
		added, removed := setDiff(d.ProtocolsB, d.ProtocolsA), setDiff(d.ProtocolsA, d.ProtocolsB)
		if len(added)+len(removed) > 0 {
			d.Status = "changed"
			note := "protocols"
			if len(added) > 0 {
				note += " +" + strings.Join(added, " +")
			}
			if len(removed) > 0 {
				note += " -" + strings.Join(removed, " -")
			}
			add(ProtocolChange, note)
		}
		if hasB && !hasA {
			d.Status = "changed"
			note := "now plain HTTP"
			if slices.Contains(d.ProtocolsA, "ssl") {
				note = "HTTPS -> plain HTTP"
			}
			add(NewPlainHTTP, note)
		}
		if opts.ThresholdConns > 0 && abs(d.ConnsB-d.ConnsA) >= opts.ThresholdConns {
			d.Status = "changed"
			add(VolumeChange, fmt.Sprintf("connections %d -> %d", d.ConnsA, d.ConnsB))
		}
		if opts.ThresholdBytes > 0 && abs(d.BytesB-d.BytesA) >= opts.ThresholdBytes {
			d.Status = "changed"
			add(VolumeChange, fmt.Sprintf("bytes %d -> %d", d.BytesA, d.BytesB))
		}
		if d.PartyA != d.PartyB && d.PartyA != "" && d.PartyB != "" {
			d.Status = "changed"
			add(PartyChange, fmt.Sprintf("party %s -> %s", d.PartyA, d.PartyB))
		}
	default:
		d.Status = "unstable"
	}
}

func setDiff(a, b []string) []string {
	var out []string
	for _, x := range a {
		if !slices.Contains(b, x) {
			out = append(out, x)
		}
	}
	return out
}

func abs(x int64) int64 {
	if x < 0 {
		return -x
	}
	return x
}
