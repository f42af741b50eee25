package expect

import (
	"strings"
	"testing"

	"github.com/firstboot/firstboot/results/schema"
)

const (
	synLine = "S, win 64240, options [mss 1460,sackOK,TS,nop,wscale 7]"
	synP0f  = "4:64+0:0:1460:mss*44,7:mss,sok,ts,nop,ws:df,id+:0"
	ja4A    = "t13d1516h2_8daaf6152771_02713d6af862"
	ja4B    = "t12d0909h1_aaaaaaaaaaaa_bbbbbbbbbbbb"
)

// fixture is a small run: a first-boot step talking to the vendor and the
// lab's resolver, a browse step reaching a news site and a tracker.
func fixture() *schema.Analysis {
	vendor := schema.Destination{Name: "connectivity.firstboot.test", Party: "first", Connections: 1, Protocols: []string{"http"}}
	resolver := schema.Destination{Name: "10.0.0.1", Party: "third", Connections: 3, Protocols: []string{"dns"}}
	news := schema.Destination{Name: "news.example.com", Party: "third", Connections: 2, Protocols: []string{"ssl"}}
	tracker := schema.Destination{Name: "cdn.Tencent.com", Party: "third", Connections: 1, Protocols: []string{"http"}}
	return &schema.Analysis{
		Host:         schema.Host{IP: "10.0.0.2", OtherIPs: []string{"fe80::2"}},
		Destinations: []schema.Destination{resolver, tracker, vendor, news},
		Steps: []schema.StepView{
			{Name: "first-boot", Destinations: []schema.Destination{resolver, vendor},
				Fingerprints: []schema.Fingerprint{{Host: "10.0.0.2", Kind: "syn", Tcpdump: synLine, P0f: synP0f}}},
			{Name: "browse", Destinations: []schema.Destination{tracker, news},
				Fingerprints: []schema.Fingerprint{{Host: "10.0.0.1", Kind: "syn-ack", Tcpdump: "S., win 65160"}}},
		},
		HTTP: []schema.HTTP{
			{Host: "connectivity.firstboot.test", Method: "GET", URI: "/check", Step: "first-boot"},
			{Host: "cdn.tencent.com", Method: "GET", URI: "/a", Step: "browse"},
			{Host: "CDN.tencent.com", Method: "GET", URI: "/b", Step: "browse"},
		},
		TLS: []schema.TLS{
			{ConnID: schema.ConnID{OrigH: "10.0.0.2"}, ServerName: "news.example.com", JA4: ja4A, Step: "browse"},
			{ConnID: schema.ConnID{OrigH: "10.0.0.2"}, ServerName: "", JA4: ja4A, Step: "browse"},
			// From another host: not the machine, so never held against it.
			{ConnID: schema.ConnID{OrigH: "10.0.0.9"}, ServerName: "x.example", JA4: ja4B, Step: "browse"},
		},
		Fingerprints: []schema.Fingerprint{
			{Host: "10.0.0.2", Kind: "syn", Tcpdump: synLine, P0f: synP0f},
			{Host: "10.0.0.1", Kind: "syn-ack", Tcpdump: "S., win 65160"},
		},
	}
}

func intp(n int) *int { return &n }

