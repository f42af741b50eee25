package main

import (
	"errors"

	"github.com/spf13/cobra"
)

func newLabCmd(a *app) *cobra.Command {
	return &cobra.Command{
		Use:   "lab",
		Short: "(not built yet)",
		RunE: func(cmd *cobra.Command, args []string) error {
			return errors.New("lab: not built yet")
		},
	}
}
