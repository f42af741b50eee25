// Package publishtest is an in-memory HTTP store following publish's
// convention (PUT stores, HEAD answers the size and X-Checksum-Sha256, GET
// returns the file), for tests of what publishes and fetches.
package publishtest

import (
	"crypto/sha256"
	"encoding/hex"
	"io"
	"net/http"
	"strconv"
	"sync"
)

// Store keeps the files PUT to it, by URL path.
type Store struct {
	mu    sync.Mutex
	files map[string][]byte
}

// NewStore returns an empty store; serve it with httptest.NewServer.
func NewStore() *Store { return &Store{files: map[string][]byte{}} }

// File returns the file stored at path, and whether there is one.
func (s *Store) File(path string) ([]byte, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	b, ok := s.files[path]
	return b, ok
}

func (s *Store) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch r.Method {
	case http.MethodPut:
		b, _ := io.ReadAll(r.Body)
		s.files[r.URL.Path] = b
		w.WriteHeader(http.StatusCreated)
	case http.MethodGet, http.MethodHead:
		b, ok := s.files[r.URL.Path]
		if !ok {
			w.WriteHeader(http.StatusNotFound)
			return
		}
		sum := sha256.Sum256(b)
		w.Header().Set("Content-Length", strconv.Itoa(len(b)))
		w.Header().Set("X-Checksum-Sha256", hex.EncodeToString(sum[:]))
		if r.Method == http.MethodGet {
			w.Write(b)
		}
	}
}
