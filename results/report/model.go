package report

import (
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/firstboot/firstboot/results/schema"
)

// page is what both renderers show; building it once keeps the Markdown and
// the HTML telling the same story.
type page struct {
	Title    string
	Subtitle string
	// Origin is the time offsets are measured from: the first event, the
	// capture's first packet or the first step's start, whichever is earlier,
	// so no offset is negative; Zero says which in words.
	Origin   time.Time
	Zero     string
	Run      []kv
	Checked  bool // expectations were looked for
	Expects  []expectRow
	Met      int
	Failed   int
	Sections []section
	Timeline *timeline
}

type kv struct{ Key, Value string }

type expectRow struct {
	Index    int
	Step     string
	Rule     string
	Met      bool
	Evidence []string
}

// section is the whole run or one step.
type section struct {
	ID      string // HTML anchor
	Title   string
	Step    string // "" for the whole run
	Failed  string // the step's error from the timeline, if any
	Figures []kv
	Dests   []destRow
	// Decrypted is set when the capture came with TLS secrets: HTTPS then
	// lists the decrypted requests, grouped by destination.
	Decrypted string
	HTTPS     []httpsGroup
	// Intercepts is the TLS interceptor's view per destination (whole run).
	Intercepts []interceptRow
	HTTP       []httpRow
	OCSP       []serverRow
	NTP        []serverRow
	TLS        []tlsRow
	SYN        []synRow
	LAN        []lanRow
	Expects    []expectRow
	Shots      []shotView
}

type destRow struct {
	Name, Party, Protocols, Ports string
	Conns, Up, Down               string
	First                         string
}

type httpRow struct {
	Time, Method, Host, URI, UserAgent, Status string
	OCSP                                       bool
	// HTTPS rows only: the HTTP version and what the response carried.
	Version, ContentType, Length string
}

// interceptRow is what TLS interception met at one destination.
type interceptRow struct {
	Name, Intercepted, Refused, Failed, Server, Detail string
}

// interceptRows groups the interceptor's records by destination (SNI, else
// the address); refusals are findings of their own (pinning, no trust).
func interceptRows(recs []Interception) []interceptRow {
	type agg struct {
		ok, refused, failed int64
		server, detail      string
	}
	m := map[string]*agg{}
	for _, r := range recs {
		name := r.SNI
		if name == "" {
			name = r.Dst
		}
		a := m[name]
		if a == nil {
			a = &agg{}
			m[name] = a
		}
		switch r.Outcome {
		case "intercepted":
			a.ok++
		case "refused":
			a.refused++
			if a.detail == "" {
				a.detail = "refused interception: " + r.Detail
			}
		default:
			a.failed++
			if a.detail == "" {
				a.detail = r.Detail
			}
		}
		if u := r.Upstream; u != nil && a.server == "" {
			a.server = strings.TrimSpace(u.Version + " " + u.ALPN)
			if n := len(u.Chain); n > 0 {
				a.server += ", issued by " + u.Chain[0].Issuer
			}
		}
	}
	names := make([]string, 0, len(m))
	for n := range m {
		names = append(names, n)
	}
	sort.Strings(names)
	out := make([]interceptRow, 0, len(names))
	for _, n := range names {
		a := m[n]
		out = append(out, interceptRow{Name: n, Intercepted: commas(a.ok), Refused: commas(a.refused), Failed: commas(a.failed),
			Server: orDash(a.server), Detail: orDash(a.detail)})
	}
	return out
}

// httpsGroup is one destination's decrypted requests.
type httpsGroup struct {
	Name string
	Rows []httpRow
}

type serverRow struct {
	Name, Address, Detail string
}

type tlsRow struct {
	JA4, JA3, Transport, Conns, SNI string
}

// lanRow is one identifier announced on the local network.
type lanRow struct {
	Kind, Value, Protocols, Senders, Count, First string
	Machine                                       bool // the studied machine sent it
}

type synRow struct {
	Host, Tcpdump, P0f, TTL, Count, First string
}

type shotView struct {
	Name, Path, Size string
	// Text is the screen's OCR text, when the run kept it.
	Text string
	// Data is the PNG; nil when too large to embed (then only Path is linked).
	Data []byte
}

