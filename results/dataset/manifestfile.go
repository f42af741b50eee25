package dataset

import (
	"bufio"
	"bytes"
	"encoding/hex"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"github.com/firstboot/firstboot/internal/fsutil"
)

// Entry is one line of MANIFEST: "<sha256 hex> <size> <path>", paths relative
// to the bundle with forward slashes, sorted by path. The path is the rest of
// the line, so it may contain spaces. With coreutils:
//
//	awk '{h=$1; $1=$2=""; sub(/^  /,""); print h"  "$0}' MANIFEST | sha256sum -c
type Entry struct {
	SHA256 string
	Size   int64
	Path   string
}

// listFiles returns the bundle's regular files (relative, slash-separated,
// sorted), MANIFEST itself excluded.
func listFiles(dir string) ([]string, error) {
	var out []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			return nil
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return err
		}
		rel = filepath.ToSlash(rel)
		if rel == ManifestFile {
			return nil
		}
		if !d.Type().IsRegular() {
			return fmt.Errorf("dataset: %s is not a regular file", rel)
		}
		out = append(out, rel)
		return nil
	})
	sort.Strings(out)
	return out, err
}

func hashTree(dir string) ([]Entry, error) {
	files, err := listFiles(dir)
	if err != nil {
		return nil, err
	}
	out := make([]Entry, 0, len(files))
	for _, rel := range files {
		sum, n, err := fsutil.FileSHA256(filepath.Join(dir, filepath.FromSlash(rel)))
		if err != nil {
			return nil, fmt.Errorf("dataset: %w", err)
		}
		out = append(out, Entry{SHA256: sum, Size: n, Path: rel})
	}
	return out, nil
}

func formatManifest(es []Entry) []byte {
	var b bytes.Buffer
	for _, e := range es {
		fmt.Fprintf(&b, "%s %d %s\n", e.SHA256, e.Size, e.Path)
	}
	return b.Bytes()
}

// ReadManifest parses a bundle's MANIFEST.
func ReadManifest(path string) ([]Entry, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("dataset: %w (is this a dataset bundle?)", err)
	}
	defer f.Close()
	var out []Entry
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for line := 1; sc.Scan(); line++ {
		parts := strings.SplitN(sc.Text(), " ", 3)
		if len(parts) != 3 || len(parts[0]) != 64 {
			return nil, fmt.Errorf("dataset: %s:%d: want \"<sha256> <size> <path>\"", path, line)
		}
		if _, err := hex.DecodeString(parts[0]); err != nil {
			return nil, fmt.Errorf("dataset: %s:%d: bad sha256 %q", path, line, parts[0])
		}
		n, err := strconv.ParseInt(parts[1], 10, 64)
		if err != nil || n < 0 {
			return nil, fmt.Errorf("dataset: %s:%d: bad size %q", path, line, parts[1])
		}
		p := parts[2]
		if p == "" || strings.HasPrefix(p, "/") || strings.Contains("/"+p+"/", "/../") {
			return nil, fmt.Errorf("dataset: %s:%d: unsafe path %q", path, line, p)
		}
		out = append(out, Entry{SHA256: parts[0], Size: n, Path: p})
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("dataset: reading %s: %w", path, err)
	}
	return out, nil
}
