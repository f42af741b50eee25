package main

import (
	"errors"

	"github.com/spf13/cobra"
)

func newImageCmd(a *app) *cobra.Command {
	return &cobra.Command{
		Use:   "image",
		Short: "(not built yet)",
		RunE: func(cmd *cobra.Command, args []string) error {
			return errors.New("image: not built yet")
		},
	}
}