func build(in *Input) (*page, error) {
	a := in.Analysis
	if a == nil {
		return nil, fmt.Errorf("report: no analysis given")
	}
	p := &page{Title: "firstboot report", Checked: in.HasScenario}
	p.Origin, p.Zero = origin(a)
	if m := in.Manifest; m != nil {
		name := m.Scenario.Name
		if name == "" {
			name = m.RunID
		}
		p.Title = "firstboot report: " + name
		p.Run = runFacts(in)
	}
	p.Subtitle = fmt.Sprintf("Capture %s (%s), %s to %s. Times are seconds from %s; bytes are IP bytes (headers included) unless said otherwise.",
		orDash(a.Input.File), orDash(a.Input.Format), utc(a.Summary.FirstTS), utc(a.Summary.LastTS), p.Zero)

	for _, r := range in.Expectations {
		row := expectRow{Index: r.Index, Step: r.Step, Rule: r.Rule, Met: r.Met, Evidence: r.Evidence}
		p.Expects = append(p.Expects, row)
		if r.Met {
			p.Met++
		} else {
			p.Failed++
		}
	}

	stepErr := map[string]string{}
	if in.Manifest != nil {
		for _, e := range in.Manifest.Timeline {
			if e.Kind == "step" && e.Error != "" {
				stepErr[e.Name] = e.Error
			}
		}
	}
	conns := map[string]schema.Conn{}
	for _, c := range a.Conns {
		conns[c.UID] = c
	}
	shotsByStep := map[string][]shotView{}
	steps := map[string]bool{}
	for _, v := range a.Steps {
		steps[v.Name] = true
	}
	for _, s := range in.Screenshots {
		step := s.Step
		if !steps[step] {
			step = ""
		}
		sv := shotView{Name: s.Name, Path: s.Path, Size: bytesHuman(s.Size), Text: s.Text}
		if isPNG(s.Data) {
			sv.Data = s.Data
		}
		shotsByStep[step] = append(shotsByStep[step], sv)
	}

	whole := section{ID: "whole-run", Title: "Whole run"}
	whole.Figures = figures(a, a.Summary, "", a.DHCP)
	if w := a.Summary.Warnings; w != nil {
		// Warnings are damaged or missing data only; what a clean capture
		// has too (checksum offload, ARP) is a note.
		problems := w.Problems()
		if len(problems) == 0 {
			problems = []string{"none"}
		}
		whole.Figures = append(whole.Figures, kv{"Capture warnings", strings.Join(problems, "; ")})
		if notes := a.Summary.Notes(); len(notes) > 0 {
			whole.Figures = append(whole.Figures, kv{"Capture notes", strings.Join(notes, "; ")})
		}
	}
	whole.Dests = dests(a.Destinations, p.Origin)
	whole.HTTP = httpRows(a.HTTP, "", false, p.Origin)
	whole.Decrypted, whole.HTTPS = httpsGroups(a, a.Summary.TLSDecryption, "", false, conns, p.Origin)
	whole.Intercepts = interceptRows(in.Interceptions)
	whole.OCSP = ocspRows(a.HTTP, "", false)
	whole.NTP = ntpRows(a.NTP, "", false, conns)
	whole.TLS = tlsRows(a, "", false)
	whole.SYN = synRows(a, a.Fingerprints, p.Origin)
	whole.LAN = lanRows(a.LANAnnouncements, p.Origin)
	whole.Shots = shotsByStep[""]
	for _, r := range p.Expects {
		if r.Step == "" {
			whole.Expects = append(whole.Expects, r)
		}
	}
	p.Sections = append(p.Sections, whole)

	for i, v := range a.Steps {
		title := "Step: " + v.Name
		switch v.Name {
		case "before": // the analyzer's names for traffic outside every step
			title = "Before the first step"
		case "after":
			title = "After the last step"
		}
		s := section{ID: fmt.Sprintf("step-%d", i+1), Title: title, Step: v.Name, Failed: stepErr[v.Name]}
		var dhcp []schema.DHCP
		for _, d := range a.DHCP {
			if d.Step == v.Name {
				dhcp = append(dhcp, d)
			}
		}
		s.Figures = append([]kv{{"Step span", fmt.Sprintf("%s to %s (%s)", offset(v.Start, p.Origin), offset(v.End, p.Origin), seconds(v.End.Sub(v.Start).Seconds()))}},
			figures(a, v.Summary, v.Name, dhcp)...)
		s.Figures[1].Key = "Traffic span"
		s.Dests = dests(v.Destinations, p.Origin)
		s.HTTP = httpRows(a.HTTP, v.Name, true, p.Origin)
		s.Decrypted, s.HTTPS = httpsGroups(a, v.Summary.TLSDecryption, v.Name, true, conns, p.Origin)
		s.OCSP = ocspRows(a.HTTP, v.Name, true)
		s.NTP = ntpRows(a.NTP, v.Name, true, conns)
		s.TLS = tlsRows(a, v.Name, true)
		s.SYN = synRows(a, v.Fingerprints, p.Origin)
		s.LAN = lanRows(v.LANAnnouncements, p.Origin)
		s.Shots = shotsByStep[v.Name]
		for _, r := range p.Expects {
			if r.Step == v.Name {
				s.Expects = append(s.Expects, r)
			}
		}
		p.Sections = append(p.Sections, s)
	}
	p.Timeline = buildTimeline(a, p.Origin)
	return p, nil
}

