package main

import (
	"context"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/firstboot/firstboot/lab/capture"
)

// newCaptureCmd is a hidden command that runs firstboot's capture (the one a
// run uses on a machine's tap) on any interface: the capture benchmark
// (scripts/bench-capture.sh) measures it against tcpdump with it.
func newCaptureCmd(_ *app) *cobra.Command {
	var (
		netns, out string
		duration   time.Duration
	)
	cmd := &cobra.Command{
		Use:    "capture IFACE --out FILE",
		Short:  "Capture one interface to pcapng with firstboot's capture until interrupted (benchmarks)",
		Hidden: true,
		Args: func(cmd *cobra.Command, args []string) error {
			if err := cobra.ExactArgs(1)(cmd, args); err != nil {
				return usageError{fmt.Errorf("capture: %w (the interface)", err)}
			}
			if out == "" {
				return usageError{fmt.Errorf("capture: --out FILE is required")}
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			c, err := capture.Start(ctx, capture.Config{Netns: netns, Iface: args[0], Path: out, SectionComment: "firstboot capture " + version})
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "capturing %s to %s\n", args[0], out)
			var timeout <-chan time.Time
			if duration > 0 {
				timeout = time.After(duration)
			}
			select {
			case <-ctx.Done():
			case <-timeout:
			case <-c.Done():
			}
			// A fresh context: Ctrl-C is how this command is meant to end,
			// and Stop must still drain and close the file.
			st, err := c.Stop(context.WithoutCancel(ctx))
			fmt.Fprintf(cmd.OutOrStdout(), "packets %d received %d dropped %d ring_freezes %d\n", st.Packets, st.Received, st.Drops, st.RingFreezes)
			return err
		},
	}
	cmd.Flags().StringVar(&netns, "netns", "", "network namespace holding the interface (name or /proc/PID/ns/net)")
	cmd.Flags().StringVar(&out, "out", "", "pcapng file to create")
	cmd.Flags().DurationVar(&duration, "duration", 0, "stop after this long (default: until interrupted)")
	return cmd
}
