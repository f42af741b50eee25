package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/spf13/cobra"

	"github.com/firstboot/firstboot/lab"
	lablibvirt "github.com/firstboot/firstboot/lab/libvirt"
	"github.com/firstboot/firstboot/results/rundir"
)

// labConfig is the lab part of the configuration.
func (a *app) labConfig() lab.Config {
	return lab.Config{
		StateDir:   a.cfg.StateDir,
		LibvirtURI: a.cfg.LibvirtURI,
		Accel:      a.cfg.Accel,
		Logger:     a.logger,
	}
}

func newLabCmd(a *app) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "lab",
		Short: "Start, stop and inspect the lab (libvirtd and virtlogd in the firstboot network namespace)",
		Long: "The lab is a network namespace \"firstboot\" with its own libvirtd and virtlogd. " +
			"`firstboot run` brings it up and down by itself when it is not running; `lab up` keeps it " +
			"running between runs (saves the daemons' start-up), `lab down` stops it. With --libvirt-uri " +
			"firstboot uses that libvirtd instead and manages no daemons.",
	}
	cmd.AddCommand(
		&cobra.Command{
			Use:   "up",
			Short: "Start the lab's daemons and leave them running",
			Args:  cobra.NoArgs,
			RunE: func(cmd *cobra.Command, _ []string) error {
				start := time.Now()
				cfg := a.labConfig()
				cfg.Keep = true // the daemons stay until `firstboot lab down`
				l, err := lablibvirt.Up(cmd.Context(), cfg)
				if err != nil {
					return err
				}
				defer l.Close()
				v, err := l.Versions(cmd.Context())
				if err != nil {
					return err
				}
				out := cmd.OutOrStdout()
				switch {
				case a.cfg.LibvirtURI != "":
					fmt.Fprintf(out, "using libvirtd at %s (namespace %s); nothing started\n", a.cfg.LibvirtURI, l.Netns())
				case l.StartedDaemons():
					st := l.State()
					fmt.Fprintf(out, "lab up in %s: netns %s, libvirtd pid %d, virtlogd pid %d\n",
						time.Since(start).Round(time.Millisecond), st.Netns, st.LibvirtdPID, st.VirtlogdPID)
				default:
					fmt.Fprintf(out, "lab already up (netns %s)\n", l.Netns())
				}
				fmt.Fprintf(out, "libvirt %s, QEMU %s, first call %s\n", v.Libvirt, v.QEMU, l.FirstCall.Round(time.Millisecond))
				for _, o := range l.Reaped() {
					fmt.Fprintf(out, "reaped: %s\n", o)
				}
				marked, err := rundir.MarkAbandoned(cmd.Context(), a.cfg.RunsDir)
				for _, m := range marked {
					fmt.Fprintf(out, "marked incomplete: %s (%s)\n", m.Dir, m.Reason)
				}
				return err
			},
		},
		&cobra.Command{
			Use:   "down",
			Short: "Destroy firstboot's machines and networks, stop the daemons, remove the namespace",
			Args:  cobra.NoArgs,
			RunE: func(cmd *cobra.Command, _ []string) error {
				if a.cfg.LibvirtURI != "" {
					fmt.Fprintf(cmd.OutOrStdout(), "using libvirtd at %s: firstboot started nothing, so there is nothing to stop\n", a.cfg.LibvirtURI)
					return nil
				}
				st, err := lablibvirt.LoadState(a.cfg.StateDir)
				if err != nil {
					return err
				}
				if err := lablibvirt.Stop(cmd.Context(), a.labConfig()); err != nil {
					return err
				}
				if st.LibvirtdPID == 0 {
					fmt.Fprintln(cmd.OutOrStdout(), "lab was not up")
				} else {
					fmt.Fprintf(cmd.OutOrStdout(), "lab down (netns %s)\n", st.Netns)
				}
				return nil
			},
		},
		&cobra.Command{
			Use:   "status",
			Short: "Show whether the lab is up (exit status 1 when it is not), and what killed firstboot processes left",
			Long: "Shows the lab's namespace and daemons; the orphans in the lab (machines, networks, redirect " +
				"rules of firstboot processes that were killed), which the next `firstboot run` or `lab up` reaps; " +
				"what was reaped lately; and runs a killed firstboot left marked running.",
			Args: cobra.NoArgs,
			RunE: func(cmd *cobra.Command, _ []string) error {
				err := labStatus(cmd.OutOrStdout(), a)
				leftovers(cmd.Context(), cmd.OutOrStdout(), a)
				return err
			},
		},
	)
	return cmd
}

