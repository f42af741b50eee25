package publish

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math/rand"
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

// store is an HTTP object store on loopback that follows the package's
// convention and injects faults, per "METHOD /path", in order:
//
//	503        answer 503 Service Unavailable
//	reset      read part of the request, then drop the connection without an answer
//	slow       wait longer than the client's header timeout, then answer normally
//	landed     (PUT) store the body, then drop the connection without an answer
//	truncate   (GET) send the headers and half of the body, then drop the connection
//	stall      (GET) send half of the body, then send nothing for a while
type store struct {
	mu          sync.Mutex
	files       map[string][]byte
	puts        map[string]int // PUT requests per path (faulted ones included)
	stored      map[string]int // bodies stored per path
	ranges      []string       // Range headers of GET requests
	faults      map[string][]string
	ignoreRange bool
	noChecksum  bool
	slow        time.Duration
}

func newStore(t *testing.T) (*store, *httptest.Server) {
	s := &store{files: map[string][]byte{}, puts: map[string]int{}, stored: map[string]int{}, faults: map[string][]string{}, slow: time.Second}
	srv := httptest.NewServer(s) // listens on 127.0.0.1
	t.Cleanup(srv.Close)
	return s, srv
}

func (s *store) fault(key string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	q := s.faults[key]
	if len(q) == 0 {
		return ""
	}
	s.faults[key] = q[1:]
	return q[0]
}

func (s *store) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	p := r.URL.Path
	if r.Method == http.MethodPut {
		s.mu.Lock()
		s.puts[p]++ // every PUT request, also those a fault answers
		s.mu.Unlock()
	}
	f := s.fault(r.Method + " " + p)
	switch f {
	case "503":
		http.Error(w, "try later", http.StatusServiceUnavailable)
		return
	case "reset":
		io.CopyN(io.Discard, r.Body, 100)
		panic(http.ErrAbortHandler)
	case "slow":
		time.Sleep(s.slow)
	}
	switch r.Method {
	case http.MethodPut:
		body, err := io.ReadAll(r.Body)
		if err != nil {
			return
		}
		sum := sha256.Sum256(body)
		if got := r.Header.Get(ChecksumHeader); got != hex.EncodeToString(sum[:]) {
			http.Error(w, "checksum header "+got+" does not match the body", http.StatusBadRequest)
			return
		}
		s.mu.Lock()
		s.files[p] = body
		s.stored[p]++
		s.mu.Unlock()
		if f == "landed" {
			panic(http.ErrAbortHandler)
		}
		w.WriteHeader(http.StatusCreated)
	case http.MethodHead:
		s.mu.Lock()
		body, ok := s.files[p]
		s.mu.Unlock()
		if !ok {
			w.WriteHeader(http.StatusNotFound)
			return
		}
		w.Header().Set("Content-Length", strconv.Itoa(len(body)))
		if !s.noChecksum {
			sum := sha256.Sum256(body)
			w.Header().Set(ChecksumHeader, hex.EncodeToString(sum[:]))
		}
		w.WriteHeader(http.StatusOK)
	case http.MethodGet:
		s.mu.Lock()
		body, ok := s.files[p]
		s.ranges = append(s.ranges, r.Header.Get("Range"))
		s.mu.Unlock()
		if !ok {
			http.NotFound(w, r)
			return
		}
		start := 0
		if rg := r.Header.Get("Range"); rg != "" && !s.ignoreRange {
			n, err := strconv.Atoi(strings.TrimSuffix(strings.TrimPrefix(rg, "bytes="), "-"))
			if err != nil || n > len(body) {
				w.Header().Set("Content-Range", fmt.Sprintf("bytes */%d", len(body)))
				w.WriteHeader(http.StatusRequestedRangeNotSatisfiable)
				return
			}
			start = n
			w.Header().Set("Content-Range", fmt.Sprintf("bytes %d-%d/%d", n, len(body)-1, len(body)))
		}
		part := body[start:]
		w.Header().Set("Content-Length", strconv.Itoa(len(part)))
		if start > 0 {
			w.WriteHeader(http.StatusPartialContent)
		}
		switch f {
		case "truncate":
			w.Write(part[:len(part)/2])
			w.(http.Flusher).Flush()
			panic(http.ErrAbortHandler)
		case "stall":
			w.Write(part[:len(part)/2])
			w.(http.Flusher).Flush()
			time.Sleep(s.slow)
			panic(http.ErrAbortHandler)
		}
		w.Write(part)
	}
}

