package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/firstboot/firstboot/results/expect"
	"github.com/firstboot/firstboot/results/manifest"
	"github.com/firstboot/firstboot/results/report"
	"github.com/firstboot/firstboot/results/schema"
	"github.com/firstboot/firstboot/scenarios"
)

func newRunsCmd(a *app) *cobra.Command {
	var scenario, status string
	cmd := &cobra.Command{
		Use:   "runs",
		Short: "List the run directories: id, scenario, OS release, status, start, duration, packets, expectations met",
		Long: `runs lists the run directories in the runs directory (--runs-dir), oldest first,
one line each. Expectations are checked as firstboot report does, from each run's
scenario.yaml and analysis.json ("-" when the run was not analysed). Show one run
with firstboot show RUN.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			rows, err := listRuns(a.cfg.RunsDir)
			if err != nil {
				return err
			}
			var shown []runInfo
			for _, r := range rows {
				if (scenario == "" || r.Scenario == scenario) && (status == "" || r.Status == status) {
					shown = append(shown, r)
				}
			}
			if len(shown) == 0 {
				fmt.Fprintf(cmd.ErrOrStderr(), "no runs in %s%s\n", a.cfg.RunsDir, filterNote(scenario, status))
				return nil
			}
			return writeRuns(cmd.OutOrStdout(), shown)
		},
	}
	cmd.Flags().StringVar(&scenario, "scenario", "", "only runs of this scenario (its name)")
	cmd.Flags().StringVar(&status, "status", "", "only runs with this status: complete, incomplete or running")
	return cmd
}

func filterNote(scenario, status string) string {
	var f []string
	if scenario != "" {
		f = append(f, "scenario "+scenario)
	}
	if status != "" {
		f = append(f, "status "+status)
	}
	if len(f) == 0 {
		return ""
	}
	return " with " + strings.Join(f, " and ")
}

// runInfo is what the run list and show say about a run directory.
type runInfo struct {
	ID, Dir          string
	Scenario, OS     string
	Status, Reason   string
	Start            time.Time
	Duration         time.Duration
	Packets, Dropped uint64
	// Expect is "met/total met", "none" (the scenario states none) or "-"
	// (not analysed, or no scenario copy).
	Expect   string
	Results  []expect.Result
	Analysis *schema.Analysis
	Manifest *manifest.Manifest
}

// listRuns reads every run directory (one holding manifest.json) in dir,
// sorted by id, which sorts by start time. A directory whose manifest cannot
// be read is listed with the reason as its status.
func listRuns(dir string) ([]runInfo, error) {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("runs: reading the runs directory: %w", err)
	}
	var out []runInfo
	for _, e := range entries {
		d := filepath.Join(dir, e.Name())
		if !e.IsDir() {
			continue
		}
		if _, err := os.Stat(filepath.Join(d, manifest.FileName)); err != nil {
			continue
		}
		out = append(out, loadRun(d))
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, nil
}

// loadRun reads a run directory's manifest, and its analysis and scenario
// copy when there are both, to check the expectations.
func loadRun(dir string) runInfo {
	r := runInfo{ID: filepath.Base(dir), Dir: dir, Expect: "-"}
	m, err := manifest.Read(dir)
	if err != nil {
		r.Status, r.Reason = "unreadable", err.Error()
		return r
	}
	r.Manifest = m
	r.Scenario, r.Status, r.Reason = m.Scenario.Name, m.Status, m.Reason
	r.OS = strings.TrimSpace(m.Scenario.OS.Release + " " + m.Scenario.OS.Build)
	r.Start, r.Duration = runSpan(m)
	r.Packets, r.Dropped = m.Capture.Packets, m.Capture.Drops

	data, err := os.ReadFile(filepath.Join(dir, report.AnalysisFile))
	if err != nil {
		return r
	}
	var a schema.Analysis
	if json.Unmarshal(data, &a) != nil {
		r.Expect = "?"
		return r
	}
	r.Analysis = &a
	s, err := scenarios.Load(filepath.Join(dir, scenarioCopy))
	if err != nil {
		return r
	}
	if len(s.Expect) == 0 {
		r.Expect = "none"
		return r
	}
	r.Results = expect.Evaluate(scenarioExpects(s.Expect), &a)
	met, failed := expect.Count(r.Results)
	r.Expect = fmt.Sprintf("%d/%d met", met, met+failed)
	return r
}

// runSpan is when the run began (its first timeline entry) and how long its
// timeline lasted so far.
func runSpan(m *manifest.Manifest) (time.Time, time.Duration) {
	var start, end time.Time
	for _, e := range m.Timeline {
		if !e.Start.IsZero() && (start.IsZero() || e.Start.Before(start)) {
			start = e.Start
		}
		end = latest(end, e.Start, e.End)
	}
	if start.IsZero() {
		start = m.Capture.Start
	}
	end = latest(end, m.Capture.End)
	if start.IsZero() || end.Before(start) {
		return start, 0
	}
	return start, end.Sub(start)
}

func latest(ts ...time.Time) time.Time {
	var l time.Time
	for _, t := range ts {
		if t.After(l) {
			l = t
		}
	}
	return l
}

func writeRuns(w io.Writer, rows []runInfo) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "RUN\tSCENARIO\tRELEASE\tSTATUS\tSTART (UTC)\tDURATION\tPACKETS\tEXPECTATIONS")
	for _, r := range rows {
		start, dur, pkts := "-", "-", "-"
		if !r.Start.IsZero() {
			start = r.Start.UTC().Format("2006-01-02 15:04:05")
		}
		if r.Duration > 0 {
			dur = clock(r.Duration)
		}
		if r.Manifest != nil && !r.Manifest.Capture.Start.IsZero() {
			pkts = fmt.Sprint(r.Packets)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", r.ID, dash(r.Scenario), dash(r.OS), r.Status, start, dur, pkts, r.Expect)
	}
	return tw.Flush()
}

// clock formats a duration as 1:02:03, 2:03 or 4.2s.
func clock(d time.Duration) string {
	s := int(d.Round(time.Second) / time.Second)
	switch {
	case d < time.Minute:
		return fmt.Sprintf("%.1fs", d.Seconds())
	case s < 3600:
		return fmt.Sprintf("%d:%02d", s/60, s%60)
	}
	return fmt.Sprintf("%d:%02d:%02d", s/3600, s/60%60, s%60)
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
