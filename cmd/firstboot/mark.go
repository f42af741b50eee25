package main

import (
	"errors"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/firstboot/firstboot/scenarios"
)

func newMarkCmd(a *app) *cobra.Command {
	var end bool
	cmd := &cobra.Command{
		Use:   "mark RUN NAME | mark RUN --end",
		Short: "In a manual run, end the current step and begin step NAME (elsewhere: note a moment)",
		Long: `mark talks to a running run (RUN: its directory or id). In a manual run (run --manual,
record) it ends the current step and begins the next, named NAME, as Enter in the run's terminal
does; --end ends the last step and shuts the machine down. In a run of a scenario's steps it notes
NAME at this instant in the timeline and as a comment in the capture.`,
		Args: cobra.RangeArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			if end == (len(args) == 2) {
				return usageError{errors.New("give either a NAME or --end")}
			}
			dir, err := runDirOf(a, args[0])
			if err != nil {
				return err
			}
			kind, name := scenarios.SayMark, ""
			if end {
				kind = scenarios.SayEnd
			} else {
				name = args[1]
			}
			if err := scenarios.Control(cmd.Context(), dir, kind, name); err != nil {
				return fmt.Errorf("mark %s: %w", args[0], err)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s: ok\n", dir)
			return nil
		},
	}
	cmd.Flags().BoolVar(&end, "end", false, "end a manual run: its last step ends and the machine shuts down")
	return cmd
}