// lanRows lists LAN identifiers, the machine's first, then by kind and value.
func lanRows(ids []schema.LANIdentifier, origin time.Time) []lanRow {
	sorted := append([]schema.LANIdentifier(nil), ids...)
	sort.SliceStable(sorted, func(i, j int) bool {
		a, b := sorted[i], sorted[j]
		if a.Host != b.Host {
			return a.Host
		}
		if a.Kind != b.Kind {
			return a.Kind < b.Kind
		}
		return a.Value < b.Value
	})
	out := make([]lanRow, 0, len(sorted))
	for _, id := range sorted {
		out = append(out, lanRow{Kind: id.Kind, Value: id.Value, Protocols: strings.Join(id.Protocols, ", "),
			Senders: strings.Join(id.Senders, ", "), Count: commas(id.Count), First: offset(id.FirstTS, origin), Machine: id.Host})
	}
	return out
}

// origin returns the first event, which offsets count from, and what it is
// in words: a scenario's first step usually starts (power-on) seconds before
// the machine's first packet.
func origin(a *schema.Analysis) (time.Time, string) {
	t, what := a.Summary.FirstTS, "the capture's first packet"
	for _, v := range a.Steps {
		if !v.Start.IsZero() && (t.IsZero() || v.Start.Before(t)) {
			t, what = v.Start, "the start of step "+v.Name
		}
	}
	if t.IsZero() {
		return t, "the capture's first packet"
	}
	if first := a.Summary.FirstTS; !first.IsZero() && first.After(t) {
		what += fmt.Sprintf(" (%s; the first packet came at %s)", utc(t), offset(first, t))
	}
	return t, what
}

