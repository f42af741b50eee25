package main

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/firstboot/firstboot/analyzer"
	"github.com/firstboot/firstboot/results/manifest"
	"github.com/firstboot/firstboot/results/report"
)

func newShowCmd(a *app) *cobra.Command {
	return &cobra.Command{
		Use:   "show RUN",
		Short: "Print a run's summary: what ran, how it ended, its expectations and its destinations",
		Long: `show prints a run's summary: scenario and OS, status (and why a run is
incomplete), start and duration, each step's length, the capture, the
expectations, where the report, capture and logs are, and the analysis summary
with its destinations.

RUN is a run directory, a run id in the runs directory (--runs-dir), a part of
one that names a single run (such as its last six characters), or "last".`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			dir, err := findRun(a.cfg.RunsDir, args[0])
			if err != nil {
				return usageError{err}
			}
			return writeShow(cmd.OutOrStdout(), loadRun(dir))
		},
	}
}

// findRun resolves what the user typed to a run directory.
func findRun(runsDir, arg string) (string, error) {
	if st, err := os.Stat(filepath.Join(arg, manifest.FileName)); err == nil && st.Mode().IsRegular() {
		return arg, nil
	}
	rows, err := listRuns(runsDir)
	if err != nil {
		return "", err
	}
	if len(rows) == 0 {
		return "", fmt.Errorf("show: %s is not a run directory, and %s holds no runs", arg, runsDir)
	}
	if arg == "last" {
		return rows[len(rows)-1].Dir, nil
	}
	var found []string
	for _, r := range rows {
		if r.ID == arg {
			return r.Dir, nil
		}
		if strings.Contains(r.ID, arg) {
			found = append(found, r.ID)
		}
	}
	switch len(found) {
	case 0:
		return "", fmt.Errorf("show: no run %q in %s (firstboot runs lists them)", arg, runsDir)
	case 1:
		return filepath.Join(runsDir, found[0]), nil
	}
	return "", fmt.Errorf("show: %q names %d runs in %s (%s): give more of the id", arg, len(found), runsDir, strings.Join(found, ", "))
}

func writeShow(w io.Writer, r runInfo) error {
	m := r.Manifest
	if m == nil {
		return fmt.Errorf("show: %s: %s", r.Dir, r.Reason)
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "run\t%s\n", r.Dir)
	sys := strings.TrimSpace(strings.Join([]string{m.Scenario.OS.Family, m.Scenario.OS.Product, m.Scenario.OS.Release, m.Scenario.OS.Build}, " "))
	fmt.Fprintf(tw, "scenario\t%s (%s); OS %s\n", m.Scenario.Name, dash(m.Scenario.File), dash(sys))
	status := m.Status
	if m.Reason != "" {
		status += ": " + m.Reason
	}
	fmt.Fprintf(tw, "status\t%s\n", status)
	if !r.Start.IsZero() {
		fmt.Fprintf(tw, "started\t%s, lasted %s\n", r.Start.UTC().Format("2006-01-02 15:04:05 UTC"), clock(r.Duration))
	}
	var steps []string
	for _, s := range m.Steps() {
		steps = append(steps, fmt.Sprintf("%s %s", s.Name, clock(s.End.Sub(s.Start))))
	}
	if len(steps) > 0 {
		fmt.Fprintf(tw, "steps\t%s\n", strings.Join(steps, ", "))
	}
	if m.Capture.File != "" {
		fmt.Fprintf(tw, "capture\t%s: %d packets, %d dropped, stopped by %s\n", m.Capture.File, m.Capture.Packets, m.Capture.Drops, dash(m.Capture.StoppedBy))
	}
	fmt.Fprintf(tw, "expectations\t%s\n", r.Expect)
	for _, e := range r.Results {
		if !e.Met {
			fmt.Fprintf(tw, "\tNOT MET #%d %s: %s\n", e.Index, e.Rule, strings.Join(e.Evidence, "; "))
		}
	}
	for _, f := range openFiles(r.Dir, m) {
		fmt.Fprintf(tw, "%s\t%s\n", f[0], f[1])
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintln(w)
	if r.Analysis == nil {
		_, err := fmt.Fprintf(w, "not analysed yet: firstboot analyze %s\n", r.Dir)
		return err
	}
	return analyzer.WriteTable(w, r.Analysis)
}

// openFiles lists what a researcher opens next, where it exists: the
// report, the capture (for Wireshark) and the Zeek-style logs.
func openFiles(dir string, m *manifest.Manifest) [][2]string {
	var out [][2]string
	have := func(name string) bool {
		_, err := os.Stat(filepath.Join(dir, name))
		return err == nil
	}
	if have(report.HTMLFile) {
		out = append(out, [2]string{"report", filepath.Join(dir, report.HTMLFile) + " (open in a browser; " + report.MarkdownFile + " beside it)"})
	}
	if m.Capture.File != "" && have(m.Capture.File) {
		out = append(out, [2]string{"wireshark", filepath.Join(dir, m.Capture.File) + " (steps are packet comments: filter frame.comment)"})
	}
	var logs []string
	for _, l := range []string{"conn.log", "dns.log", "ssl.log", "http.log", "ntp.log", "dhcp.log", "fingerprint.log"} {
		if have(l) {
			logs = append(logs, l)
		}
	}
	if len(logs) > 0 {
		out = append(out, [2]string{"zeek logs", filepath.Join(dir, "*.log") + " (" + strings.Join(logs, ", ") + ")"})
	}
	return out
}