func TestEvaluate(t *testing.T) {
	tests := []struct {
		name string
		exp  Expect
		kind string
		met  bool
		// evidence lists substrings that must each appear in some evidence line.
		evidence []string
	}{
		{"absent met", Expect{Absent: []string{"*.baidu.com"}}, KindAbsent, true, []string{"no destination matches (of 4)"}},
		{"absent not met, case-insensitive", Expect{Absent: []string{"*.tencent.com"}}, KindAbsent, false, []string{"seen: cdn.Tencent.com (third party, 1 connection, http)"}},
		{"absent scoped to a step where it is absent", Expect{Step: "first-boot", Absent: []string{"*.tencent.com"}}, KindAbsent, true, []string{"of 2"}},
		{"absent bare pattern does not match subdomain", Expect{Absent: []string{"tencent.com"}}, KindAbsent, true, nil},
		{"absent bad pattern", Expect{Absent: []string{"[a-"}}, KindAbsent, false, []string{"bad pattern"}},
		{"present met", Expect{Step: "browse", Present: []string{"news.example.com"}}, KindPresent, true, []string{"seen: news.example.com"}},
		{"present not met in other step", Expect{Step: "first-boot", Present: []string{"news.example.com"}}, KindPresent, false, []string{"no destination matches (of 2)"}},
		{"plain http met", Expect{MaxPlainHTTP: intp(2)}, KindPlainHTTP, true, []string{"plain HTTP: cdn.tencent.com (2 requests)", "plain HTTP: connectivity.firstboot.test (1 request)"}},
		{"plain http not met", Expect{MaxPlainHTTP: intp(1)}, KindPlainHTTP, false, []string{"cdn.tencent.com", "connectivity.firstboot.test"}},
		{"plain http zero met in step", Expect{Step: "first-boot", MaxPlainHTTP: intp(1)}, KindPlainHTTP, true, []string{"connectivity.firstboot.test (1 request)"}},
		{"plain http zero not met", Expect{Step: "browse", MaxPlainHTTP: intp(0)}, KindPlainHTTP, false, []string{"cdn.tencent.com (2 requests)"}},
		{"third party met", Expect{ThirdParty: []string{"*.example.com", "*.tencent.com", "10.0.0.1"}}, KindThirdParty, true, []string{"all 3 third-party destinations allowed"}},
		{"third party not met", Expect{ThirdParty: []string{"*.example.com"}}, KindThirdParty, false, []string{"not allowed: 10.0.0.1", "not allowed: cdn.Tencent.com"}},
		{"no third party allowed", Expect{Step: "first-boot", ThirdParty: []string{}}, KindThirdParty, false, []string{"not allowed: 10.0.0.1"}},
		{"syn met (tcpdump form, extra spaces)", Expect{SYN: "S,  win 64240,\toptions [mss 1460,sackOK,TS,nop,wscale 7]"}, KindSYN, true, []string{"seen from 10.0.0.2: " + synLine}},
		{"syn met (p0f form)", Expect{SYN: synP0f}, KindSYN, true, nil},
		{"syn not met", Expect{SYN: "S, win 65535, options [mss 1460]"}, KindSYN, false, []string{"seen from 10.0.0.2: " + synLine}},
		{"syn not met: no syn from machine in step", Expect{Step: "browse", SYN: synLine}, KindSYN, false, []string{"no TCP SYN from the machine"}},
		{"ja4 met", Expect{JA4: []string{ja4A}}, KindJA4, true, []string{"allowed: " + ja4A + " (SNI (no SNI), news.example.com)"}},
		{"ja4 met with pattern", Expect{JA4: []string{"t13d1516h2_*"}}, KindJA4, true, nil},
		{"ja4 not met", Expect{JA4: []string{ja4B}}, KindJA4, false, []string{"not allowed: " + ja4A}},
		{"ja4 in a step without TLS", Expect{Step: "first-boot", JA4: []string{ja4B}}, KindJA4, true, []string{"no TLS ClientHello from the machine"}},
		{"unknown step", Expect{Step: "install", Absent: []string{"*"}}, KindStep, false, []string{`step "install" is not in the analysis (steps: first-boot, browse)`}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rs := Evaluate([]Expect{tc.exp}, fixture())
			if len(rs) != 1 {
				t.Fatalf("got %d results, want 1: %+v", len(rs), rs)
			}
			r := rs[0]
			if r.Kind != tc.kind || r.Met != tc.met || r.Index != 1 || r.Step != tc.exp.Step {
				t.Errorf("got kind %q met %v index %d step %q, want kind %q met %v index 1 step %q; evidence %q",
					r.Kind, r.Met, r.Index, r.Step, tc.kind, tc.met, tc.exp.Step, r.Evidence)
			}
			if len(r.Evidence) == 0 {
				t.Errorf("no evidence")
			}
			for _, want := range tc.evidence {
				if !containsLine(r.Evidence, want) {
					t.Errorf("evidence %q lacks %q", r.Evidence, want)
				}
			}
			if Failed(rs) == tc.met {
				t.Errorf("Failed() = %v with met = %v", Failed(rs), tc.met)
			}
		})
	}
}

