package main

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/firstboot/firstboot/results/expect"
	"github.com/firstboot/firstboot/results/report"
	"github.com/firstboot/firstboot/scenarios"
)

// scenarioCopy is the scenario file's name inside a run directory.
const scenarioCopy = "scenario.yaml"

func newReportCmd(a *app) *cobra.Command {
	var scenarioFile string
	cmd := &cobra.Command{
		Use:   "report RUN_DIR",
		Short: "Write report.md and report.html for a run and check the scenario's expectations",
		Long: `report reads RUN_DIR/analysis.json (analysing RUN_DIR's capture first when it is
missing), manifest.json and screenshots/, and writes two reports next to them:

  report.md    plain Markdown tables, to paste into a blog post or an issue
  report.html  one self-contained page (inline CSS, SVG timeline, embedded screenshots)
               that loads nothing from the network

The scenario's expectations (RUN_DIR/scenario.yaml, or --scenario) are checked and shown
with their evidence. The exit code is 3 when one is not met.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			dir := args[0]
			if st, err := os.Stat(dir); err != nil || !st.IsDir() {
				return usageError{fmt.Errorf("report: %s is not a run directory", dir)}
			}
			if _, err := os.Stat(filepath.Join(dir, report.AnalysisFile)); errors.Is(err, fs.ErrNotExist) {
				fmt.Fprintf(cmd.ErrOrStderr(), "no %s yet: analysing %s first\n", report.AnalysisFile, dir)
				if err := analyzeRunDir(cmd.Context(), dir, a.cfg.FirstParty); err != nil {
					return fmt.Errorf("report: analysing %s: %w", dir, err)
				}
			}
			in, err := report.Load(dir)
			if err != nil {
				return usageError{err}
			}
			path := scenarioFile
			if path == "" {
				if _, err := os.Stat(filepath.Join(dir, scenarioCopy)); err == nil {
					path = filepath.Join(dir, scenarioCopy)
				}
			}
			var s *scenarios.Scenario
			if path != "" {
				var err error
				if s, err = scenarios.Load(path); err != nil {
					return usageError{fmt.Errorf("report: %w", err)}
				}
			}
			return writeReport(dir, in, s, cmd.OutOrStdout())
		},
	}
	cmd.Flags().StringVar(&scenarioFile, "scenario", "", "check this scenario's expectations (default: RUN_DIR/scenario.yaml)")
	return cmd
}

// writeRunReport writes dir's reports after an analysis, checking s's
// expectations (s nil: none), and counts them met and not met. A run
// calls it once analysis.json is written.
func writeRunReport(dir string, s *scenarios.Scenario, out io.Writer) (met, failed int, err error) {
	in, err := report.Load(dir)
	if err != nil {
		return 0, 0, err
	}
	err = writeReport(dir, in, s, out)
	met, failed = expect.Count(in.Expectations)
	if errors.Is(err, errExpectationFailed) {
		err = nil
	}
	return met, failed, err
}

func writeReport(dir string, in *report.Input, s *scenarios.Scenario, out io.Writer) error {
	if s != nil {
		in.HasScenario = true
		in.Expectations = expect.Evaluate(scenarioExpects(s.Expect), in.Analysis)
	}
	if err := report.Write(dir, in); err != nil {
		return err
	}
	fmt.Fprintf(out, "report: %s\nreport: %s\n", filepath.Join(dir, report.MarkdownFile), filepath.Join(dir, report.HTMLFile))
	return expectationOutcome(out, in.HasScenario, in.Expectations)
}

// scenarioExpects converts the scenario's expectations; expect.Expect has the
// same fields as scenarios.Expect (a compile error here means they drifted).
func scenarioExpects(es []scenarios.Expect) []expect.Expect {
	out := make([]expect.Expect, len(es))
	for i, e := range es {
		out[i] = expect.Expect(e)
	}
	return out
}

// expectationOutcome prints the checks that failed and returns an error
// wrapping errExpectationFailed when there is one (exit code 3).
func expectationOutcome(w io.Writer, checked bool, rs []expect.Result) error {
	if !checked {
		fmt.Fprintln(w, "expectations: no scenario file, none checked")
		return nil
	}
	met, failed := expect.Count(rs)
	fmt.Fprintf(w, "expectations: %d met, %d not met\n", met, failed)
	for _, r := range rs {
		if r.Met {
			continue
		}
		scope := "whole run"
		if r.Step != "" {
			scope = "step " + r.Step
		}
		fmt.Fprintf(w, "  NOT MET #%d %s (%s)\n", r.Index, r.Rule, scope)
		for _, e := range r.Evidence {
			fmt.Fprintf(w, "    %s\n", e)
		}
	}
	if failed > 0 {
		return fmt.Errorf("%w: %d of %d not met", errExpectationFailed, failed, met+failed)
	}
	return nil
}