var errLabDown = errors.New("lab is not up (firstboot lab up)")

func labStatus(out io.Writer, a *app) error {
	if a.cfg.LibvirtURI != "" {
		fmt.Fprintf(out, "libvirt-uri %s: firstboot manages no daemons\n", a.cfg.LibvirtURI)
		return nil
	}
	s, err := lablibvirt.GetStatus(a.labConfig())
	if err != nil {
		return err
	}
	yes := func(b bool) string {
		if b {
			return "yes"
		}
		return "no"
	}
	if s.LibvirtdPID == 0 {
		fmt.Fprintf(out, "lab: down (no state in %s)\n", a.cfg.StateDir)
		if s.SocketAnswers {
			fmt.Fprintln(out, "note: a libvirtd not started by firstboot answers on", lablibvirt.DefaultSocket)
		}
		return errLabDown
	}
	fmt.Fprintf(out, "lab: started %s\n", s.Started.Format(time.RFC3339))
	fmt.Fprintf(out, "  netns     %-12s exists: %s\n", s.Netns, yes(s.NetnsExists))
	fmt.Fprintf(out, "  libvirtd  pid %-8d alive: %s  socket answers: %s\n", s.LibvirtdPID, yes(s.LibvirtdAlive), yes(s.SocketAnswers))
	fmt.Fprintf(out, "  virtlogd  pid %-8d alive: %s\n", s.VirtlogdPID, yes(s.VirtlogdAlive))
	if !s.LibvirtdAlive || !s.VirtlogdAlive || !s.NetnsExists {
		fmt.Fprintln(out, "lab is broken: run `firstboot lab down` then `firstboot lab up`")
		return errLabDown
	}
	return nil
}

// leftovers prints what killed firstboot processes left: orphans in the lab
// (found now, changing nothing), what was reaped lately, and runs still
// marked running.
func leftovers(ctx context.Context, out io.Writer, a *app) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	orphans, err := lablibvirt.FindOrphans(ctx, a.labConfig())
	switch {
	case err != nil:
		fmt.Fprintf(out, "orphans: could not look (%v)\n", err)
	case len(orphans) == 0:
		fmt.Fprintln(out, "orphans: none")
	default:
		fmt.Fprintf(out, "orphans (left by firstboot processes that ended; the next run or lab up reaps them): %d\n", len(orphans))
		for _, o := range orphans {
			fmt.Fprintf(out, "  %s\n", o)
		}
	}
	const recent = 10
	if reaped, err := lablibvirt.ReapLog(a.cfg.StateDir, recent); err != nil {
		fmt.Fprintf(out, "reaped: %v\n", err)
	} else if len(reaped) > 0 {
		fmt.Fprintf(out, "reaped lately (last %d):\n", len(reaped))
		for _, o := range reaped {
			fmt.Fprintf(out, "  %s  %s\n", o.Reaped.Local().Format(time.DateTime), o)
		}
	}
	if dirs, err := rundir.Abandoned(a.cfg.RunsDir); err != nil {
		fmt.Fprintf(out, "runs: %v\n", err)
	} else if len(dirs) > 0 {
		fmt.Fprintf(out, "runs a killed firstboot left running (the next run or lab up marks them incomplete): %d\n", len(dirs))
		for _, d := range dirs {
			fmt.Fprintf(out, "  %s\n", d)
		}
	}
}