func runFacts(in *Input) []kv {
	m := in.Manifest
	var out []kv
	add := func(k, v string) {
		if strings.TrimSpace(v) != "" {
			out = append(out, kv{k, v})
		}
	}
	add("Run", m.RunID)
	status := m.Status
	if m.Reason != "" {
		status += ": " + m.Reason
	}
	add("Status", status)
	sc := m.Scenario.Name
	if m.Scenario.File != "" {
		sc += " (" + m.Scenario.File + ")"
	}
	add("Scenario", sc)
	add("Scenario sha256", m.Scenario.SHA256)
	add("OS", joinNonEmpty(" ", m.Scenario.OS.Family, m.Scenario.OS.Product, m.Scenario.OS.Release, m.Scenario.OS.Build))
	img := joinNonEmpty(" ", m.Image.Kind, m.Image.Name)
	for i, f := range m.Image.Files {
		img += "; " + f
		if i < len(m.Image.SHA256) && m.Image.SHA256[i] != "" {
			img += " sha256 " + m.Image.SHA256[i]
		}
	}
	add("Image", img)
	add("First-party domains", strings.Join(m.Scenario.FirstParty, ", "))
	add("Tools", joinNonEmpty(", ", prefixed("firstboot ", m.Tools.Firstboot), prefixed("libvirt ", m.Tools.Libvirt), prefixed("QEMU ", m.Tools.QEMU), prefixed("accelerator ", m.Tools.Accelerator)))
	add("Host", joinNonEmpty(", ", m.Host.Kernel, m.Host.Arch, cpus(m.Host.CPUs)))
	add("Network", joinNonEmpty(", ", m.Network.Mode, m.Network.Subnet, prefixed("gateway ", m.Network.Gateway)))
	add("Machine", joinNonEmpty(", ", m.Machine.Name, cpus(m.Machine.CPUs), memory(m.Machine.MemoryMiB), m.Machine.Firmware))
	capt := fmt.Sprintf("%s, %s packets, %s dropped by the kernel", m.Capture.File, commas(int64(m.Capture.Packets)), commas(int64(m.Capture.Drops)))
	if m.Capture.StoppedBy != "" {
		capt += ", stopped by " + m.Capture.StoppedBy
	}
	add("Capture", capt)
	return out
}

func cpus(n int) string {
	if n == 0 {
		return ""
	}
	return fmt.Sprintf("%d CPU", n)
}

func memory(mib int) string {
	if mib == 0 {
		return ""
	}
	return fmt.Sprintf("%d MiB", mib)
}

func prefixed(p, v string) string {
	if v == "" {
		return ""
	}
	return p + v
}

func joinNonEmpty(sep string, parts ...string) string {
	var out []string
	for _, s := range parts {
		if s != "" {
			out = append(out, s)
		}
	}
	return strings.Join(out, sep)
}

// figures are a section's headline numbers, in the order studies give them.
func figures(a *schema.Analysis, s schema.Summary, step string, dhcp []schema.DHCP) []kv {
	ipv6 := "no"
	if s.IPv6Seen {
		ipv6 = fmt.Sprintf("yes (%s packets)", commas(s.IPv6Packets))
	}
	hostname := a.Host.DHCPHostname
	if step != "" {
		var names []string
		seen := map[string]bool{}
		for _, d := range dhcp {
			if d.HostName != "" && !seen[d.HostName] {
				seen[d.HostName] = true
				names = append(names, d.HostName)
			}
		}
		hostname = strings.Join(names, ", ")
		if len(dhcp) == 0 {
			hostname = "(no DHCP in this step)"
		}
	}
	ip := a.Host.IP
	if len(a.Host.OtherIPs) > 0 {
		ip = joinNonEmpty(", ", ip, strings.Join(a.Host.OtherIPs, ", "))
	}
	return []kv{
		{"Span", fmt.Sprintf("%s to %s (%s)", utc(s.FirstTS), utc(s.LastTS), seconds(s.Duration))},
		{"Packets", commas(s.Packets)},
		{"Bytes (whole frames)", commas(s.FrameBytes)},
		{"Bytes (IP)", commas(s.IPBytes)},
		{"DNS queries", commas(s.DNSQueries)},
		{"TCP connections", commas(s.TCPConnections)},
		{"UDP flows", commas(s.UDPFlows)},
		{"ICMP flows", commas(s.ICMPFlows)},
		{"Remote hosts", commas(s.DistinctRemoteHosts)},
		{"IPv6 seen", ipv6},
		{"Machine IP", orDash(ip)},
		{"Machine MAC", orDash(a.Host.MAC)},
		{"DHCP hostname", orDash(hostname)},
	}
}

// dests lists destinations by first seen (the order traffic tells its story), then name.
func dests(ds []schema.Destination, origin time.Time) []destRow {
	sorted := append([]schema.Destination(nil), ds...)
	sort.SliceStable(sorted, func(i, j int) bool {
		if !sorted[i].FirstSeen.Equal(sorted[j].FirstSeen) {
			return sorted[i].FirstSeen.Before(sorted[j].FirstSeen)
		}
		return sorted[i].Name < sorted[j].Name
	})
	out := make([]destRow, 0, len(sorted))
	for _, d := range sorted {
		out = append(out, destRow{
			Name: d.Name, Party: orDash(d.Party), Protocols: strings.Join(d.Protocols, ", "), Ports: strings.Join(d.Ports, ", "),
			Conns: commas(d.Connections), Up: commas(d.BytesUp), Down: commas(d.BytesDown), First: offset(d.FirstSeen, origin),
		})
	}
	return out
}

