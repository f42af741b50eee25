package main

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// flakyStore is an HTTP file store on loopback that fails the way real
// networks do: the first PUT of every third file gets a 503, every eleventh
// request has its connection reset, every thirteenth answers slowly.
type flakyStore struct {
	*httptest.Server
	mu       sync.Mutex
	files    map[string][]byte
	putCount map[string]int
	refused  map[string]bool // files whose first PUT got a 503
	requests int
}

func newFlakyStore() *flakyStore {
	s := &flakyStore{files: map[string][]byte{}, putCount: map[string]int{}, refused: map[string]bool{}}
	s.Server = httptest.NewServer(http.HandlerFunc(s.serve))
	return s
}

func (s *flakyStore) serve(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	s.requests++
	n := s.requests
	s.mu.Unlock()
	if n%11 == 0 {
		if hj, ok := w.(http.Hijacker); ok {
			c, _, _ := hj.Hijack()
			c.Close() // connection reset mid-request
			return
		}
	}
	if n%13 == 0 {
		time.Sleep(300 * time.Millisecond)
	}
	switch r.Method {
	case http.MethodHead:
		s.mu.Lock()
		data, ok := s.files[r.URL.Path]
		s.mu.Unlock()
		if !ok {
			w.WriteHeader(http.StatusNotFound)
			return
		}
		sum := sha256.Sum256(data)
		w.Header().Set("X-Checksum-Sha256", hex.EncodeToString(sum[:]))
		w.Header().Set("Content-Length", strconv.Itoa(len(data)))
	case http.MethodPut:
		body, err := io.ReadAll(r.Body)
		if err != nil {
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		s.mu.Lock()
		defer s.mu.Unlock()
		s.putCount[r.URL.Path]++
		if s.putCount[r.URL.Path] == 1 && len(s.putCount)%3 == 1 {
			s.refused[r.URL.Path] = true
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		if want := r.Header.Get("X-Checksum-Sha256"); want != "" {
			sum := sha256.Sum256(body)
			if hex.EncodeToString(sum[:]) != want {
				w.WriteHeader(http.StatusBadRequest)
				return
			}
		}
		s.files[r.URL.Path] = body
		w.WriteHeader(http.StatusCreated)
	default:
		w.WriteHeader(http.StatusMethodNotAllowed)
	}
}

// puts is the number of PUTs that stored a file.
func (s *flakyStore) puts() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for p, c := range s.putCount {
		n += c
		if s.refused[p] {
			n--
		}
	}
	return n
}

// check compares what the store holds under prefix with the directory: every
// file byte-identical, nothing extra, none stored twice.
func (s *flakyStore) check(t *testing.T, dir, prefix string) {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	seen := 0
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		want, _ := os.ReadFile(p)
		got, ok := s.files[prefix+filepath.ToSlash(rel)]
		switch {
		case !ok:
			t.Errorf("%s was not uploaded", rel)
		case !bytes.Equal(got, want):
			t.Errorf("%s arrived different (%d bytes, want %d)", rel, len(got), len(want))
		}
		key := prefix + filepath.ToSlash(rel)
		stored := s.putCount[key]
		if s.refused[key] {
			stored--
		}
		if stored > 1 {
			t.Errorf("%s was stored %d times", rel, stored)
		}
		seen++
		return nil
	})
	for k := range s.files {
		if !strings.HasPrefix(k, prefix) {
			t.Errorf("unexpected upload %s", k)
		}
	}
	if seen == 0 || len(s.files) != seen {
		t.Errorf("store holds %d files, directory has %d", len(s.files), seen)
	}
}
