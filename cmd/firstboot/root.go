package main

import (
	"log/slog"
	"os"

	"github.com/spf13/cobra"
)

// version is set at build time with -ldflags "-X main.version=…".
var version = "dev"

// app carries what every command needs; it is built once per invocation.
type app struct {
	cfg      Config
	logger   *slog.Logger
	logLevel slog.Level // logger's, for a logger on another writer
}

func newRootCmd() *cobra.Command {
	a := &app{}
	var configFile string
	root := &cobra.Command{
		Use:           "firstboot",
		Short:         "Record and analyse what a freshly installed OS says on the network",
		Version:       version,
		SilenceUsage:  true,
		SilenceErrors: true,
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := loadConfig(cmd.Flags(), configFile)
			if err != nil {
				return err
			}
			a.cfg = cfg
			var level slog.Level
			if err := level.UnmarshalText([]byte(cfg.LogLevel)); err != nil {
				return usageError{err}
			}
			a.logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
			a.logLevel = level
			return nil
		},
	}
	def := defaultConfig()
	pf := root.PersistentFlags()
	pf.StringVar(&configFile, "config", "", "config file (default: ./firstboot.yaml, then ~/.config/firstboot/firstboot.yaml)")
	pf.String("libvirt-uri", def.LibvirtURI, "use this libvirtd (e.g. qemu:///system) instead of starting one in the lab namespace")
	pf.String("runs-dir", def.RunsDir, "directory for run directories")
	pf.String("image-cache", def.ImageCache, "directory for built and downloaded images")
	pf.String("state-dir", def.StateDir, "directory for the lab's daemon state")
	pf.String("accel", def.Accel, "accelerator: auto (probe KVM, else TCG), kvm or tcg")
	pf.StringSlice("first-party", def.FirstParty, "vendor domains counted as first party")
	pf.String("log-level", def.LogLevel, "debug, info, warn or error")
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError{err} })

	// One file per command.
	root.AddCommand(
		newConfigCmd(a),
		newAnalyzeCmd(a),
		newRunCmd(a),
		newLabCmd(a),
		newDoctorCmd(a),
		newImageCmd(a),
		newScenarioCmd(a),
		newReportCmd(a),
		newDiffCmd(a),
		newDatasetCmd(a),
		newPublishCmd(a),
		newCaptureCmd(a),
		newRunsCmd(a),
		newShowCmd(a),
		newContinueCmd(a),
		newMarkCmd(a),
		newRecordCmd(a),
		newCampaignCmd(a),
		newWorkerCmd(a),
		newExportCmd(a),
	)
	return root
}
