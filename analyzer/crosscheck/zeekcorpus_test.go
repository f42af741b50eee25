package crosscheck

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/firstboot/firstboot/analyzer"
	"github.com/firstboot/firstboot/internal/testnet"
	"github.com/firstboot/firstboot/results/schema"
)

// TestZeekCorpus analyses real captures from Zeek's test suite
// (testdata/zeek, see its README) and compares SNI, JA3, DNS and mDNS query
// names and HTTP hosts (SSDP's too) with tshark's dissection of the same
// files, and JA4 with FoxIO's definition applied to tshark's dissection of
// each ClientHello. It logs the agreement per capture family; -v shows it.
func TestZeekCorpus(t *testing.T) {
	testnet.Require(t, "tshark")
	files, err := filepath.Glob("testdata/zeek/*.gz")
	if err != nil || len(files) == 0 {
		t.Fatalf("no captures in testdata/zeek: %v", err)
	}
	report := newAgreementReport()
	for _, f := range files {
		name := strings.TrimSuffix(strings.TrimSuffix(strings.TrimSuffix(filepath.Base(f), ".gz"), ".pcap"), ".pcapng")
		a, err := analyzer.AnalyzeFile(context.Background(), f, analyzer.Options{})
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		report.add(t, name, family(name), firstbootValues(a), tsharkValues(t, f))
		checkCorpusCase(t, name, a)
	}
	report.check(t, 99)
}

// family groups a corpus case by what it covers: its name's first word.
func family(name string) string {
	f, _, _ := strings.Cut(name, "-")
	switch {
	case strings.HasPrefix(f, "quic"):
		return "quic"
	case strings.HasPrefix(f, "tls"):
		return "tls"
	case strings.HasPrefix(f, "dns"):
		return "dns"
	case f == "gtp" || f == "vxlan" || f == "pppoe" || f == "snap" || f == "vntag" || f == "mixed":
		return "tunnels and link layers"
	case f == "linux" || f == "nflog" || f == "pcapng":
		return "tunnels and link layers"
	}
	return f
}

// agreementReport sums agreements per family and kind.
type agreementReport struct {
	fams   []string
	byFam  map[string]map[string]*tally
	all    map[string]*tally
	detail []string
}

func newAgreementReport() *agreementReport {
	return &agreementReport{byFam: map[string]map[string]*tally{}, all: map[string]*tally{}}
}

func (r *agreementReport) add(t *testing.T, name, fam string, got, want refValues) {
	if r.byFam[fam] == nil {
		r.fams = append(r.fams, fam)
		r.byFam[fam] = map[string]*tally{}
	}
	for _, k := range kinds {
		tl, diff := agree(got.get(k), want.get(k))
		for _, m := range []map[string]*tally{r.byFam[fam], r.all} {
			if m[k] == nil {
				m[k] = &tally{}
			}
			m[k].add(tl)
		}
		if len(diff) > 0 {
			r.detail = append(r.detail, fmt.Sprintf("%s %s: %s", name, k, strings.Join(diff[:min(len(diff), 6)], " ")))
		}
	}
}

// check logs the table and fails when a kind agrees less than minPct
// percent overall, or JA4 less than 100%.
func (r *agreementReport) check(t *testing.T, minPct float64) {
	t.Helper()
	slices.Sort(r.fams)
	var b strings.Builder
	fmt.Fprintf(&b, "%-24s", "family")
	for _, k := range kinds {
		fmt.Fprintf(&b, " %-20s", k)
	}
	row := func(name string, m map[string]*tally) {
		fmt.Fprintf(&b, "\n%-24s", name)
		for _, k := range kinds {
			v := tally{}
			if m[k] != nil {
				v = *m[k]
			}
			fmt.Fprintf(&b, " %-20s", v)
		}
	}
	for _, f := range r.fams {
		row(f, r.byFam[f])
	}
	row("all", r.all)
	t.Logf("agreement with tshark (JA4: with FoxIO's definition over tshark's fields), matched/union of values:\n%s", b.String())
	for _, d := range r.detail {
		t.Logf("differs: %s", d)
	}
	for _, k := range kinds {
		v := r.all[k]
		if v == nil {
			continue
		}
		want := minPct
		if k == "ja4" {
			want = 100
		}
		if v.pct() < want {
			t.Errorf("%s: agreement %s, want at least %.0f%%", k, v, want)
		}
	}
}

// checkCorpusCase checks what the corpus cases are there for, beyond the
// values tshark shows: tunnels, STARTTLS and proxies as Zeek logs them.
func checkCorpusCase(t *testing.T, name string, a *schema.Analysis) {
	t.Helper()
	conn := func(service string) *schema.Conn {
		for i := range a.Conns {
			if a.Conns[i].Service == service {
				return &a.Conns[i]
			}
		}
		t.Errorf("%s: no conn with service %q", name, service)
		return &schema.Conn{}
	}
	tunnelled := func(outer, inner string) {
		o, i := conn(outer), conn(inner)
		if !slices.Equal(i.TunnelParents, []string{o.UID}) {
			t.Errorf("%s: %s conn's tunnel_parents %v, want the %s flow %s", name, inner, i.TunnelParents, outer, o.UID)
		}
	}
	switch name {
	case "vxlan-http":
		// Zeek: the VXLAN flow and the HTTP conn inside it, its tunnel_parents the VXLAN uid.
		tunnelled("vxlan", "http")
	case "gtp-outer-ip-frag":
		tunnelled("gtpv1", "http")
		if a.Summary.Warnings.FragmentsReassembled == 0 {
			t.Errorf("%s: no outer fragments reassembled", name)
		}
	case "tls-imap-starttls":
		if c := conn("imap,ssl"); c.RespP != 143 {
			t.Errorf("%s: STARTTLS conn %+v", name, c)
		}
	case "http-connect-with-header":
		c := conn("http,ssl")
		if c.Proxy != "http_connect" || c.ProxiedTo != "secure.newegg.com:443" || c.Name != "secure.newegg.com" {
			t.Errorf("%s: CONNECT conn proxy %q to %q named %q", name, c.Proxy, c.ProxiedTo, c.Name)
		}
	case "pppoe-over-qinq", "snap-tcp", "mixed-vlan-mpls", "linux-sll2":
		if n := len(a.Summary.Warnings.DecodeErrors); n > 0 {
			t.Errorf("%s: decode errors %v", name, a.Summary.Warnings.DecodeErrors)
		}
	}
	if name == "linux-sll2" && (a.Summary.NonIPFrames["arp"] != 1 || a.Summary.NonIPFrames["rarp"] != 1) {
		t.Errorf("%s: non-IP frames %v, want one ARP and one RARP", name, a.Summary.NonIPFrames)
	}
}
