package main

import (
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/firstboot/firstboot/results/diff"
)

func newDiffCmd(_ *app) *cobra.Command {
	var (
		sideA, sideB []string
		format       string
		thrBytes     int64
		thrConns     int64
		failOn       []string
		normalize    string
		k            int
		showRules    bool
		outFile      string
	)
	cmd := &cobra.Command{
		Use:   "diff A B | diff --a DIR... --b DIR...",
		Short: "Compare what two runs (or two sets of runs) said on the network",
		Long: `diff compares side A (before) with side B (after), per scenario step (matched by name)
and for the whole run: destinations new and gone, connection and byte changes beyond the
thresholds, protocol changes (HTTPS turning into plain HTTP is news), TCP SYN and JA4
fingerprint changes, first/third-party changes.

A side is a run directory, a dataset bundle (all its runs), a directory of runs, or a glob
("runs/macos-15.0-*"); with --a/--b each side may have several. With n runs on a side a
destination counts as present when seen in at least k of them (--k; default: a majority),
and the report shows how stable each destination is (seen in x/n).

Names are compared after normalisation rules that fold volatile CDN node names
(gspe21-ssl.ls.apple.com -> gspe#-ssl.ls.apple.com); --show-rules prints the built-in
list in the file format --normalize reads (a file replaces the list).

--fail-on makes the exit code 3 when a kind of change occurs in the whole run:
` + strings.Join(categoryNames(), ", ") + `.`,
		RunE: func(cmd *cobra.Command, args []string) error {
			if showRules {
				_, err := fmt.Fprint(cmd.OutOrStdout(), diff.DefaultRules)
				return err
			}
			switch {
			case len(sideA) > 0 || len(sideB) > 0:
				if len(args) > 0 || len(sideA) == 0 || len(sideB) == 0 {
					return usageError{errors.New("diff: give both --a and --b, and no positional arguments with them")}
				}
			case len(args) == 2:
				sideA, sideB = []string{args[0]}, []string{args[1]}
			default:
				return usageError{errors.New("diff: want two arguments A B, or --a DIR... --b DIR...")}
			}
			cats, err := diff.ParseCategories(failOn)
			if err != nil {
				return usageError{fmt.Errorf("--fail-on: %w", err)}
			}
			if thrBytes < 0 || thrConns < 0 || k < 0 {
				return usageError{errors.New("diff: thresholds and --k must not be negative")}
			}
			if format != diff.FormatMarkdown && format != diff.FormatHTML && format != diff.FormatJSON {
				return usageError{fmt.Errorf("--format %q: want md, html or json", format)}
			}
			opts := diff.Options{Rules: diff.MustDefaultRules(), RulesSource: "default", K: k, ThresholdBytes: thrBytes, ThresholdConns: thrConns}
			if normalize != "" {
				f, err := os.Open(normalize)
				if err != nil {
					return usageError{fmt.Errorf("--normalize: %w", err)}
				}
				rules, err := diff.ParseRules(f, normalize)
				f.Close()
				if err != nil {
					return usageError{fmt.Errorf("--normalize: %w", err)}
				}
				opts.Rules, opts.RulesSource = rules, normalize
			}
			a, err := diff.LoadSide(sideA)
			if err != nil {
				return usageError{fmt.Errorf("diff: side A: %w", err)}
			}
			b, err := diff.LoadSide(sideB)
			if err != nil {
				return usageError{fmt.Errorf("diff: side B: %w", err)}
			}
			r := diff.Compare(a, b, opts)
			failed := r.Fail(cats)
			w := cmd.OutOrStdout()
			if outFile != "" {
				f, err := os.Create(outFile)
				if err != nil {
					return err
				}
				if err := diff.Render(f, r, format); err != nil {
					f.Close()
					return err
				}
				if err := f.Close(); err != nil {
					return err
				}
			} else if err := diff.Render(w, r, format); err != nil {
				return err
			}
			if len(failed) > 0 {
				parts := make([]string, len(failed))
				for i, c := range failed {
					parts[i] = fmt.Sprintf("%s (%d)", c, r.Counts[c])
				}
				return fmt.Errorf("%w: diff found %s", errExpectationFailed, strings.Join(parts, ", "))
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringArrayVar(&sideA, "a", nil, "side A: run dir, dataset, runs dir or glob (repeatable)")
	f.StringArrayVar(&sideB, "b", nil, "side B: run dir, dataset, runs dir or glob (repeatable)")
	f.StringVar(&format, "format", diff.FormatMarkdown, "output: md, html (one self-contained page) or json")
	f.StringVarP(&outFile, "output", "o", "", "write the report to this file instead of stdout")
	f.Int64Var(&thrBytes, "threshold-bytes", 10000, "report a destination whose bytes (IP layer, up+down) change by at least this much; 0: off")
	f.Int64Var(&thrConns, "threshold-conns", 1, "report a destination whose connection count changes by at least this much; 0: off")
	f.StringSliceVar(&failOn, "fail-on", nil, "exit 3 when one of these changes occurs in the whole run (comma list)")
	f.StringVar(&normalize, "normalize", "", "normalisation rules file (replaces the built-in list; see --show-rules)")
	f.IntVar(&k, "k", 0, "a destination is present on a side when seen in at least k of its runs (default: majority)")
	f.BoolVar(&showRules, "show-rules", false, "print the built-in normalisation rules and exit")
	return cmd
}

func categoryNames() []string {
	out := make([]string, len(diff.Categories))
	for i, c := range diff.Categories {
		out[i] = string(c)
	}
	return out
}