func (s *store) n(m map[string]int, k string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return m[k]
}

func (s *store) file(k string) []byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.files[k]
}

func (s *store) putsString() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return fmt.Sprint(s.puts)
}

func (s *store) rangesCopy() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.ranges...)
}

func fastRetry() Retry {
	return Retry{Max: 4, WaitMin: 5 * time.Millisecond, WaitMax: 20 * time.Millisecond, HeaderTimeout: 300 * time.Millisecond, IdleTimeout: 300 * time.Millisecond}
}

func randomBytes(n int, seed int64) []byte {
	b := make([]byte, n)
	rand.New(rand.NewSource(seed)).Read(b)
	return b
}

func writeTree(t *testing.T, files map[string][]byte) string {
	dir := t.TempDir()
	for p, b := range files {
		full := filepath.Join(dir, filepath.FromSlash(p))
		os.MkdirAll(filepath.Dir(full), 0o755)
		if err := os.WriteFile(full, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func TestPublishSurvivesFaultsAndUploadsOnce(t *testing.T) {
	s, srv := newStore(t)
	files := map[string][]byte{
		"MANIFEST":                     []byte("list\n"),
		"README.md":                    []byte("# hello\n"),
		"runs/r1/capture.pcapng":       randomBytes(1<<20, 1),
		"runs/r1/screenshots/a b.png":  randomBytes(5000, 2),
		"runs/r1/steps/01-boot.pcapng": randomBytes(70000, 3),
	}
	dir := writeTree(t, files)
	s.faults["PUT /ds/runs/r1/capture.pcapng"] = []string{"503", "reset", "slow"}
	s.faults["PUT /ds/runs/r1/steps/01-boot.pcapng"] = []string{"landed"} // stored, but the answer is lost
	s.faults["HEAD /ds/README.md"] = []string{"503"}
	var log bytes.Buffer
	res, err := Publish(context.Background(), dir, Options{To: srv.URL + "/ds", Retry: fastRetry(), Progress: Lines(&log)})
	if err != nil {
		t.Fatalf("publish: %v\n%s", err, log.String())
	}
	if res.Uploaded != len(files) || res.Skipped != 0 {
		t.Errorf("uploaded %d skipped %d", res.Uploaded, res.Skipped)
	}
	for p, want := range files {
		key := "/ds/" + strings.ReplaceAll(p, " ", " ")
		if got := s.file(key); !bytes.Equal(got, want) {
			t.Errorf("%s: stored %d bytes, differs from the file (%d bytes)", p, len(got), len(want))
		}
		if s.n(s.stored, key) != 1 {
			t.Errorf("%s stored %d times, want once", p, s.n(s.stored, key))
		}
	}
	if s.n(s.puts, "/ds/runs/r1/capture.pcapng") < 3 {
		t.Errorf("capture: %d PUTs; the faults should have forced retries", s.n(s.puts, "/ds/runs/r1/capture.pcapng"))
	}
	if s.n(s.puts, "/ds/runs/r1/steps/01-boot.pcapng") != 1 {
		t.Errorf("a PUT that landed was sent %d times", s.n(s.puts, "/ds/runs/r1/steps/01-boot.pcapng"))
	}
	if !strings.HasSuffix(strings.TrimSpace(log.String()), "uploaded MANIFEST (5 B, verified: sha256)") {
		t.Errorf("MANIFEST is not last:\n%s", log.String())
	}
	// Again: everything is there, nothing is sent.
	before := s.putsString()
	res, err = Publish(context.Background(), dir, Options{To: srv.URL + "/ds", Retry: fastRetry()})
	if err != nil {
		t.Fatal(err)
	}
	if res.Uploaded != 0 || res.Skipped != len(files) || s.putsString() != before {
		t.Errorf("second publish: uploaded %d skipped %d; PUTs %s -> %v", res.Uploaded, res.Skipped, before, s.puts)
	}
	// A changed file is sent again, the others are not.
	os.WriteFile(filepath.Join(dir, "README.md"), []byte("# changed\n"), 0o644)
	res, err = Publish(context.Background(), dir, Options{To: srv.URL + "/ds", Retry: fastRetry()})
	if err != nil || res.Uploaded != 1 || string(s.file("/ds/README.md")) != "# changed\n" {
		t.Errorf("after a change: %+v, %v", res, err)
	}
}

func TestPublishGivesUpClearly(t *testing.T) {
	s, srv := newStore(t)
	dir := writeTree(t, map[string][]byte{"data.bin": []byte("x")})
	s.faults["PUT /data.bin"] = []string{"503", "503", "503", "503", "503", "503", "503", "503"}
	r := fastRetry()
	r.Max = 2
	_, err := Publish(context.Background(), dir, Options{To: srv.URL, Retry: r})
	if err == nil {
		t.Fatal("no error")
	}
	for _, want := range []string{"data.bin", "giving up after 3 attempt(s)", "503"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
	if s.n(s.puts, "/data.bin") != 3 || s.n(s.stored, "/data.bin") != 0 {
		t.Errorf("puts %d stored %d", s.n(s.puts, "/data.bin"), s.n(s.stored, "/data.bin"))
	}
}

func TestPublishPresigned(t *testing.T) {
	s, srv := newStore(t)
	dir := writeTree(t, map[string][]byte{"a.txt": []byte("aaa"), "sub/b.txt": []byte("bbb")})
	path := filepath.Join(t.TempDir(), "list.json")
	os.WriteFile(path, []byte(fmt.Sprintf(`{"files":[
		{"path":"a.txt","put":"%[1]s/bucket/key-a?sig=secret1","head":"%[1]s/bucket/key-a?sig=secret2"},
		{"path":"sub/b.txt","put":"%[1]s/bucket/key-b?sig=secret3"}]}`, srv.URL)), 0o644)
	list, err := ReadPresigned(path)
	if err != nil {
		t.Fatal(err)
	}
	res, err := Publish(context.Background(), dir, Options{Presigned: list, Retry: fastRetry()})
	if err != nil {
		t.Fatal(err)
	}
	if string(s.file("/bucket/key-a")) != "aaa" || string(s.file("/bucket/key-b")) != "bbb" {
		t.Errorf("store %v", s.files)
	}
	if res.Files[0].Verified != "sha256" || res.Files[1].Verified != "put" {
		t.Errorf("verified %+v", res.Files)
	}
	// A file missing from the list is an error before anything is sent.
	os.WriteFile(filepath.Join(dir, "c.txt"), []byte("c"), 0o644)
	if _, err := Publish(context.Background(), dir, Options{Presigned: list, Retry: fastRetry()}); err == nil || !strings.Contains(err.Error(), "c.txt") {
		t.Errorf("missing entry: %v", err)
	}
	// Secrets in presigned URLs stay out of errors.
	s.faults["PUT /bucket/key-b"] = []string{"503", "503", "503", "503", "503", "503"}
	os.Remove(filepath.Join(dir, "c.txt"))
	r := fastRetry()
	r.Max = 1
	_, err = Publish(context.Background(), dir, Options{Presigned: list, Retry: r})
	if err == nil || strings.Contains(err.Error(), "secret3") {
		t.Errorf("error leaks the signature or is nil: %v", err)
	}
}

func TestPublishWithoutRemoteChecksum(t *testing.T) {
	s, srv := newStore(t)
	s.noChecksum = true
	dir := writeTree(t, map[string][]byte{"a.txt": []byte("aaa")})
	res, err := Publish(context.Background(), dir, Options{To: srv.URL, Retry: fastRetry()})
	if err != nil || res.Files[0].Verified != "size" {
		t.Fatalf("%+v %v", res, err)
	}
	// Size alone is no proof of sameness: the file is sent again.
	res, err = Publish(context.Background(), dir, Options{To: srv.URL, Retry: fastRetry()})
	if err != nil || res.Uploaded != 1 || s.n(s.stored, "/a.txt") != 2 {
		t.Fatalf("%+v %v puts %d", res, err, s.n(s.puts, "/a.txt"))
	}
}

func sha(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

func TestFetch(t *testing.T) {
	data := randomBytes(3<<20+123, 7)
	cases := []struct {
		name         string
		faults       []string
		ignoreRange  bool
		wantResumed  bool
		wantRestarts int
	}{
		{"clean", nil, false, false, 0},
		{"truncated body resumes with Range", []string{"truncate"}, false, true, 0},
		{"reset, 503 and slow headers", []string{"reset", "503", "slow"}, false, false, 0},
		{"stall resumes", []string{"stall"}, false, true, 0},
		{"several truncations", []string{"truncate", "truncate", "truncate"}, false, true, 0},
		{"range ignored: starts over", []string{"truncate"}, true, false, 1},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s, srv := newStore(t)
			s.files["/img.qcow2"] = data
			s.faults["GET /img.qcow2"] = c.faults
			s.ignoreRange = c.ignoreRange
			dest := filepath.Join(t.TempDir(), "img.qcow2")
			res, err := Fetch(context.Background(), srv.URL+"/img.qcow2", sha(data), dest, fastRetry(), nil)
			if err != nil {
				t.Fatalf("fetch: %v (ranges %q)", err, s.rangesCopy())
			}
			got, _ := os.ReadFile(dest)
			if !bytes.Equal(got, data) {
				t.Fatalf("downloaded %d bytes, not identical to the %d served", len(got), len(data))
			}
			if _, err := os.Stat(dest + ".part"); !errors.Is(err, os.ErrNotExist) {
				t.Errorf(".part left behind: %v", err)
			}
			sawRange := false
			for _, r := range s.rangesCopy() {
				if strings.HasPrefix(r, "bytes=") && r != "bytes=0-" {
					sawRange = true
				}
			}
			if c.wantResumed && (!sawRange || res.Resumed == 0) {
				t.Errorf("did not resume: ranges %q, result %+v", s.rangesCopy(), res)
			}
			if !c.wantResumed && res.Resumed != 0 {
				t.Errorf("resumed unexpectedly: %+v", res)
			}
			if res.Restarts != c.wantRestarts {
				t.Errorf("restarts %d, want %d", res.Restarts, c.wantRestarts)
			}
		})
	}
}

func TestFetchResumesLeftoverPart(t *testing.T) {
	data := randomBytes(100000, 9)
	s, srv := newStore(t)
	s.files["/img"] = data
	dest := filepath.Join(t.TempDir(), "img")
	os.WriteFile(dest+".part", data[:40000], 0o644)
	res, err := Fetch(context.Background(), srv.URL+"/img", sha(data), dest, fastRetry(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(s.rangesCopy()) != 1 || s.rangesCopy()[0] != "bytes=40000-" || res.Resumed != 1 {
		t.Errorf("ranges %q result %+v", s.rangesCopy(), res)
	}
	if got, _ := os.ReadFile(dest); !bytes.Equal(got, data) {
		t.Error("not identical")
	}
	// Already there: no request at all.
	res, err = Fetch(context.Background(), srv.URL+"/img", sha(data), dest, fastRetry(), nil)
	if err != nil || !res.AlreadyPresent || len(s.rangesCopy()) != 1 {
		t.Errorf("second fetch: %+v %v ranges %q", res, err, s.rangesCopy())
	}
}

func TestFetchChecksumMismatchDeletesPart(t *testing.T) {
	data := randomBytes(5000, 11)
	s, srv := newStore(t)
	s.files["/img"] = data
	dest := filepath.Join(t.TempDir(), "img")
	wrong := sha([]byte("something else"))
	_, err := Fetch(context.Background(), srv.URL+"/img", wrong, dest, fastRetry(), nil)
	if !errors.Is(err, ErrChecksum) || !strings.Contains(err.Error(), wrong) || !strings.Contains(err.Error(), "deleted") {
		t.Fatalf("error %v", err)
	}
	for _, p := range []string{dest, dest + ".part"} {
		if _, err := os.Stat(p); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s exists after a mismatch", p)
		}
	}
	if _, err := Fetch(context.Background(), srv.URL+"/img", "abc", dest, fastRetry(), nil); err == nil {
		t.Error("a malformed sha256 was accepted")
	}
	if _, err := Fetch(context.Background(), srv.URL+"/missing", sha(data), dest, fastRetry(), nil); err == nil || !strings.Contains(err.Error(), "404") {
		t.Errorf("missing file: %v", err)
	}
}

func TestFetchGivesUp(t *testing.T) {
	data := randomBytes(5000, 12)
	s, srv := newStore(t)
	s.files["/img"] = data
	s.faults["GET /img"] = []string{"truncate", "truncate", "truncate", "truncate", "truncate", "truncate", "truncate", "truncate"}
	r := fastRetry()
	r.Max = 2
	dest := filepath.Join(t.TempDir(), "img")
	_, err := Fetch(context.Background(), srv.URL+"/img", sha(data), dest, r, nil)
	if err == nil || !strings.Contains(err.Error(), "giving up") || !strings.Contains(err.Error(), "run the command again to resume") {
		t.Fatalf("error %v", err)
	}
	if st, err := os.Stat(dest + ".part"); err != nil || st.Size() == 0 {
		t.Errorf("the partial file should stay for a later resume: %v", err)
	}
}

func TestParseContentRange(t *testing.T) {
	cases := []struct {
		in               string
		start, end, size int64
		ok               bool
	}{
		{"bytes 0-99/100", 0, 99, 100, true},
		{"bytes 10-99/*", 10, 99, -1, true},
		{"bytes */100", -1, -1, 100, true},
		{"bytes 5-1/100", 0, 0, 0, false},
		{"items 0-1/2", 0, 0, 0, false},
		{"bytes x-1/2", 0, 0, 0, false},
	}
	for _, c := range cases {
		s, e, z, ok := parseContentRange(c.in)
		if ok != c.ok || (ok && (s != c.start || e != c.end || z != c.size)) {
			t.Errorf("%q: %d %d %d %v", c.in, s, e, z, ok)
		}
	}
}

func TestChecksumOf(t *testing.T) {
	sum := sha([]byte("x"))
	b, _ := hex.DecodeString(sum)
	for name, h := range map[string]http.Header{
		"header": {ChecksumHeader: {strings.ToUpper(sum)}},
		"amz":    {"X-Amz-Checksum-Sha256": {base64Std(b)}},
		"etag":   {"Etag": {`"sha256:` + sum + `"`}},
	} {
		if got := checksumOf(h); got != sum {
			t.Errorf("%s: %q", name, got)
		}
	}
	if got := checksumOf(http.Header{"Etag": {`"d41d8cd98f00b204e9800998ecf8427e"`}}); got != "" {
		t.Errorf("an MD5 ETag was taken for a sha256: %q", got)
	}
}

func base64Std(b []byte) string { return base64.StdEncoding.EncodeToString(b) }
