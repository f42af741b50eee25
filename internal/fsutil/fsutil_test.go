package fsutil

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestWriteFileAtomic(t *testing.T) {
	for _, tc := range []struct {
		name string
		perm os.FileMode
	}{{"private", 0o600}, {"public", 0o644}} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			p := filepath.Join(dir, "f.json")
			if err := os.WriteFile(p, []byte("old contents, longer than the new"), 0o666); err != nil {
				t.Fatal(err)
			}
			if err := WriteFileAtomic(p, []byte("new"), tc.perm); err != nil {
				t.Fatal(err)
			}
			got, err := os.ReadFile(p)
			if err != nil || string(got) != "new" {
				t.Fatalf("read back %q, %v; want \"new\"", got, err)
			}
			st, err := os.Stat(p)
			if err != nil {
				t.Fatal(err)
			}
			if st.Mode().Perm() != tc.perm {
				t.Errorf("mode %v, want %v", st.Mode().Perm(), tc.perm)
			}
			ents, _ := os.ReadDir(dir)
			if len(ents) != 1 {
				t.Errorf("directory holds %d entries, want only f.json (temporary file left?)", len(ents))
			}
		})
	}
}

func TestWriteFileAtomicNamesTheFile(t *testing.T) {
	p := filepath.Join(t.TempDir(), "missing-dir", "f")
	err := WriteFileAtomic(p, []byte("x"), 0o644)
	if err == nil || !strings.Contains(err.Error(), p) {
		t.Fatalf("error %v does not name %s", err, p)
	}
}

func TestFileSHA256(t *testing.T) {
	dir := t.TempDir()
	data := []byte(strings.Repeat("firstboot ", 10000))
	p := filepath.Join(dir, "f")
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	want := sha256.Sum256(data)
	sum, n, err := FileSHA256(p)
	if err != nil {
		t.Fatal(err)
	}
	if sum != hex.EncodeToString(want[:]) || n != int64(len(data)) {
		t.Errorf("FileSHA256 = %s %d, want %x %d", sum, n, want, len(data))
	}
	if _, _, err := FileSHA256(filepath.Join(dir, "none")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing file: err %v, want ErrNotExist", err)
	}
	if _, _, err := FileSHA256(dir); err == nil || !strings.Contains(err.Error(), dir) {
		t.Errorf("directory: err %v, want an error naming %s", err, dir)
	}
}

func TestLockDir(t *testing.T) {
	dir := t.TempDir()
	unlock, err := LockDir(context.Background(), dir)
	if err != nil {
		t.Fatal(err)
	}
	// flock locks belong to the open file, so a second open in this process
	// contends like another process would.
	ctx, cancel := context.WithTimeout(context.Background(), 3*lockPoll)
	defer cancel()
	if _, err := LockDir(ctx, dir); !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), dir) {
		t.Fatalf("second lock while held: err %v, want a deadline error naming %s", err, dir)
	}
	done := make(chan error, 1)
	go func() {
		u, err := LockDir(context.Background(), dir)
		if err == nil {
			u()
		}
		done <- err
	}()
	time.Sleep(lockPoll / 2)
	unlock()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("waiting LockDir did not get the lock after unlock")
	}
}
