package dataset

import (
	"bytes"
	"fmt"
	"strings"
	"time"
)

func readme(opts Options, runs []RunResult, files []string) []byte {
	var b bytes.Buffer
	p := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }
	p("# %s\n\n", opts.Title)
	p("%s\n\n", description(opts, runs))
	p("| | |\n|---|---|\n")
	p("| Creator(s) | %s |\n", cell(strings.Join(opts.Creators, "; ")))
	p("| Publisher | %s |\n", cell(opts.Publisher))
	p("| Publication date | %s |\n", opts.DatePublished)
	p("| Resource type | Dataset |\n")
	if opts.LabLocation != "" {
		p("| Lab location | %s |\n", cell(opts.LabLocation))
	}
	if opts.License != "" {
		p("| License | %s |\n", cell(opts.License))
	}
	p("| Made with | firstboot %s |\n", cell(opts.Version))
	p("| Anonymised | %v |\n\n", opts.Anonymize)

	p("## Runs\n\n")
	p("| Run | Scenario | OS | Release | Build | Captured (UTC) | Packets | Steps |\n|---|---|---|---|---|---|---|---|\n")
	for _, r := range runs {
		m := r.Manifest
		o := m.Scenario.OS
		when := ""
		if !m.Capture.Start.IsZero() {
			when = m.Capture.Start.UTC().Format(time.RFC3339)
		}
		p("| `%s` | %s | %s | %s | %s | %s | %d | %d |\n", r.ID, cell(m.Scenario.Name), cell(firstNonEmpty(o.Product, o.Family)),
			cell(o.Release), cell(o.Build), when, r.Analysis.Summary.Packets, len(r.Options.Steps))
	}
	p("\n")
	for _, r := range runs {
		p("### Run `%s`\n\n", r.ID)
		p("Status: %s. Machine: %d CPU(s), %d MiB, %s firmware. Network mode: %s.\n\n",
			cell(r.Manifest.Status), r.Manifest.Machine.CPUs, r.Manifest.Machine.MemoryMiB, cell(r.Manifest.Machine.Firmware), cell(r.Manifest.Network.Mode))
		p("| Step file | Step | Packets |\n|---|---|---|\n")
		for _, f := range r.Options.StepFiles {
			p("| `%s/%s/%s/%s` | %s | %d |\n", RunsDir, r.ID, StepsDir, f.File, cell(f.Step), f.Packets)
		}
		p("\n")
	}

	p("## Layout\n\n")
	p("```\n")
	p("MANIFEST                     sha256, size and path of every other file, sorted by path\n")
	p("README.md                    this file\n")
	p("ro-crate-metadata.json       RO-Crate 1.1 metadata (DataCite fields, runs, OS, tool version)\n")
	p("runs/<run>/manifest.json     the run: scenario, image, tool versions, network, machine, timeline\n")
	p("runs/<run>/scenario.yaml     the scenario the run followed\n")
	p("runs/<run>/capture.pcapng    the full capture (one interface, step boundaries as packet comments)\n")
	p("runs/<run>/steps/NN-<step>.pcapng  the packets of one step (same section and interface blocks)\n")
	p("runs/<run>/analysis.json     facts from the capture (schema: firstboot results/schema)\n")
	p("runs/<run>/*.log             Zeek-style TSV logs: conn, dns, ssl, http, ntp, dhcp, fingerprint\n")
	p("runs/<run>/analysis-options.json  the options the analysis was made with\n")
	p("runs/<run>/console.log, responders.jsonl, firstboot.log, screenshots/, report.md, report.html (when present)\n")
	p("```\n\n")
	p("Step captures hold the packets stamped from the step's start until the next step starts; `00-before` and the last\n")
	p("`NN-after` file hold packets before the first step and after the last step's end, and exist only when there are any.\n")
	p("Byte counts in analysis.json: `orig_bytes`/`resp_bytes` are TCP/UDP payload, `*_ip_bytes` IP-layer bytes,\n")
	p("`frame_bytes` whole frames (as tshark's frame.len).\n\n")

	if opts.Anonymize {
		p("## Anonymisation\n\n")
		p("The lab's own identifiers were replaced consistently in the captures, analyses, logs and manifests of each run:\n\n")
		p("- unicast MAC addresses: `02:00:00:00:00:01` (the studied machine), `…:02`, … in order of first appearance;\n")
		p("- lab subnet addresses: `192.0.2.0/24` (RFC 5737), gateway `.1`, machine `.2`, other hosts `.3`, … ;\n")
		p("- IPv6 addresses derived from a replaced MAC follow it;\n")
		p("- the DHCP hostname: `host0…` of the same length (DHCP options, DNS labels, text).\n\n")
		p("Packets keep their lengths; IP, TCP, UDP and ICMP checksums are updated incrementally, so a checksum that was\n")
		p("correct stays correct and one that was wrong in the original (NIC offload) stays wrong. The analyses were made\n")
		p("afresh from the anonymised captures. Not anonymised: screenshot pixels, names inside reverse-DNS (PTR) queries,\n")
		p("DNS over TCP, and addresses outside the lab subnet (the simulated internet's answers).\n\n")
	}

	p("## TLS secrets\n\n")
	if opts.KeepTLSSecrets {
		p("The captures keep their Decryption Secrets Blocks and each run its `tls-keys.log` (built with\n")
		p("`--keep-tls-secrets`): the secrets of the TLS and QUIC sessions the lab terminated. With them `tshark -r` and\n")
		p("`firstboot analyze` decrypt those sessions' requests, which can hold tokens and personal data: share with care.\n\n")
	} else {
		p("The TLS secrets of the runs (the captures' Decryption Secrets Blocks and `tls-keys.log`) were left out: they\n")
		p("open the sessions' requests, which can hold tokens and personal data. HTTPS stays encrypted in this dataset;\n")
		p("`dataset build --keep-tls-secrets` keeps them.\n\n")
	}
	p("## Checking and re-analysing\n\n")
	p("```\nfirstboot dataset verify .      # checksums, no missing or extra file, analyses and step files re-made byte for byte\n")
	p("awk '{h=$1; $1=$2=\"\"; sub(/^  /,\"\"); print h\"  \"$0}' MANIFEST | sha256sum -c   # checksums only\n```\n\n")
	p("Each run's analysis-options.json gives the first-party domains and step times; `firstboot analyze` with the\n")
	p("same firstboot version gives the same bytes.\n\n")
	p("## Files\n\n%d files besides MANIFEST, README.md and ro-crate-metadata.json; see MANIFEST for sizes and checksums.\n", countRunFiles(files))
	return b.Bytes()
}

func countRunFiles(files []string) int {
	n := 0
	for _, f := range files {
		if strings.HasPrefix(f, RunsDir+"/") {
			n++
		}
	}
	return n
}

// cell makes text safe inside a Markdown table cell.
func cell(s string) string {
	r := strings.NewReplacer("|", `\|`, "\n", " ", "\r", " ", "<", "&lt;", ">", "&gt;")
	return r.Replace(s)
}
