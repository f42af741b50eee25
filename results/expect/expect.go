// Package expect checks a scenario's regression expectations against an
// analysis: which names must be absent or present, how many hosts may be
// spoken to in plain HTTP, which third parties are allowed, and which TCP SYN
// and TLS (JA4) fingerprints the machine must show. Every result carries the
// evidence a researcher needs to see why it failed (or held).
//
// The package does not import scenarios (which pulls in the lab): Expect has
// the same fields as scenarios.Expect, so a scenarios.Expect converts to it
// with a plain type conversion, expect.Expect(e).
package expect

import (
	"fmt"
	"path"
	"sort"
	"strings"

	"github.com/firstboot/firstboot/results/schema"
)

// Expect is one expectation; see scenarios.Expect, whose fields it mirrors
// (field for field, so the two convert into each other).
type Expect struct {
	// Step limits the expectation to one step; "" means the whole run.
	Step string
	// Absent lists destination name patterns that must not appear.
	Absent []string
	// Present lists destination name patterns that must appear.
	Present []string
	// MaxPlainHTTP bounds the number of distinct hosts sent plain HTTP requests.
	MaxPlainHTTP *int
	// ThirdParty lists the only third-party destination patterns allowed.
	ThirdParty []string
	// SYN is a TCP SYN fingerprint line (tcpdump form or p0f form) the machine must show.
	SYN string
	// JA4 lists the JA4 fingerprints (patterns) the machine's TLS clients may show.
	JA4 []string
}

// Kinds of Result.
const (
	KindAbsent     = "absent"
	KindPresent    = "present"
	KindPlainHTTP  = "max_plain_http_hosts"
	KindThirdParty = "third_party_allowed"
	KindSYN        = "syn"
	KindJA4        = "ja4"
	// KindStep is the result of an expectation whose step is not in the analysis.
	KindStep = "step"
)

// Result is the outcome of one check. An Expect with several fields set gives
// several results: one per absent or present pattern, one for each other field.
type Result struct {
	// Index is the 1-based position of the expectation in the scenario's list.
	Index int `json:"index"`
	// Step is the step checked, "" for the whole run.
	Step string `json:"step,omitempty"`
	// Kind is one of the Kind constants.
	Kind string `json:"kind"`
	// Rule restates the check in words, e.g. "absent *.tencent.com".
	Rule string `json:"rule"`
	// Met is true when the analysis satisfies the check.
	Met bool `json:"met"`
	// Evidence lists what was found, one line each: the destinations that
	// matched an absent pattern, the plain-HTTP hosts, the third parties not
	// allowed, the fingerprints actually seen.
	Evidence []string `json:"evidence"`
}

// Failed reports whether any result is not met.
func Failed(rs []Result) bool {
	for _, r := range rs {
		if !r.Met {
			return true
		}
	}
	return false
}

// Count returns the number of met and unmet results.
func Count(rs []Result) (met, failed int) {
	for _, r := range rs {
		if r.Met {
			met++
		} else {
			failed++
		}
	}
	return met, failed
}

// scope is the part of an analysis one expectation looks at.
type scope struct {
	dests []schema.Destination
	http  []schema.HTTP
	tls   []schema.TLS
	fps   []schema.Fingerprint
	host  map[string]bool // the machine's addresses; empty when unknown
}

// Evaluate checks every expectation against a and returns the results in
// expectation order. It never fails: a bad pattern or an unknown step is a
// result that is not met, with the reason as evidence.
func Evaluate(exps []Expect, a *schema.Analysis) []Result {
	var out []Result
	for i, e := range exps {
		sc, err := scopeOf(a, e.Step)
		if err != "" {
			out = append(out, Result{Index: i + 1, Step: e.Step, Kind: KindStep, Rule: "step " + e.Step + " is in the analysis", Evidence: []string{err}})
			continue
		}
		add := func(r Result) {
			r.Index, r.Step = i+1, e.Step
			out = append(out, r)
		}
		for _, p := range e.Absent {
			add(absent(sc, p))
		}
		for _, p := range e.Present {
			add(present(sc, p))
		}
		if e.MaxPlainHTTP != nil {
			add(plainHTTP(sc, *e.MaxPlainHTTP))
		}
		if e.ThirdParty != nil {
			add(thirdParty(sc, e.ThirdParty))
		}
		if e.SYN != "" {
			add(syn(sc, e.SYN))
		}
		if e.JA4 != nil {
			add(ja4(sc, e.JA4))
		}
	}
	return out
}

