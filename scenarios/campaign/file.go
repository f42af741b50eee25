// Package campaign runs a study's whole matrix: scenarios (or one scenario's
// variants) × host labels × repetitions, as jobs in River (riverqueue.com), on
// one host with an embedded SQLite queue or on many with PostgreSQL, now or on
// a schedule. A campaign file is YAML, parsed as strictly as a scenario:
// every mistake is reported as file:line:column with what was expected.
package campaign

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/robfig/cron/v3"
	"gopkg.in/yaml.v3"

	rcampaign "github.com/firstboot/firstboot/results/campaign"
	"github.com/firstboot/firstboot/results/diff"
	"github.com/firstboot/firstboot/scenarios"
)

// Spec is a campaign file as written.
type Spec struct {
	Name        string  `yaml:"name" required:"true" doc:"short identifier, used in directory names"`
	Description string  `yaml:"description"`
	Scenarios   []Entry `yaml:"scenarios" required:"true"`
	// Repetitions is how often each scenario runs (on each host label).
	Repetitions int `yaml:"repetitions" doc:"runs of each scenario (default 1)"`
	// Hosts are labels of lab hosts (vantage points): each job runs once on
	// a worker with each label. Empty: any host.
	Hosts  []string `yaml:"hosts"`
	Limits Limits   `yaml:"limits"`
	// Schedule is a cron expression (minute hour day month weekday), or a
	// descriptor: @daily, @hourly, @every 6h.
	Schedule string `yaml:"schedule"`
	// Baseline is what each execution is compared with: a campaign
	// directory, a dataset, run directories (a glob), or "previous".
	Baseline string `yaml:"baseline"`
	// FailOn lists conditions that make the campaign fail (exit 3).
	FailOn []string `yaml:"fail_on"`
	// Publish is a base URL each finished run is uploaded to (firstboot publish).
	Publish string `yaml:"publish"`
}

// Entry is one scenario file, run as it is or once per variant.
type Entry struct {
	Path     string    `yaml:"path" required:"true" doc:"scenario file, relative to the campaign file"`
	Variants []Variant `yaml:"variants" doc:"the scenario once per variant, each with its own name and substituted keys"`
	// Repetitions, when set, replaces the campaign's for this entry.
	Repetitions int `yaml:"repetitions"`
}

// Variant substitutes parts of a scenario: another image or release. The os,
// machine and capture keys given replace the scenario's one by one; image
// replaces the scenario's image whole.
type Variant struct {
	Name    string             `yaml:"name" required:"true"`
	OS      *scenarios.OS      `yaml:"os"`
	Image   *scenarios.Image   `yaml:"image"`
	Machine *scenarios.Machine `yaml:"machine"`
	Capture *scenarios.Capture `yaml:"capture"`
}

// Limits bound what a campaign asks of each host.
type Limits struct {
	// Parallel caps the runs at once on one host; 0: what the host can hold
	// (its CPUs and memory against each scenario's machine).
	Parallel int `yaml:"parallel"`
	// Memory caps the guests' memory at once on one host.
	Memory scenarios.Size `yaml:"memory"`
	// Retries is how often a run that failed for an infrastructure reason is
	// tried again (default 2). Failed expectations are results, never retried.
	Retries *int `yaml:"retries"`
	// RunTimeout bounds one run, set-up to report (default: the scenario's
	// capture window + 10m). A job whose worker died runs again after it.
	RunTimeout scenarios.Duration `yaml:"run_timeout"`
	// Accel kvm sends jobs only to workers where KVM works.
	Accel string `yaml:"accel" enum:",any,kvm"`
}

// FailConditions lists what fail_on accepts: expectation-failed (a run's
// scenario expectation is not met), run-failed (a job ended without a usable
// run: retries exhausted, a missing image, a failed step) and diff's change
// kinds against the baseline.
func FailConditions() []string {
	out := []string{rcampaign.FailExpectation, rcampaign.FailRun}
	for _, c := range diff.Categories {
		out = append(out, string(c))
	}
	return out
}

// BaselinePrevious compares each execution with the campaign's last finished one.
const BaselinePrevious = "previous"

