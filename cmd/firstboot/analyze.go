package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/firstboot/firstboot/analyzer"
	"github.com/firstboot/firstboot/analyzer/capfile"
	"github.com/firstboot/firstboot/analyzer/tlsdecrypt"
	"github.com/firstboot/firstboot/results/manifest"
)

func newAnalyzeCmd(a *app) *cobra.Command {
	var (
		outDir, format, logs, steps, timeline, tlsKeys string
	)
	cmd := &cobra.Command{
		Use:   "analyze PATH|RUN_DIR",
		Short: "Analyse a pcap or pcapng capture (also gzip-compressed) into analysis.json and Zeek-style logs",
		Long: `Analyse a capture: connections (conn.log), DNS, TLS (SNI, JA3, JA4), HTTP, NTP,
DHCP and TCP SYN fingerprints, attributed to destination names, with per-step views;
what machines announce on the LAN (mDNS, LLMNR, NetBIOS, SSDP, WS-Discovery,
DHCPv6, ARP, neighbour discovery, IGMP/MLD); traffic inside tunnels (VLAN, PPPoE,
MPLS, GRE, ERSPAN, VXLAN, Geneve, GTP-U, IP-in-IP), STARTTLS and proxies.

Outputs go to --out (default: the capture's directory): analysis.json and
conn.log, dns.log, ssl.log, http.log, ntp.log, dhcp.log, fingerprint.log, and
lan.log and tunnel.log when the capture has LAN announcements or tunnels
(Zeek TSV, or JSON lines with --logs json). --format table or json also prints
to stdout. The same capture always gives the same bytes.

Given a run directory, it analyses the run's capture.pcapng segmented by the
steps in its manifest.json and writes the outputs into the run directory.
--timeline MANIFEST does the same for a capture taken elsewhere; --steps
takes a plain list for a diary-style capture with no manifest.

TLS and QUIC connections are decrypted when secrets are at hand: an NSS key
log (SSLKEYLOGFILE) given with --tls-keys, the run directory's tls-keys.log,
or the capture's own Decryption Secrets Blocks. The HTTP/1.1, HTTP/2 and
HTTP/3 requests inside go into http.log and analysis.json marked tls.`,
		Args: func(cmd *cobra.Command, args []string) error {
			if err := cobra.ExactArgs(1)(cmd, args); err != nil {
				return usageError{fmt.Errorf("analyze: %w (the capture file)", err)}
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			path := args[0]
			firstParty := a.cfg.FirstParty
			if st, err := os.Stat(path); err == nil && st.IsDir() {
				if timeline != "" || steps != "" {
					return usageError{errors.New("a run directory brings its own steps: drop --timeline and --steps")}
				}
				m, err := manifest.Read(path)
				if err != nil {
					return usageError{fmt.Errorf("%s is a directory but not a run directory: %w", path, err)}
				}
				timeline = filepath.Join(path, manifest.FileName)
				if len(firstParty) == 0 {
					firstParty = m.Scenario.FirstParty
				}
				if tlsKeys == "" {
					if _, err := os.Stat(filepath.Join(path, manifest.TLSKeysFile)); err == nil {
						tlsKeys = filepath.Join(path, manifest.TLSKeysFile)
					}
				}
				path = filepath.Join(path, m.Capture.File)
			}
			if format != "" && format != "json" && format != "table" && format != "none" {
				return usageError{fmt.Errorf("--format %q: want json, table or none", format)}
			}
			if logs != analyzer.LogsTSV && logs != analyzer.LogsJSON {
				return usageError{fmt.Errorf("--logs %q: want tsv or json", logs)}
			}
			opts := analyzer.Options{FirstParty: firstParty}
			if timeline != "" {
				if steps != "" {
					return usageError{errors.New("give --timeline or --steps, not both")}
				}
				m, err := manifest.Read(timeline)
				if err != nil {
					return usageError{fmt.Errorf("--timeline: %w", err)}
				}
				opts.Steps = stepsFromManifest(m)
				if len(opts.FirstParty) == 0 {
					opts.FirstParty = m.Scenario.FirstParty
				}
			}
			if steps != "" {
				st, err := analyzer.ParseSteps(steps)
				if err != nil {
					return usageError{fmt.Errorf("--steps: %w", err)}
				}
				opts.Steps = st
			}
			if tlsKeys != "" {
				text, err := readKeyLog(tlsKeys)
				if err != nil {
					return usageError{err}
				}
				opts.TLSKeyLog = text
			}
			dir := outDir
			if dir == "" {
				dir = filepath.Dir(path)
			}
			// Records stream into the output files as flows end: memory
			// follows the live flows, not the capture's size.
			res, err := analyzer.AnalyzeFileTo(cmd.Context(), path, opts, dir, logs)
			if err != nil {
				var ce *capfile.Error
				if errors.As(err, &ce) || errors.Is(err, os.ErrNotExist) {
					return usageError{err}
				}
				return err
			}
			out := cmd.OutOrStdout()
			switch format {
			case "json":
				f, err := os.Open(filepath.Join(dir, "analysis.json"))
				if err != nil {
					return fmt.Errorf("printing analysis.json: %w", err)
				}
				defer f.Close()
				if _, err := io.Copy(out, f); err != nil {
					return fmt.Errorf("printing analysis.json: %w", err)
				}
				return nil
			case "table":
				return analyzer.WriteTable(out, res)
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&outDir, "out", "", "output directory (default: the capture's directory)")
	f.StringVar(&format, "format", "table", "stdout: table (summary and destinations), json (analysis.json) or none")
	f.StringVar(&logs, "logs", analyzer.LogsTSV, "log format: tsv (Zeek ASCII) or json (JSON lines)")
	f.StringVar(&timeline, "timeline", "", "a run's manifest.json whose steps segment the analysis")
	f.StringVar(&steps, "steps", "", "scenario steps as name=start,name=start,… (RFC 3339 or Unix seconds); each ends where the next starts")
	f.StringVar(&tlsKeys, "tls-keys", "", "an NSS key log (SSLKEYLOGFILE format) to decrypt TLS and QUIC with (default: a run directory's "+manifest.TLSKeysFile+")")
	return cmd
}

// readKeyLog reads and checks an NSS key log for --tls-keys.
func readKeyLog(path string) ([]byte, error) {
	text, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("--tls-keys: %w", err)
	}
	var k tlsdecrypt.Keys
	n, err := k.Add(text)
	if err != nil {
		return nil, fmt.Errorf("--tls-keys %s: %w (expected NSS key log lines: LABEL CLIENT_RANDOM SECRET, hex)", path, err)
	}
	if n == 0 {
		return nil, fmt.Errorf("--tls-keys %s: no TLS secrets in it (expected NSS key log lines such as CLIENT_RANDOM or CLIENT_TRAFFIC_SECRET_0)", path)
	}
	return text, nil
}
