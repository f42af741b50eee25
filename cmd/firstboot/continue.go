package main

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/firstboot/firstboot/scenarios"
)

func newContinueCmd(a *app) *cobra.Command {
	return &cobra.Command{
		Use:   "continue RUN",
		Short: "Continue a run that waits at a pause action (RUN: its directory or id)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			dir, err := runDirOf(a, args[0])
			if err != nil {
				return err
			}
			if err := scenarios.Control(cmd.Context(), dir, scenarios.SayContinue, ""); err != nil {
				return fmt.Errorf("continue %s: %w", args[0], err)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s: continued\n", dir)
			return nil
		},
	}
}

// runDirOf finds a run's directory from what a person calls it: its
// directory, or its id under the runs directory.
func runDirOf(a *app, run string) (string, error) {
	for _, dir := range []string{run, filepath.Join(a.cfg.RunsDir, run)} {
		if st, err := os.Stat(dir); err == nil && st.IsDir() {
			return dir, nil
		}
	}
	return "", usageError{fmt.Errorf("run %q: no such run directory (give its directory, or its id under %s)", run, a.cfg.RunsDir)}
}
