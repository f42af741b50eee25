package report

import (
	"fmt"
	"net/url"
	"strings"
)

// Markdown renders the report as plain Markdown (GitHub-flavoured tables, no
// HTML), for pasting into a blog post or an issue. Values from the traffic
// are put in code spans, so no name or URI can become markup or a link.
func Markdown(in *Input) ([]byte, error) {
	p, err := build(in)
	if err != nil {
		return nil, err
	}
	var b strings.Builder
	w := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }

	w("# %s\n\n%s\n\n", mdText(p.Title), mdText(p.Subtitle))
	if len(p.Run) > 0 {
		w("## Run\n\n| Field | Value |\n|---|---|\n")
		for _, f := range p.Run {
			w("| %s | %s |\n", mdText(f.Key), mdText(f.Value))
		}
		w("\n")
	}
	w("## Expectations\n\n")
	switch {
	case !p.Checked:
		w("No scenario file was found next to the capture, so no expectations were checked.\n\n")
	case len(p.Expects) == 0:
		w("The scenario states no expectations.\n\n")
	default:
		w("**%d of %d met, %d not met.**\n\n", p.Met, p.Met+p.Failed, p.Failed)
		mdExpects(&b, p.Expects, true)
	}
	for _, s := range p.Sections {
		w("## %s\n\n", mdText(s.Title))
		if s.Failed != "" {
			w("> **This step failed:** %s\n\n", mdText(s.Failed))
		}
		w("| Figure | Value |\n|---|---|\n")
		for _, f := range s.Figures {
			w("| %s | %s |\n", mdText(f.Key), mdText(f.Value))
		}
		w("\n")
		if s.Step != "" && len(s.Expects) > 0 {
			w("### Expectations for this step\n\n")
			mdExpects(&b, s.Expects, false)
		}

		w("### Destinations (%d)\n\n", len(s.Dests))
		if len(s.Dests) == 0 {
			w("None.\n\n")
		} else {
			w("| Destination | Party | Protocols | Ports | Connections | Bytes up | Bytes down | First seen |\n")
			w("|---|---|---|---|---:|---:|---:|---:|\n")
			for _, d := range s.Dests {
				w("| %s | %s | %s | %s | %s | %s | %s | %s |\n", mdCell(d.Name), mdText(d.Party), mdText(d.Protocols), mdText(d.Ports), d.Conns, d.Up, d.Down, d.First)
			}
			w("\n")
		}

		if s.Decrypted != "" {
			n := 0
			for _, g := range s.HTTPS {
				n += len(g.Rows)
			}
			w("### HTTPS requests (%d)\n\n%s.\n\n", n, mdText(s.Decrypted))
			for _, g := range s.HTTPS {
				w("#### %s\n\n", mdText(g.Name))
				w("| Time | Method | Authority | Path | Version | User agent | Status | Content type | Bytes |\n|---:|---|---|---|---|---|---|---|---:|\n")
				for _, h := range g.Rows {
					w("| %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", h.Time, mdCell(h.Method), mdCell(h.Host), mdCell(h.URI), mdText(h.Version),
						mdCell(h.UserAgent), mdCell(h.Status), mdCell(h.ContentType), h.Length)
				}
				w("\n")
			}
		}

		if len(s.Intercepts) > 0 {
			w("### TLS interception (%d destinations)\n\n", len(s.Intercepts))
			w("| Destination | Intercepted | Refused | Failed | Real server | Note |\n|---|---:|---:|---:|---|---|\n")
			for _, r := range s.Intercepts {
				w("| %s | %s | %s | %s | %s | %s |\n", mdCell(r.Name), r.Intercepted, r.Refused, r.Failed, mdText(r.Server), mdText(r.Detail))
			}
			w("\n")
		}

		w("### Plain-HTTP requests (%d)\n\n", len(s.HTTP))
		if len(s.HTTP) == 0 {
			w("None.\n\n")
		} else {
			w("| Time | Method | Host | URI | User agent | Status |\n|---:|---|---|---|---|---|\n")
			for _, h := range s.HTTP {
				method := mdCell(h.Method)
				if h.OCSP {
					method += " (OCSP)"
				}
				w("| %s | %s | %s | %s | %s | %s |\n", h.Time, method, mdCell(h.Host), mdCell(h.URI), mdCell(h.UserAgent), mdCell(h.Status))
			}
			w("\n")
		}

		w("### OCSP responders (%d)\n\n", len(s.OCSP))
		mdServers(&b, s.OCSP, "Responder", "Requests")
		w("### NTP servers (%d)\n\n", len(s.NTP))
		mdServers(&b, s.NTP, "Server", "Packets")

		w("### TLS fingerprints (%d)\n\n", len(s.TLS))
		if len(s.TLS) == 0 {
			w("None.\n\n")
		} else {
			w("| JA4 | JA3 | Transport | Connections | SNI |\n|---|---|---|---:|---|\n")
			for _, t := range s.TLS {
				w("| %s | %s | %s | %s | %s |\n", mdCell(t.JA4), mdCell(t.JA3), mdText(t.Transport), t.Conns, mdCell(t.SNI))
			}
			w("\n")
		}

		w("### LAN announcements (%d)\n\n", len(s.LAN))
		if len(s.LAN) == 0 {
			w("None.\n\n")
		} else {
			w("What machines revealed to the local network (mDNS, LLMNR, NetBIOS, SSDP, WS-Discovery, DHCP, ARP, neighbour discovery, multicast groups); the studied machine's first.\n\n")
			w("| Machine | Kind | Value | Protocols | Senders | Messages | First seen |\n|---|---|---|---|---|---:|---:|\n")
			for _, l := range s.LAN {
				mark := ""
				if l.Machine {
					mark = "yes"
				}
				w("| %s | %s | %s | %s | %s | %s | %s |\n", mark, mdText(l.Kind), mdCell(l.Value), mdText(l.Protocols), mdCell(l.Senders), l.Count, l.First)
			}
			w("\n")
		}

		w("### TCP SYN fingerprint (%d)\n\n", len(s.SYN))
		if len(s.SYN) == 0 {
			w("None.\n\n")
		} else {
			w("| Host | tcpdump | p0f | TTL | SYNs | First seen |\n|---|---|---|---|---:|---:|\n")
			for _, f := range s.SYN {
				w("| %s | %s | %s | %s | %s | %s |\n", mdCell(f.Host), mdCell(f.Tcpdump), mdCell(f.P0f), mdText(f.TTL), f.Count, f.First)
			}
			w("\n")
		}

		if len(s.Shots) > 0 {
			w("### Screenshots\n\n")
			for _, sh := range s.Shots {
				w("![%s](%s)\n\n", mdText(sh.Name), mdPath(sh.Path))
				if sh.Text != "" {
					w("Text read on %s (OCR):\n\n%s\n", mdText(sh.Name), mdIndented(sh.Text))
				}
			}
		}
	}
	return []byte(b.String()), nil
}