// httpRows lists the cleartext HTTP requests of a step (or all).
func httpRows(hs []schema.HTTP, step string, scoped bool, origin time.Time) []httpRow {
	var out []httpRow
	for i := range hs {
		h := &hs[i]
		if h.TLS || scoped && h.Step != step {
			continue
		}
		out = append(out, httpRowOf(h, origin))
	}
	return out
}

func httpRowOf(h *schema.HTTP, origin time.Time) httpRow {
	status := "(no response)"
	if h.StatusCode != 0 {
		status = strings.TrimSpace(fmt.Sprintf("%d %s", h.StatusCode, h.StatusMsg))
	}
	host := h.Host
	if host == "" {
		host = h.RespH
	}
	return httpRow{Time: offset(h.TS, origin), Method: h.Method, Host: host, URI: h.URI, UserAgent: h.UserAgent, Status: status, OCSP: h.OCSP}
}

// httpsGroups lists the decrypted requests of a step (or all) under the
// destination their connection was attributed to, and says how decryption
// went; nothing when the capture had no secrets.
func httpsGroups(a *schema.Analysis, d *schema.TLSDecryption, step string, scoped bool, conns map[string]schema.Conn, origin time.Time) (string, []httpsGroup) {
	if d == nil {
		return "", nil
	}
	total := d.Decrypted + d.NoKeys + d.HandshakeOnly + d.Failed + d.Unsupported + d.Incomplete
	note := fmt.Sprintf("%d of %d TLS and QUIC connections decrypted", d.Decrypted, total)
	if d.NoKeys > 0 {
		note += fmt.Sprintf("; %d without secrets (a client that refused the lab certificate, or a server other than the lab's)", d.NoKeys)
	}
	if d.Failed+d.Unsupported > 0 {
		note += fmt.Sprintf("; %d could not be decrypted", d.Failed+d.Unsupported)
	}
	if d.Incomplete > 0 {
		note += fmt.Sprintf("; %d only in part (packets missing from the capture)", d.Incomplete)
	}
	byDest := map[string]*httpsGroup{}
	var order []string
	for i := range a.HTTP {
		h := &a.HTTP[i]
		if !h.TLS || scoped && h.Step != step {
			continue
		}
		name := conns[h.UID].Name
		if name == "" {
			name = h.RespH
		}
		g := byDest[name]
		if g == nil {
			g = &httpsGroup{Name: name}
			byDest[name] = g
			order = append(order, name)
		}
		r := httpRowOf(h, origin)
		r.Version, r.ContentType, r.Length = "HTTP/"+h.Version, h.ResponseContentType, commas(h.ResponseBodyLen)
		g.Rows = append(g.Rows, r)
	}
	sort.Strings(order)
	out := make([]httpsGroup, 0, len(order))
	for _, n := range order {
		out = append(out, *byDest[n])
	}
	return note, out
}

func ocspRows(hs []schema.HTTP, step string, scoped bool) []serverRow {
	type agg struct {
		addrs map[string]bool
		n     int
	}
	m := map[string]*agg{}
	for _, h := range hs {
		if !h.OCSP || (scoped && h.Step != step) {
			continue
		}
		name := h.OCSPResponder
		if name == "" {
			name = h.Host
		}
		if m[name] == nil {
			m[name] = &agg{addrs: map[string]bool{}}
		}
		m[name].addrs[h.RespH] = true
		m[name].n++
	}
	var out []serverRow
	for _, name := range sortedKeys(m) {
		out = append(out, serverRow{Name: name, Address: strings.Join(sortedKeys(m[name].addrs), ", "), Detail: plural(int64(m[name].n), "request")})
	}
	return out
}