func scopeOf(a *schema.Analysis, step string) (scope, string) {
	sc := scope{host: map[string]bool{}}
	if a.Host.IP != "" {
		sc.host[a.Host.IP] = true
	}
	for _, ip := range a.Host.OtherIPs {
		sc.host[ip] = true
	}
	if step == "" {
		sc.dests, sc.http, sc.tls, sc.fps = a.Destinations, a.HTTP, a.TLS, a.Fingerprints
		return sc, ""
	}
	found := false
	for _, v := range a.Steps {
		if v.Name == step {
			sc.dests, sc.fps, found = v.Destinations, v.Fingerprints, true
			break
		}
	}
	if !found {
		var names []string
		for _, v := range a.Steps {
			names = append(names, v.Name)
		}
		if len(names) == 0 {
			return sc, fmt.Sprintf("the analysis has no steps, so step %q cannot be checked (analyse with the run's manifest)", step)
		}
		return sc, fmt.Sprintf("step %q is not in the analysis (steps: %s); did it run?", step, strings.Join(names, ", "))
	}
	for _, h := range a.HTTP {
		if h.Step == step {
			sc.http = append(sc.http, h)
		}
	}
	for _, t := range a.TLS {
		if t.Step == step {
			sc.tls = append(sc.tls, t)
		}
	}
	return sc, ""
}

// fromMachine reports whether addr is the studied machine (every address
// counts when the machine is unknown).
func (sc scope) fromMachine(addr string) bool { return len(sc.host) == 0 || sc.host[addr] }

// match is a case-insensitive shell pattern match (path.Match: * matches any
// run of characters, dots included, since names hold no slash).
func match(pattern, name string) (bool, error) {
	ok, err := path.Match(strings.ToLower(pattern), strings.ToLower(name))
	if err != nil {
		return false, fmt.Errorf("bad pattern %q: %w", pattern, err)
	}
	return ok, nil
}

func describeDest(d schema.Destination) string {
	s := fmt.Sprintf("%s (%s party, %d connection%s", d.Name, d.Party, d.Connections, plural(d.Connections))
	if len(d.Protocols) > 0 {
		s += ", " + strings.Join(d.Protocols, "/")
	}
	return s + ")"
}

func plural(n int64) string {
	if n == 1 {
		return ""
	}
	return "s"
}

func absent(sc scope, p string) Result {
	r := Result{Kind: KindAbsent, Rule: "absent " + p, Met: true}
	for _, d := range sc.dests {
		ok, err := match(p, d.Name)
		if err != nil {
			return Result{Kind: KindAbsent, Rule: r.Rule, Evidence: []string{err.Error()}}
		}
		if ok {
			r.Met = false
			r.Evidence = append(r.Evidence, "seen: "+describeDest(d))
		}
	}
	if r.Met {
		r.Evidence = []string{fmt.Sprintf("no destination matches (of %d)", len(sc.dests))}
	}
	return r
}

func present(sc scope, p string) Result {
	r := Result{Kind: KindPresent, Rule: "present " + p}
	for _, d := range sc.dests {
		ok, err := match(p, d.Name)
		if err != nil {
			return Result{Kind: KindPresent, Rule: r.Rule, Evidence: []string{err.Error()}}
		}
		if ok {
			r.Met = true
			r.Evidence = append(r.Evidence, "seen: "+describeDest(d))
		}
	}
	if !r.Met {
		r.Evidence = []string{fmt.Sprintf("no destination matches (of %d)", len(sc.dests))}
	}
	return r
}