// DefaultRetries is how often an infrastructure failure is retried.
const DefaultRetries = 2

// Campaign is a checked campaign file with its scenarios loaded.
type Campaign struct {
	Spec
	// File is the path it was loaded from; Source its bytes, SHA256 their hash.
	File   string
	Source []byte
	SHA256 string
	// Scenarios are the scenarios to run, in the file's order, variants
	// expanded; their names are unique.
	Scenarios []*scenarios.Scenario
	// Cron is the parsed schedule; nil without one.
	Cron cron.Schedule
	// reps is each scenario's repetitions (its entry's, else the campaign's).
	reps map[string]int
}

// RepetitionsOf is how often the scenario called name runs.
func (c *Campaign) RepetitionsOf(name string) int {
	if n := c.reps[name]; n > 0 {
		return n
	}
	return c.Repetitions
}

// Load reads and checks a campaign file and the scenarios it names.
func Load(path string) (*Campaign, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading campaign: %w", err)
	}
	return Parse(path, data)
}

// nameRE keeps a campaign name usable in directory, queue and tag names.
var nameRE = regexp.MustCompile(`^[a-z0-9]+([_-][a-z0-9]+)*$`)

// Parse checks a campaign given as bytes; name is used in messages and to
// resolve relative paths.
func Parse(name string, data []byte) (*Campaign, error) {
	c := &Campaign{File: name, Source: data}
	top, err := scenarios.DecodeYAML(name, data, &c.Spec)
	if err != nil {
		return nil, err
	}
	p := &checker{file: name, top: top}
	p.check(c)
	if len(p.errs) > 0 {
		return nil, errors.Join(p.errs...)
	}
	sum := sha256.Sum256(data)
	c.SHA256 = hex.EncodeToString(sum[:])
	if c.Repetitions == 0 {
		c.Repetitions = 1
	}
	return c, nil
}

type checker struct {
	file string
	top  *yaml.Node
	errs []error
}

func (p *checker) fail(n *yaml.Node, format string, args ...any) {
	p.errs = append(p.errs, &scenarios.PosError{File: p.file, Line: n.Line, Col: n.Column, Msg: fmt.Sprintf(format, args...)})
}

// at is the value node of a top-level key, or the top node.
func (p *checker) at(key string) *yaml.Node {
	if v := scenarios.ValueOf(p.top, key); v != nil {
		return v
	}
	return p.top
}

func (p *checker) check(c *Campaign) {
	if !nameRE.MatchString(c.Name) || len(c.Name) > 50 {
		p.fail(p.at("name"), "name %q: use up to 50 lower-case letters and digits, '_' or '-' between them (it names the campaign's directory and queue)", c.Name)
	}
	if c.Repetitions < 0 || c.Repetitions > 1000 {
		p.fail(p.at("repetitions"), "repetitions: %d; want 1 to 1000", c.Repetitions)
	}
	for i, e := range c.Spec.Scenarios {
		if e.Repetitions < 0 || e.Repetitions > 1000 {
			p.fail(valueOr(item(p.at("scenarios"), i), "repetitions"), "repetitions: %d; want 1 to 1000", e.Repetitions)
		}
	}
	seenHost := map[string]bool{}
	for i, h := range c.Hosts {
		n := item(p.at("hosts"), i)
		if !labelRE.MatchString(h) {
			p.fail(n, "hosts: label %q: use lower-case letters and digits, '-' between them (a worker is started with --label %s)", h, h)
		}
		if seenHost[h] {
			p.fail(n, "hosts: label %q is listed twice", h)
		}
		seenHost[h] = true
	}
	l := c.Limits
	lim := p.at("limits")
	if l.Parallel < 0 {
		p.fail(valueOr(lim, "parallel"), "limits.parallel: %d; want 1 or more (0 or absent: what the host can hold)", l.Parallel)
	}
	if l.Retries != nil && (*l.Retries < 0 || *l.Retries > 20) {
		p.fail(valueOr(lim, "retries"), "limits.retries: %d; want 0 to 20", *l.Retries)
	}
	if c.Schedule != "" {
		sched, err := cron.ParseStandard(c.Schedule)
		if err != nil {
			p.fail(p.at("schedule"), "schedule %q: %v; write cron's five fields (\"30 3 * * *\" is 03:30 every day) or @daily, @hourly, @every 6h", c.Schedule, err)
		} else {
			c.Cron = sched
		}
	}
	conds := FailConditions()
	for i, f := range c.FailOn {
		if !slices.Contains(conds, f) {
			p.fail(item(p.at("fail_on"), i), "fail_on: unknown condition %q%s (expected one of: %s)", f, scenarios.Suggest(f, conds), strings.Join(conds, ", "))
		}
	}
	if c.Publish != "" && !strings.HasPrefix(c.Publish, "http://") && !strings.HasPrefix(c.Publish, "https://") {
		p.fail(p.at("publish"), "publish %q: want an http:// or https:// base URL (firstboot publish --to)", c.Publish)
	}
	if c.Baseline != "" && c.Baseline != BaselinePrevious && !strings.ContainsAny(c.Baseline, "*?[") {
		if _, err := os.Stat(c.resolve(c.Baseline)); err != nil {
			p.fail(p.at("baseline"), "baseline %q: %v (give an earlier campaign's directory, a dataset, run directories, or previous)", c.Baseline, scenarios.UnwrapPathError(err))
		}
	}
	p.loadScenarios(c)
}

