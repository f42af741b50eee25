package main

import (
	"errors"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/firstboot/firstboot/results/export"
)

func newExportCmd(_ *app) *cobra.Command {
	var format, out string
	cmd := &cobra.Command{
		Use:   "export RUN_OR_CAMPAIGN... --format parquet --out DIR",
		Short: "Write analysed runs (a run, a campaign, a directory of runs) as Parquet tables",
		Long: `export writes one Parquet table per record kind into DIR: conns, dns, tls, http,
destinations (each run's whole capture, step "", and each step) and steps. Every row
has the run, scenario, OS product and release, campaign, execution, job, repetition,
host label and step, so a campaign of thousands of runs opens in DuckDB, pandas or
Spark:

  duckdb -c "SELECT scenario, name, count(DISTINCT run) FROM 'DIR/destinations.parquet'
             WHERE step = '' GROUP BY ALL ORDER BY ALL"

Arguments are run directories, campaign directories or executions, directories of
runs, or globs; every analysed run under them is exported, in run-id order. The
same input gives the same bytes.`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if format != "parquet" {
				return usageError{fmt.Errorf("--format %q: parquet is the format export writes", format)}
			}
			if out == "" {
				return usageError{errors.New("export: --out DIR is required")}
			}
			runs, err := export.FindRuns(args)
			if err != nil {
				return usageError{err}
			}
			res, err := export.Write(cmd.Context(), runs, out)
			if err != nil {
				if errors.Is(err, export.ErrInput) {
					return usageError{err}
				}
				return err
			}
			w := cmd.OutOrStdout()
			fmt.Fprintf(w, "export: %d runs\n", res.Runs)
			for i, f := range res.Files {
				fmt.Fprintf(w, "  %s: %d rows\n", f, res.Rows[export.Tables[i]])
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&format, "format", "parquet", "output format: parquet")
	cmd.Flags().StringVar(&out, "out", "", "directory for the tables")
	return cmd
}
