package simnet

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"testing"
)

// Two lab networks in one namespace (parallel runs) share the TPROXY policy
// route: removing one network's redirect must keep it for the other.
func TestRedirectSharedPolicyRoute(t *testing.T) {
	ns := scratchNetns(t, "fbt-shared-")
	ctx := context.Background()
	ports := DefaultPorts()
	a, c := netip.MustParseAddr("10.77.1.1"), netip.MustParseAddr("10.77.2.1")
	if err := InstallRedirect(ctx, ns, "virbr-a", a, ports); err != nil {
		t.Fatal(err)
	}
	if err := InstallRedirect(ctx, ns, "virbr-b", c, ports); err != nil {
		t.Fatal(err)
	}
	if err := RemoveRedirect(ctx, ns, "virbr-a", a, ports); err != nil {
		t.Fatalf("removing the first network's redirect: %v", err)
	}
	if !tproxyRulePresent(ctx, ns) {
		t.Fatal("the policy route went away while the second network still uses it")
	}
	if err := RemoveRedirect(ctx, ns, "virbr-b", c, ports); err != nil {
		t.Fatalf("removing the second network's redirect: %v", err)
	}
	if tproxyRulePresent(ctx, ns) {
		t.Error("the policy route stayed after the last network's redirect was removed")
	}
}

// Two networks' redirects removed at the same moment (two runs ending
// together) must both succeed and leave nothing behind.
func TestRedirectConcurrentRemoval(t *testing.T) {
	ns := scratchNetns(t, "fbt-conc-")
	ctx := context.Background()
	ports := DefaultPorts()
	addrs := []netip.Addr{netip.MustParseAddr("10.77.1.1"), netip.MustParseAddr("10.77.2.1"), netip.MustParseAddr("10.77.3.1")}
	for i, a := range addrs {
		if err := InstallRedirect(ctx, ns, fmt.Sprintf("virbr-%d", i), a, ports); err != nil {
			t.Fatal(err)
		}
	}
	errs := make(chan error, len(addrs))
	for i, a := range addrs {
		go func() { errs <- RemoveRedirect(ctx, ns, fmt.Sprintf("virbr-%d", i), a, ports) }()
	}
	for range addrs {
		if err := <-errs; err != nil {
			t.Errorf("concurrent removal: %v", err)
		}
	}
	if tproxyRulePresent(ctx, ns) {
		t.Error("the policy route stayed after every redirect was removed")
	}
}

// scratchNetns creates a namespace named prefix and random hex, removed when
// the test ends.
func scratchNetns(t *testing.T, prefix string) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatal("needs root (network namespaces, iptables)")
	}
	var b [4]byte
	rand.Read(b[:])
	ns := prefix + hex.EncodeToString(b[:])
	if out, err := exec.Command("ip", "netns", "add", ns).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add: %v: %s", err, out)
	}
	t.Cleanup(func() { exec.Command("ip", "netns", "del", ns).Run() })
	return ns
}