// ValidLabel says whether a host label is usable (in queue names and flags).
func ValidLabel(l string) bool { return labelRE.MatchString(l) }

// labelRE keeps host labels usable in queue names and flags.
var labelRE = regexp.MustCompile(`^[a-z0-9]+(-[a-z0-9]+)*$`)

// loadScenarios loads each entry's scenario, or builds its variants, and
// checks that every scenario name is used once.
func (p *checker) loadScenarios(c *Campaign) {
	list := p.at("scenarios")
	names := map[string]bool{}
	c.reps = map[string]int{}
	var reps int
	add := func(n *yaml.Node, s *scenarios.Scenario) {
		if names[s.Name] {
			p.fail(n, "scenario name %q is used twice: runs would mix; give each entry (or variant) its own name", s.Name)
			return
		}
		names[s.Name] = true
		c.reps[s.Name] = reps
		c.Scenarios = append(c.Scenarios, s)
	}
	for i, e := range c.Spec.Scenarios {
		n := item(list, i)
		reps = e.Repetitions
		path := c.resolve(e.Path)
		data, err := os.ReadFile(path)
		if err != nil {
			p.fail(valueOr(n, "path"), "scenario %s: %v", e.Path, scenarios.UnwrapPathError(err))
			continue
		}
		if len(e.Variants) == 0 {
			s, err := scenarios.Parse(path, data)
			if err != nil {
				// The scenario's own mistakes name its file, line and column.
				p.errs = append(p.errs, fmt.Errorf("%s:%d:%d: scenario %s is not valid:\n%w", p.file, n.Line, n.Column, e.Path, err))
				continue
			}
			add(n, s)
			continue
		}
		vlist := scenarios.ValueOf(n, "variants")
		for j := range e.Variants {
			vn := item(vlist, j)
			s, err := c.variant(path, data, vn)
			if err != nil {
				p.fail(vn, "variant %q of %s: %v", e.Variants[j].Name, e.Path, err)
				continue
			}
			add(vn, s)
		}
	}
}