func plainHTTP(sc scope, max int) Result {
	counts := map[string]int{}
	for _, h := range sc.http {
		if h.TLS {
			continue // decrypted from HTTPS: not plain HTTP
		}
		host := h.Host
		if host == "" {
			host = h.RespH
		}
		counts[strings.ToLower(host)]++
	}
	hosts := sortedKeys(counts)
	r := Result{Kind: KindPlainHTTP, Rule: fmt.Sprintf("at most %d plain-HTTP host%s", max, plural(int64(max))), Met: len(hosts) <= max}
	for _, h := range hosts {
		r.Evidence = append(r.Evidence, fmt.Sprintf("plain HTTP: %s (%d request%s)", h, counts[h], plural(int64(counts[h]))))
	}
	if len(hosts) == 0 {
		r.Evidence = []string{"no plain-HTTP requests"}
	}
	return r
}

func thirdParty(sc scope, allowed []string) Result {
	r := Result{Kind: KindThirdParty, Rule: "third parties only " + strings.Join(allowed, ", "), Met: true}
	if len(allowed) == 0 {
		r.Rule = "no third parties"
	}
	n := 0
	for _, d := range sc.dests {
		// The local network (router, resolver, DHCP, multicast) is no party.
		if d.Party == "first" || d.Party == "local" {
			continue
		}
		n++
		ok := false
		for _, p := range allowed {
			m, err := match(p, d.Name)
			if err != nil {
				return Result{Kind: KindThirdParty, Rule: r.Rule, Evidence: []string{err.Error()}}
			}
			if m {
				ok = true
				break
			}
		}
		if !ok {
			r.Met = false
			line := "not allowed: " + describeDest(d)
			if d.Party != "third" {
				line += " — party unknown: give the scenario's first_party domains"
			}
			r.Evidence = append(r.Evidence, line)
		}
	}
	if r.Met {
		r.Evidence = []string{fmt.Sprintf("all %d third-party destination%s allowed", n, plural(int64(n)))}
	}
	return r
}

// normalize collapses runs of white space so a line copied from a report
// compares equal however it was wrapped.
func normalize(s string) string { return strings.Join(strings.Fields(s), " ") }

func syn(sc scope, want string) Result {
	r := Result{Kind: KindSYN, Rule: "TCP SYN " + want}
	w := normalize(want)
	for _, f := range sc.fps {
		if f.Kind != "syn" || !sc.fromMachine(f.Host) {
			continue
		}
		if normalize(f.Tcpdump) == w || normalize(f.P0f) == w {
			r.Met = true
		}
		r.Evidence = append(r.Evidence, fmt.Sprintf("seen from %s: %s | p0f %s", f.Host, f.Tcpdump, f.P0f))
	}
	if len(r.Evidence) == 0 {
		r.Evidence = []string{"no TCP SYN from the machine"}
	}
	return r
}

func ja4(sc scope, allowed []string) Result {
	r := Result{Kind: KindJA4, Rule: "JA4 only " + strings.Join(allowed, ", "), Met: true}
	snis := map[string]map[string]bool{}
	for _, t := range sc.tls {
		if t.JA4 == "" || !sc.fromMachine(t.OrigH) {
			continue
		}
		if snis[t.JA4] == nil {
			snis[t.JA4] = map[string]bool{}
		}
		snis[t.JA4][t.ServerName] = true
	}
	for _, fp := range sortedKeys(snis) {
		ok := false
		for _, p := range allowed {
			m, err := match(p, fp)
			if err != nil {
				return Result{Kind: KindJA4, Rule: r.Rule, Evidence: []string{err.Error()}}
			}
			if m {
				ok = true
				break
			}
		}
		verdict := "allowed"
		if !ok {
			verdict, r.Met = "not allowed", false
		}
		names := sortedKeys(snis[fp])
		for i, n := range names {
			if n == "" {
				names[i] = "(no SNI)"
			}
		}
		r.Evidence = append(r.Evidence, fmt.Sprintf("%s: %s (SNI %s)", verdict, fp, strings.Join(names, ", ")))
	}
	if len(snis) == 0 {
		r.Evidence = []string{"no TLS ClientHello from the machine"}
	}
	return r
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
