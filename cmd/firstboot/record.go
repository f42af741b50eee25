package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/firstboot/firstboot/scenarios"
	"github.com/firstboot/firstboot/scenarios/record"
)

func newRecordCmd(a *app) *cobra.Command {
	o := runOptions{manual: true, record: true}
	var out, from string
	var force bool
	cmd := &cobra.Command{
		Use:   "record SCENARIO.yaml --out NEW.yaml",
		Short: "Record a person driving the machine through the VNC display, and write a scenario that replays it",
		Long: `record runs SCENARIO.yaml (image and machine; no steps) as a manual run whose screen is served
by VNC on --display. Drive the machine with a VNC viewer; in this terminal, Enter ends a step and
begins the next (type its name first), Ctrl-D ends the recording and shuts the machine down
(from another shell: firstboot mark RUN NAME, firstboot mark RUN --end).

The run is captured, analysed and reported like any other. Then NEW.yaml is written: every key,
the text typed (as type), clicks and drags with their timing, the steps; each click anchored to
the text under it (click_text) where OCR finds one, coordinates otherwise; before each burst of
input a wait_text for text that identifies that screen, or a wait_screen with a reference crop
saved beside NEW.yaml. Read it, edit it, and run it with firstboot run.

--from RUN_DIR writes the scenario again from an earlier recorded run, without a machine.`,
		Args: func(cmd *cobra.Command, args []string) error {
			if from != "" {
				return cobra.NoArgs(cmd, args)
			}
			return cobra.ExactArgs(1)(cmd, args)
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			if out == "" {
				return usageError{errors.New("--out NEW.yaml is required: where the recorded scenario goes")}
			}
			if _, err := os.Stat(out); err == nil && !force {
				return usageError{fmt.Errorf("%s exists: choose another --out, or --force to replace it", out)}
			}
			if from != "" {
				return writeRecorded(cmd, filepath.Join(from, "scenario.yaml"), from, out)
			}
			s, err := scenarios.LoadWith(args[0], scenarios.LoadOptions{Manual: true})
			if err != nil {
				return usageError{err}
			}
			run, runErr := runScenario(cmd, a, s, o)
			if run == nil {
				return runErr
			}
			if _, err := os.Stat(filepath.Join(run.Dir, scenarios.RecordingDir)); err != nil {
				return errors.Join(runErr, fmt.Errorf("no recording in %s: nothing to write", run.Dir))
			}
			// A run that ended badly still leaves what the person did.
			return errors.Join(runErr, writeRecorded(cmd, args[0], run.Dir, out))
		},
	}
	cmd.Flags().StringVar(&out, "out", "", "the scenario file to write")
	cmd.Flags().StringVar(&o.display, "display", "127.0.0.1:5900", "serve the machine's screen by VNC on this local address")
	cmd.Flags().Float64Var(&o.minutes, "minutes", 0, "capture window in minutes (overrides the scenario's)")
	cmd.Flags().BoolVar(&o.noAnalyze, "no-analyze", false, "do not analyse the capture after the run")
	cmd.Flags().StringVar(&from, "from", "", "write the scenario from this earlier recorded run instead of recording")
	cmd.Flags().BoolVar(&force, "force", false, "replace --out when it exists")
	return cmd
}

// writeRecorded turns a run's recording into the scenario file out.
func writeRecorded(cmd *cobra.Command, scenario, runDir, out string) error {
	sum, err := record.Write(cmd.Context(), record.Config{
		Scenario:  scenario,
		Recording: filepath.Join(runDir, scenarios.RecordingDir),
		Out:       out,
		Source:    runDir,
	})
	if err != nil {
		return fmt.Errorf("writing the recorded scenario (the recording is kept: firstboot record --from %s --out %s writes it again): %w", runDir, out, err)
	}
	fmt.Fprintf(cmd.OutOrStdout(), "recorded scenario: %s (%d steps, %d bursts of input: %d wait for text, %d for a reference crop; clicks: %d on text, %d at coordinates)\n",
		out, sum.Steps, sum.Bursts, sum.TextWaits, sum.ScreenWaits, sum.TextClicks, sum.PointClicks)
	return nil
}