// variant builds a variant's scenario: the base scenario's YAML with the
// variant's keys put in, its relative paths made absolute (they are relative
// to the campaign file, the base's to the scenario file).
func (c *Campaign) variant(path string, base []byte, vn *yaml.Node) (*scenarios.Scenario, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal(base, &doc); err != nil || len(doc.Content) == 0 {
		return nil, fmt.Errorf("%s: not valid YAML", path)
	}
	top := doc.Content[0]
	if top.Kind != yaml.MappingNode {
		return nil, fmt.Errorf("%s: not a scenario (a mapping of keys)", path)
	}
	for i := 0; i+1 < len(vn.Content); i += 2 {
		key, val := vn.Content[i].Value, c.absPaths(vn.Content[i].Value, clone(vn.Content[i+1]))
		switch key {
		case "name", "image":
			setKey(top, key, val)
		default: // os, machine, capture: key by key
			dst := scenarios.ValueOf(top, key)
			if dst == nil || dst.Kind != yaml.MappingNode {
				setKey(top, key, val)
				continue
			}
			for k := 0; k+1 < len(val.Content); k += 2 {
				setKey(dst, val.Content[k].Value, val.Content[k+1])
			}
		}
	}
	out, err := yaml.Marshal(&doc)
	if err != nil {
		return nil, err
	}
	name := c.File + "#" + scenarios.ValueOf(vn, "name").Value
	s, err := scenarios.ParseWith(name, out, scenarios.LoadOptions{Dir: filepath.Dir(path)})
	if err != nil {
		return nil, fmt.Errorf("the scenario it makes is not valid: %w", err)
	}
	return s, nil
}

// absPaths makes a variant's file paths absolute (relative to the campaign file).
func (c *Campaign) absPaths(key string, n *yaml.Node) *yaml.Node {
	abs := func(m *yaml.Node, keys ...string) {
		for _, k := range keys {
			if v := scenarios.ValueOf(m, k); v != nil && v.Kind == yaml.ScalarNode && v.Value != "" && !strings.Contains(v.Value, "://") {
				v.Value = c.resolve(v.Value)
			}
		}
	}
	switch key {
	case "image":
		abs(n, "path", "kernel", "initrd")
		if media := scenarios.ValueOf(n, "media"); media != nil {
			for _, m := range media.Content {
				abs(m, "path")
			}
		}
	case "machine":
		abs(n, "apple_smc_osk_file")
	}
	return n
}

// resolve makes p relative to the campaign file's folder.
func (c *Campaign) resolve(p string) string {
	if p == "" || filepath.IsAbs(p) {
		return p
	}
	return filepath.Join(filepath.Dir(c.File), p)
}

// BaselinePath is the baseline as a path (or glob) usable from anywhere; ""
// without a baseline, BaselinePrevious unchanged.
func (c *Campaign) BaselinePath() string {
	if c.Baseline == "" || c.Baseline == BaselinePrevious {
		return c.Baseline
	}
	return c.resolve(c.Baseline)
}

// Retries is the number of retries after infrastructure failures.
func (c *Campaign) Retries() int {
	if c.Limits.Retries == nil {
		return DefaultRetries
	}
	return *c.Limits.Retries
}

// SetupAllowance is what a run may take beyond its capture window when the
// campaign sets no run_timeout: lab, network and machine set-up, analysis and
// report (a Debian image's sha256 alone takes seconds).
const SetupAllowance = 10 * time.Minute

// RunTimeout bounds one run of s.
func (c *Campaign) RunTimeout(s *scenarios.Scenario) time.Duration {
	if d := c.Limits.RunTimeout.D(); d > 0 {
		return d
	}
	return s.Capture.Window.D() + SetupAllowance
}

// Next lists the schedule's next n times after t (none without a schedule).
func (c *Campaign) Next(t time.Time, n int) []time.Time {
	var out []time.Time
	for c.Cron != nil && len(out) < n {
		t = c.Cron.Next(t)
		out = append(out, t)
	}
	return out
}

// valueOr is key's value node in m, or m itself (for a position).
func valueOr(m *yaml.Node, key string) *yaml.Node {
	if v := scenarios.ValueOf(m, key); v != nil {
		return v
	}
	return m
}

// item is a list's i-th node, or the list itself.
func item(list *yaml.Node, i int) *yaml.Node {
	if list != nil && list.Kind == yaml.SequenceNode && i < len(list.Content) {
		return list.Content[i]
	}
	return list
}

func setKey(m *yaml.Node, key string, val *yaml.Node) {
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value == key {
			m.Content[i+1] = val
			return
		}
	}
	m.Content = append(m.Content, &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: key}, val)
}

func clone(n *yaml.Node) *yaml.Node {
	c := *n
	c.Content = make([]*yaml.Node, len(n.Content))
	for i, x := range n.Content {
		c.Content[i] = clone(x)
	}
	return &c
}