func ntpRows(ns []schema.NTP, step string, scoped bool, conns map[string]schema.Conn) []serverRow {
	type agg struct {
		name          string
		sent, replies int64
		versions      map[string]bool
	}
	m := map[string]*agg{}
	for _, n := range ns {
		if scoped && n.Step != step {
			continue
		}
		g := m[n.RespH]
		if g == nil {
			g = &agg{versions: map[string]bool{}}
			if c, ok := conns[n.UID]; ok && c.Name != "" && c.Name != n.RespH {
				g.name = c.Name
			}
			m[n.RespH] = g
		}
		if n.Sender == n.RespH {
			g.replies++
		} else {
			g.sent++
			g.versions[fmt.Sprintf("NTPv%d %s", n.Version, n.ModeName)] = true
		}
	}
	var out []serverRow
	for _, addr := range sortedKeys(m) {
		g := m[addr]
		name := g.name
		if name == "" {
			name = addr
		}
		detail := fmt.Sprintf("%s sent, %s", plural(g.sent, "packet"), plural(g.replies, "reply"))
		if vs := sortedKeys(g.versions); len(vs) > 0 {
			detail += "; " + strings.Join(vs, ", ")
		}
		out = append(out, serverRow{Name: name, Address: addr, Detail: detail})
	}
	return out
}

// machine returns the machine's addresses; empty when unknown (then every host counts).
func machine(a *schema.Analysis) map[string]bool {
	m := map[string]bool{}
	if a.Host.IP != "" {
		m[a.Host.IP] = true
	}
	for _, ip := range a.Host.OtherIPs {
		m[ip] = true
	}
	return m
}

func tlsRows(a *schema.Analysis, step string, scoped bool) []tlsRow {
	me := machine(a)
	type agg struct {
		ja3, transport, sni map[string]bool
		n                   int64
	}
	m := map[string]*agg{}
	for _, t := range a.TLS {
		if (scoped && t.Step != step) || (len(me) > 0 && !me[t.OrigH]) {
			continue
		}
		key := t.JA4
		if m[key] == nil {
			m[key] = &agg{ja3: map[string]bool{}, transport: map[string]bool{}, sni: map[string]bool{}}
		}
		g := m[key]
		g.n++
		if t.JA3 != "" {
			g.ja3[t.JA3] = true
		}
		g.transport[t.Transport] = true
		sni := t.ServerName
		if sni == "" {
			sni = "(no SNI)"
		}
		g.sni[sni] = true
	}
	var out []tlsRow
	for _, ja4 := range sortedKeys(m) {
		g := m[ja4]
		ja3 := sortedKeys(g.ja3)
		ja3s := strings.Join(ja3, ", ")
		if len(ja3) > 2 {
			ja3s = fmt.Sprintf("%s distinct", commas(int64(len(ja3))))
		}
		out = append(out, tlsRow{JA4: orDash(ja4), JA3: orDash(ja3s), Transport: strings.Join(sortedKeys(g.transport), ", "),
			Conns: commas(g.n), SNI: strings.Join(sortedKeys(g.sni), ", ")})
	}
	return out
}

// synRows lists the machine's own TCP SYN fingerprints (the responders'
// SYN-ACKs describe the lab, not the system under study).
func synRows(a *schema.Analysis, fps []schema.Fingerprint, origin time.Time) []synRow {
	me := machine(a)
	var out []synRow
	for _, f := range fps {
		if f.Kind != "syn" || (len(me) > 0 && !me[f.Host]) {
			continue
		}
		df := ""
		if f.DF {
			df = ", DF"
		}
		out = append(out, synRow{Host: f.Host, Tcpdump: f.Tcpdump, P0f: f.P0f,
			TTL: fmt.Sprintf("%d (initial %d%s)", f.TTL, f.ITTL, df), Count: commas(f.Count), First: offset(f.FirstTS, origin)})
	}
	return out
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func plural(n int64, word string) string {
	s := commas(n) + " " + word
	if n != 1 {
		if strings.HasSuffix(word, "y") {
			return s[:len(s)-1] + "ies"
		}
		s += "s"
	}
	return s
}

// Check is the text shown for a result: "met" or "not met".
func check(met bool) string {
	if met {
		return "met"
	}
	return "NOT MET"
}
