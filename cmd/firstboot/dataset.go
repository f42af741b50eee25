package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"

	"github.com/firstboot/firstboot/results/dataset"
	"github.com/firstboot/firstboot/scenarios"
)

func newDatasetCmd(a *app) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "dataset",
		Short: "Bundle runs for a research data repository, and verify bundles",
	}
	cmd.AddCommand(newDatasetBuildCmd(a), newDatasetVerifyCmd(a))
	return cmd
}

func newDatasetBuildCmd(a *app) *cobra.Command {
	var (
		out       string
		anonymize bool
		keepTLS   bool
		meta      dataset.Metadata
	)
	cmd := &cobra.Command{
		Use:   "build RUN_DIR... --out DIR --creator NAME --publisher NAME",
		Short: "Bundle run directories into a dataset a repository (Zenodo, a university archive) accepts",
		Long: `build copies each run (manifest, scenario, full capture, console log, responder log,
screenshots) into DIR/runs/<run-id>/, splits the capture into one pcapng per scenario step
(steps/NN-<step>.pcapng, with the capture's section and interface blocks and packet
comments), analyses the capture afresh (analysis.json and Zeek-style logs, with the options
recorded in analysis-options.json), rewrites the reports when the run had them, and adds:

  MANIFEST                sha256, size and path of every file, sorted by path
  ro-crate-metadata.json  RO-Crate 1.1 with DataCite's required fields (creator, title,
                          publisher, publication year, resource type Dataset), the OS,
                          release, build, capture dates, lab location, firstboot version
  README.md               what is where, how to verify and re-analyse

--anonymize replaces the lab's identifiers consistently in captures, analyses, logs and
manifests: MAC addresses (02:00:00:00:00:NN), lab subnet addresses (192.0.2.0/24) and the
DHCP hostname (host0…, same length). Packets keep their lengths and checksums are updated.

TLS secrets (the captures' Decryption Secrets Blocks and tls-keys.log) are left out
unless --keep-tls-secrets: they decrypt the runs' HTTPS requests, which can hold tokens
and personal data.

Building the same runs twice gives identical bytes (file times are the latest capture time).
DIR must not exist or be empty.`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if out == "" {
				return usageError{errors.New("dataset build: --out DIR is required")}
			}
			opts := dataset.Options{
				Metadata:       meta,
				Anonymize:      anonymize,
				KeepTLSSecrets: keepTLS,
				FirstParty:     a.cfg.FirstParty,
				Version:        version,
				Report:         bundleReports,
			}
			start := time.Now()
			res, err := dataset.Build(cmd.Context(), args, out, opts)
			if err != nil {
				if errors.Is(err, dataset.ErrMetadata) {
					return usageError{err}
				}
				return err
			}
			w := cmd.OutOrStdout()
			for _, r := range res.Runs {
				fmt.Fprintf(w, "run %s: %d packets, %d step file(s)\n", r.ID, r.Analysis.Summary.Packets, len(r.Options.StepFiles))
			}
			for _, warn := range res.Warnings {
				fmt.Fprintf(cmd.ErrOrStderr(), "warning: %s\n", warn)
			}
			fmt.Fprintf(w, "dataset: %s (%d files, %d bytes) in %s\n", res.Dir, res.Files, res.Bytes, time.Since(start).Round(time.Millisecond))
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&out, "out", "", "bundle directory (must not exist or be empty)")
	f.BoolVar(&anonymize, "anonymize", false, "replace the lab's MACs, addresses and hostname by pseudonyms everywhere")
	f.BoolVar(&keepTLS, "keep-tls-secrets", false, "keep the captures' TLS secrets (Decryption Secrets Blocks) and tls-keys.log: they decrypt the runs' HTTPS, which can hold tokens and personal data")
	f.StringArrayVar(&meta.Creators, "creator", nil, "creator (repeat for several; DataCite: required)")
	f.StringVar(&meta.Publisher, "publisher", "", "publisher, e.g. the university (DataCite: required)")
	f.StringVar(&meta.Title, "title", "", "title (default: from the runs' OS)")
	f.StringVar(&meta.LabLocation, "lab-location", "", "where the lab is")
	f.StringVar(&meta.License, "license", "", "license URL or SPDX id, e.g. https://creativecommons.org/licenses/by/4.0/")
	f.StringVar(&meta.Description, "description", "", "description (default: generated)")
	f.StringVar(&meta.DatePublished, "date-published", "", "YYYY-MM-DD (default: the date of the latest capture)")
	return cmd
}

// bundleReports rewrites a bundled run's reports from its fresh analysis,
// checking the bundled scenario's expectations (an unmet one does not stop
// the bundle: the report shows it).
func bundleReports(_ context.Context, dir string) error {
	var s *scenarios.Scenario
	if p := filepath.Join(dir, scenarioCopy); fileExists(p) {
		if sc, err := scenarios.Load(p); err == nil {
			s = sc
		}
	}
	_, _, err := writeRunReport(dir, s, io.Discard)
	return err
}

func fileExists(p string) bool {
	st, err := os.Stat(p)
	return err == nil && st.Mode().IsRegular()
}

func newDatasetVerifyCmd(_ *app) *cobra.Command {
	return &cobra.Command{
		Use:   "verify DIR",
		Short: "Check a bundle: every checksum, no missing or extra file, analyses and step captures re-made byte for byte",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			start := time.Now()
			res, err := dataset.Verify(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "dataset verify: OK: %d files (%d bytes) match MANIFEST; %d run(s): %d analysis outputs and %d step captures re-made identically (%s)\n",
				res.Files, res.Bytes, res.Runs, res.Analyses, res.Steps, time.Since(start).Round(time.Millisecond))
			return nil
		},
	}
}