func containsLine(lines []string, sub string) bool {
	for _, l := range lines {
		if strings.Contains(l, sub) {
			return true
		}
	}
	return false
}

func TestEvaluateSeveralChecksKeepOrder(t *testing.T) {
	exps := []Expect{
		{Absent: []string{"*.tencent.com", "*.baidu.com"}, Present: []string{"news.example.com"}, MaxPlainHTTP: intp(5)},
		{Step: "browse", SYN: synLine, JA4: []string{ja4A}},
	}
	rs := Evaluate(exps, fixture())
	var got []string
	for _, r := range rs {
		got = append(got, r.Step+"/"+r.Kind+"/"+r.Rule)
	}
	want := []string{
		"/absent/absent *.tencent.com",
		"/absent/absent *.baidu.com",
		"/present/present news.example.com",
		"/max_plain_http_hosts/at most 5 plain-HTTP hosts",
		"browse/syn/TCP SYN " + synLine,
		"browse/ja4/JA4 only " + ja4A,
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("results:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if rs[4].Index != 2 || rs[0].Index != 1 {
		t.Errorf("indexes %d, %d; want 1, 2", rs[0].Index, rs[4].Index)
	}
	met, failed := Count(rs)
	// Failing: absent *.tencent.com (seen) and syn in browse (no SYN there).
	if met != 4 || failed != 2 {
		t.Errorf("Count = %d met, %d failed; want 4, 2", met, failed)
	}
}

func TestEvaluateUnknownHostCountsEveryone(t *testing.T) {
	a := fixture()
	a.Host = schema.Host{}
	rs := Evaluate([]Expect{{JA4: []string{ja4A}}}, a)
	if len(rs) != 1 || rs[0].Met || !containsLine(rs[0].Evidence, "not allowed: "+ja4B) {
		t.Fatalf("with the machine unknown every ClientHello counts; got %+v", rs)
	}
}

func TestEvaluateEmpty(t *testing.T) {
	if rs := Evaluate(nil, fixture()); len(rs) != 0 || Failed(rs) {
		t.Fatalf("no expectations gave %+v", rs)
	}
	rs := Evaluate([]Expect{{Absent: []string{"*"}, Present: []string{"*"}}}, &schema.Analysis{})
	if len(rs) != 2 || !rs[0].Met || rs[1].Met {
		t.Fatalf("empty analysis: %+v", rs)
	}
}

func TestThirdPartyIgnoresLocalNetwork(t *testing.T) {
	a := &schema.Analysis{Destinations: []schema.Destination{
		{Name: "10.77.1.1", Party: "local", Connections: 8, Protocols: []string{"dns"}},
		{Name: "255.255.255.255", Party: "local", Connections: 1, Protocols: []string{"dhcp"}},
		{Name: "0.debian.pool.ntp.org", Party: "third", Connections: 1, Protocols: []string{"ntp"}},
	}}
	rs := Evaluate([]Expect{{ThirdParty: []string{"*.pool.ntp.org"}}}, a)
	if len(rs) != 1 || !rs[0].Met {
		t.Fatalf("local-network destinations counted as third parties: %+v", rs)
	}
	rs = Evaluate([]Expect{{ThirdParty: []string{}}}, a)
	if rs[0].Met || len(rs[0].Evidence) != 1 || !strings.Contains(rs[0].Evidence[0], "pool.ntp.org") {
		t.Errorf("want only the NTP pool reported: %+v", rs[0])
	}
}
