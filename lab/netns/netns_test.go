package netns

import (
	"context"
	"fmt"
	"github.com/firstboot/firstboot/internal/testenv"
	"net"
	"os"
	"strings"
	"testing"
)

func needRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		testenv.Missing(t, "needs root")
	}
}

func TestCreateDoDelete(t *testing.T) {
	needRoot(t)
	ctx := context.Background()
	name := fmt.Sprintf("fbns-%d", os.Getpid())
	if err := Create(ctx, name); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = Delete(context.Background(), name) })
	if !Exists(name) {
		t.Fatal("namespace missing after Create")
	}
	hostLinks, err := net.Interfaces()
	if err != nil {
		t.Fatal(err)
	}
	// Inside, only lo exists, and a listener made there stays there.
	var inside []net.Interface
	var ln net.Listener
	if err := Do(name, func() error {
		var err error
		if inside, err = net.Interfaces(); err != nil {
			return err
		}
		ln, err = net.Listen("tcp4", "127.0.0.1:0")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	if len(inside) != 1 || inside[0].Name != "lo" || inside[0].Flags&net.FlagUp == 0 {
		t.Errorf("interfaces inside: %v, want only lo, up", inside)
	}
	// Back outside: the host's interfaces again, and the listener is not here.
	after, _ := net.Interfaces()
	if len(after) != len(hostLinks) {
		t.Errorf("thread namespace not restored: %d interfaces, want %d", len(after), len(hostLinks))
	}
	if c, err := net.Dial("tcp4", ln.Addr().String()); err == nil {
		c.Close()
		t.Error("listener made inside the namespace is reachable from the host")
	}
	if err := CheckIsolation(ctx, name); err != nil {
		t.Errorf("fresh lab namespace: %v", err)
	}
	if err := Delete(ctx, name); err != nil {
		t.Fatal(err)
	}
	if Exists(name) {
		t.Fatal("namespace still there after Delete")
	}
	if err := Delete(ctx, name); err != nil {
		t.Errorf("second Delete: %v", err)
	}
}

func TestCheckIsolationFindsLeaks(t *testing.T) {
	needRoot(t)
	ctx := context.Background()
	for _, tc := range []struct {
		name  string
		setup [][]string
		want  string
	}{
		{"veth", [][]string{{"ip", "link", "add", "leak0", "type", "veth", "peer", "name", "leak1"}}, "leak0"},
		{"default route", [][]string{
			{"ip", "link", "add", "br9", "type", "bridge"},
			{"ip", "addr", "add", "10.98.0.1/24", "dev", "br9"},
			{"ip", "link", "set", "br9", "up"},
			{"ip", "route", "add", "default", "via", "10.98.0.2"},
		}, "default route"},
		{"forwarding", [][]string{{"sysctl", "-q", "-w", "net.ipv4.ip_forward=1"}}, "ip_forward"},
		{"ipv6", [][]string{{"sysctl", "-q", "-w", "net.ipv6.conf.default.disable_ipv6=0"}}, "disable_ipv6"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			name := fmt.Sprintf("fbiso-%d", os.Getpid())
			if err := Create(ctx, name); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = Delete(context.Background(), name) })
			for _, argv := range tc.setup {
				if _, err := Exec(ctx, name, argv...); err != nil {
					t.Fatal(err)
				}
			}
			err := CheckIsolation(ctx, name)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("CheckIsolation = %v, want an error about %s", err, tc.want)
			}
		})
	}
}

func TestDoMissingNamespace(t *testing.T) {
	called := false
	err := Do("fb-no-such-namespace", func() error { called = true; return nil })
	if err == nil || called {
		t.Fatalf("Do on a missing namespace: err %v, fn called %v", err, called)
	}
}

func TestCreateRejectsBadNames(t *testing.T) {
	for _, n := range []string{"", "/abs/path", "a b", "x/y"} {
		if err := Create(context.Background(), n); err == nil {
			t.Errorf("Create(%q) succeeded", n)
		}
	}
}
