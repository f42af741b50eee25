package simnet

import (
	"context"
	"net/netip"
	"os/exec"
	"slices"
	"strings"
	"testing"

	"github.com/firstboot/firstboot/internal/owner"
)

func TestSplitRule(t *testing.T) {
	line := `-A PREROUTING -i virbr3 -p udp -m comment --comment "firstboot-simnet:pid=1,host=a b" -m comment --comment "say \"hi\"" -j RETURN`
	got, ok := splitRule(line)
	want := []string{"-A", "PREROUTING", "-i", "virbr3", "-p", "udp", "-m", "comment", "--comment", "firstboot-simnet:pid=1,host=a b", "-m", "comment", "--comment", `say "hi"`, "-j", "RETURN"}
	if !ok || !slices.Equal(got, want) {
		t.Errorf("splitRule = %q, %v; want %q", got, ok, want)
	}
	if _, ok := splitRule(`-A X --comment "open`); ok {
		t.Error("an unterminated quote was accepted")
	}
}

// A killed firstboot's redirect rules are removed; a live one's, and an older
// version's whose bridge still exists, are left exactly as they are.
func TestReapRedirects(t *testing.T) {
	ns := scratchNetns(t, "fbt-reap-")
	ctx := context.Background()
	ports := DefaultPorts()
	// The old version's bridge that still exists.
	if out, err := exec.Command("ip", "-n", ns, "link", "add", "virbr-old", "type", "bridge").CombinedOutput(); err != nil {
		t.Fatalf("ip link add: %v: %s", err, out)
	}
	install := func(bridge, addr, comment string) {
		t.Helper()
		for _, r := range redirectRules(bridge, netip.MustParseAddr(addr), ports, comment) {
			if err := run(ctx, ns, append([]string{"iptables", "-w"}, r...)); err != nil {
				t.Fatal(err)
			}
		}
	}
	self := owner.Self()
	dead := self
	dead.Start++ // the same pid, started at another time: a recycled pid
	install("virbr-dead", "10.77.1.1", ruleComment+":"+dead.String())
	install("virbr-gone", "10.77.2.1", ruleComment) // old version, bridge gone
	install("virbr-old", "10.77.3.1", ruleComment)  // old version, bridge there
	live := netip.MustParseAddr("10.77.4.1")
	if err := InstallRedirect(ctx, ns, "virbr-live", live, ports); err != nil {
		t.Fatal(err)
	}
	before := rules(t, ns)

	n := len(RedirectRules("x", live, ports))
	want := []StaleRedirect{{Bridge: "virbr-dead", Owner: dead.String(), Rules: n}, {Bridge: "virbr-gone", Rules: n}}
	found, err := FindStaleRedirects(ctx, ns)
	if err != nil || !sameStale(found, want) {
		t.Fatalf("FindStaleRedirects = %+v, %v; want %+v", found, err, want)
	}
	if after := rules(t, ns); !slices.Equal(after, before) {
		t.Fatal("FindStaleRedirects changed the rules")
	}
	reaped, err := ReapRedirects(ctx, ns)
	if err != nil || !sameStale(reaped, want) {
		t.Fatalf("ReapRedirects = %+v, %v; want %+v", reaped, err, want)
	}
	var kept []string
	for _, r := range before {
		if !strings.Contains(r, "virbr-dead") && !strings.Contains(r, "virbr-gone") {
			kept = append(kept, r)
		}
	}
	if after := rules(t, ns); !slices.Equal(after, kept) {
		t.Errorf("after reaping:\n%s\nwant:\n%s", strings.Join(after, "\n"), strings.Join(kept, "\n"))
	}
	if !tproxyRulePresent(ctx, ns) {
		t.Error("reaping took the policy route the live network still uses")
	}
	if again, err := ReapRedirects(ctx, ns); err != nil || len(again) != 0 {
		t.Errorf("a second reap found %+v, %v", again, err)
	}
	if err := RemoveRedirect(ctx, ns, "virbr-live", live, ports); err != nil {
		t.Fatalf("the live owner's RemoveRedirect after a reap: %v", err)
	}
}

// rules lists the namespace's nat and mangle PREROUTING rules.
func rules(t *testing.T, ns string) []string {
	t.Helper()
	var out []string
	for _, table := range []string{"nat", "mangle"} {
		s, err := output(context.Background(), ns, []string{"iptables", "-w", "-t", table, "-S", "PREROUTING"})
		if err != nil {
			t.Fatal(err)
		}
		for _, l := range strings.Split(strings.TrimSpace(s), "\n") {
			if strings.HasPrefix(l, "-A") {
				out = append(out, table+" "+l)
			}
		}
	}
	return out
}

func sameStale(a, b []StaleRedirect) bool {
	key := func(s StaleRedirect) string { return s.Bridge + "|" + s.Owner }
	slices.SortFunc(a, func(x, y StaleRedirect) int { return strings.Compare(key(x), key(y)) })
	slices.SortFunc(b, func(x, y StaleRedirect) int { return strings.Compare(key(x), key(y)) })
	return slices.Equal(a, b)
}
