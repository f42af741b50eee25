package main

import (
	"errors"

	"github.com/spf13/cobra"
)

func newScenarioCmd(a *app) *cobra.Command {
	return &cobra.Command{
		Use:   "scenario",
		Short: "(not built yet)",
		RunE: func(cmd *cobra.Command, args []string) error {
			return errors.New("scenario: not built yet")
		},
	}
}
