package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/firstboot/firstboot/scenarios"
)

func newScenarioCmd(a *app) *cobra.Command {
	cmd := &cobra.Command{Use: "scenario", Short: "Check and explain scenario files (no lab needed)"}
	var manual bool
	validate := &cobra.Command{
		Use:   "validate FILE...",
		Short: "Check scenario files; every mistake is reported as file:line:column",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			failed := 0
			for _, f := range args {
				if _, err := scenarios.LoadWith(f, scenarios.LoadOptions{Manual: manual}); err != nil {
					fmt.Fprintln(cmd.ErrOrStderr(), err)
					failed++
					continue
				}
				fmt.Fprintf(cmd.OutOrStdout(), "%s: ok\n", f)
			}
			if failed > 0 {
				return usageError{fmt.Errorf("%d of %d scenario files have mistakes", failed, len(args))}
			}
			return nil
		},
	}
	validate.Flags().BoolVar(&manual, "manual", false, "check files for run --manual and record (no steps)")
	cmd.AddCommand(validate)
	cmd.AddCommand(&cobra.Command{
		Use:   "plan FILE",
		Short: "Print what a run of the scenario will do, in order, with every wait and time limit",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			s, err := scenarios.Load(args[0])
			if err != nil {
				return usageError{err}
			}
			return scenarios.WritePlan(cmd.OutOrStdout(), s)
		},
	})
	return cmd
}