func mdExpects(b *strings.Builder, rs []expectRow, withStep bool) {
	for _, r := range rs {
		scope := ""
		if withStep {
			scope = " (whole run)"
			if r.Step != "" {
				scope = " (step " + mdText(r.Step) + ")"
			}
		}
		mark := "✅ met"
		if !r.Met {
			mark = "❌ **NOT MET**"
		}
		fmt.Fprintf(b, "- %s — #%d %s%s\n", mark, r.Index, mdCode(r.Rule), scope)
		for _, e := range r.Evidence {
			fmt.Fprintf(b, "  - %s\n", mdCode(e))
		}
	}
	b.WriteString("\n")
}

func mdServers(b *strings.Builder, rows []serverRow, name, detail string) {
	if len(rows) == 0 {
		b.WriteString("None.\n\n")
		return
	}
	fmt.Fprintf(b, "| %s | Address | %s |\n|---|---|---|\n", name, detail)
	for _, r := range rows {
		fmt.Fprintf(b, "| %s | %s | %s |\n", mdCell(r.Name), mdCell(r.Address), mdText(r.Detail))
	}
	b.WriteString("\n")
}

// mdText escapes the Markdown punctuation that could start markup (emphasis,
// links, HTML, tables), for text that is shown as is.
func mdText(s string) string {
	s = clean(s)
	var b strings.Builder
	for _, r := range s {
		if strings.ContainsRune("\\`*_[]<>|~&", r) {
			b.WriteByte('\\')
		}
		b.WriteRune(r)
	}
	return b.String()
}

// mdCode puts s in a code span: its content is literal, never markup.
func mdCode(s string) string {
	s = clean(s)
	if s == "" || s == "—" {
		return "—"
	}
	longest, run := 0, 0
	for _, r := range s {
		if r == '`' {
			run++
			longest = max(longest, run)
		} else {
			run = 0
		}
	}
	fence := strings.Repeat("`", longest+1)
	if strings.HasPrefix(s, "`") || strings.HasSuffix(s, "`") || strings.HasPrefix(s, " ") || strings.HasSuffix(s, " ") {
		s = " " + s + " "
	}
	return fence + s + fence
}

// mdCell is mdCode for a table cell: a pipe would end the cell even inside a
// code span, so it is escaped (GitHub's tables unescape it). The table parser
// reads a backslash and the character after it as a pair, so a backslash just
// before a pipe is shown as \x5c lest it pair with the escaping backslash.
func mdCell(s string) string {
	c := mdCode(strings.ReplaceAll(s, `\|`, `\x5c|`))
	return strings.ReplaceAll(c, "|", `\|`)
}

// mdIndented is text as an indented code block: nothing in it is Markdown,
// whatever the screen said.
func mdIndented(s string) string {
	var b strings.Builder
	for _, l := range strings.Split(strings.TrimRight(s, "\n"), "\n") {
		b.WriteString("    " + clean(l) + "\n")
	}
	return b.String()
}

// mdPath percent-encodes a relative path for a link target.
func mdPath(p string) string {
	parts := strings.Split(p, "/")
	for i, s := range parts {
		parts[i] = url.PathEscape(s)
	}
	return strings.Join(parts, "/")
}
