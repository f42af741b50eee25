// Package testpg starts a real PostgreSQL server (Debian's packages) for a
// test: a fresh cluster in a temporary directory, listening only on a unix
// socket there (no TCP at all), stopped and removed by the test's cleanup.
// As root the server runs as the postgres user, since it refuses root.
package testpg

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/firstboot/firstboot/internal/testenv"
)

// Server is a running test server.
type Server struct {
	// URL reaches the database "firstboot" as the cluster's superuser.
	URL string
	Dir string
}

// bin finds Debian's PostgreSQL programs (/usr/lib/postgresql/N/bin), newest first.
func bin() (string, error) {
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	sort.Slice(dirs, func(i, j int) bool { return version(dirs[i]) > version(dirs[j]) })
	for _, d := range dirs {
		if _, err := os.Stat(filepath.Join(d, "initdb")); err == nil {
			return d, nil
		}
	}
	return "", fmt.Errorf("no PostgreSQL server programs in /usr/lib/postgresql/*/bin: run scripts/provision.sh")
}

func version(dir string) int {
	n, _ := strconv.Atoi(filepath.Base(filepath.Dir(dir)))
	return n
}

// Start initialises and starts a cluster for t.
func Start(t testing.TB) *Server {
	t.Helper()
	b, err := bin()
	if err != nil {
		testenv.Missing(t, "%v", err)
	}
	dir, err := os.MkdirTemp("", "firstboot-pg-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	var cred *syscall.Credential
	if os.Geteuid() == 0 {
		u, err := user.Lookup("postgres")
		if err != nil {
			testenv.Missing(t, "PostgreSQL refuses to run as root and there is no postgres user: run scripts/provision.sh")
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		cred = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
		if err := os.Chown(dir, uid, gid); err != nil {
			t.Fatal(err)
		}
	}
	data := filepath.Join(dir, "data")
	run := func(name string, args ...string) {
		t.Helper()
		cmd := exec.Command(filepath.Join(b, name), args...)
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
		cmd.Env = append(os.Environ(), "LC_ALL=C")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("%s %v: %v\n%s", name, args, err, out)
		}
	}
	run("initdb", "-D", data, "-U", "firstboot", "--auth=trust", "--no-sync", "-E", "UTF8")
	// A unix socket in the directory and no TCP listener: nothing reaches
	// it from outside, and tests in parallel never collide on a port.
	opts := fmt.Sprintf("-c listen_addresses='' -c unix_socket_directories='%s' -c fsync=off -c max_connections=100", dir)
	run("pg_ctl", "-D", data, "-o", opts, "-l", filepath.Join(dir, "server.log"), "-w", "-t", "60", "start")
	t.Cleanup(func() {
		cmd := exec.Command(filepath.Join(b, "pg_ctl"), "-D", data, "-m", "immediate", "-w", "stop")
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
		cmd.Run()
	})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	create := exec.CommandContext(ctx, filepath.Join(b, "createdb"), "-h", dir, "-U", "firstboot", "firstboot")
	create.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	if out, err := create.CombinedOutput(); err != nil {
		t.Fatalf("createdb: %v\n%s", err, out)
	}
	return &Server{URL: fmt.Sprintf("postgres:///firstboot?host=%s&user=firstboot&sslmode=disable", dir), Dir: dir}
}

// Log returns the server's log (for a failing test).
func (s *Server) Log() string {
	b, _ := os.ReadFile(filepath.Join(s.Dir, "server.log"))
	return string(b)
}
