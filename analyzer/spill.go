package analyzer

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/firstboot/firstboot/analyzer/capfile"
	"github.com/firstboot/firstboot/analyzer/zeeklog"
	"github.com/firstboot/firstboot/results/schema"
)

// AnalyzeFileTo analyses the capture at path and writes the same files as
// WriteOutputs into dir, but writes each record out as soon as it is final
// (in its final encoding, into spill files in a temporary directory inside
// dir), so memory follows the live flows, not the size of the capture. At
// the end analysis.json and the logs are assembled from the spill files.
//
// The returned analysis holds everything except the record lists Conns,
// DNS, TLS, HTTP and NTP, which are only in the files (DHCP is there: it is
// small and the host detection needs it).
func AnalyzeFileTo(ctx context.Context, path string, opts Options, dir, logFormat string) (*schema.Analysis, error) {
	asJSON, err := jsonLogs(logFormat)
	if err != nil {
		return nil, err
	}
	r, err := capfile.Open(path)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	if err := checkLinkType(r); err != nil {
		return nil, err
	}
	if _, err := newStepper(opts.Steps); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("creating output directory: %w", err)
	}
	s, err := newFileSink(dir, asJSON)
	if err != nil {
		return nil, err
	}
	defer s.remove()
	a, err := run(ctx, r, filepath.Base(path), opts, s)
	if err != nil {
		return nil, err
	}
	if err := s.assemble(dir, a); err != nil {
		return nil, err
	}
	return a, nil
}

func jsonLogs(logFormat string) (bool, error) {
	switch logFormat {
	case LogsTSV, "":
		return false, nil
	case LogsJSON:
		return true, nil
	}
	return false, fmt.Errorf("log format %q: want tsv or json", logFormat)
}

// The streamed record kinds, in analysis.json's field order.
const (
	kindConn = iota
	kindDNS
	kindTLS
	kindHTTP
	kindNTP
	numKinds
)

// spillKinds names each streamed kind: its analysis.json field, its log and columns.
var spillKinds = [numKinds]struct {
	field, log string
	cols       []zeeklog.Column
}{
	{"conns", "conn", connCols},
	{"dns", "dns", dnsCols},
	{"tls", "ssl", sslCols},
	{"http", "http", httpCols},
	{"ntp", "ntp", ntpCols},
}

// spillFile holds encoded records: analysis.json list elements (compact, one
// per line, separated by ",\n", without the brackets) or log rows (without header).
type spillFile struct {
	f *os.File
	w *bufio.Writer
	n int64 // records
}

// fileSink encodes each record into two spill files: its analysis.json
// element and its log row.
type fileSink struct {
	dir    string // temporary, inside the output directory, removed at the end
	asJSON bool
	re     *recordEncoder
	raw    []byte
	vals   []zeeklog.Value
	js     [numKinds]spillFile
	logF   [numKinds]*os.File
	logs   [numKinds]*zeeklog.Writer
	err    error // the first write error; later records are dropped
}

func newFileSink(outDir string, asJSON bool) (*fileSink, error) {
	tmp, err := os.MkdirTemp(outDir, ".analysis-spill-")
	if err != nil {
		return nil, fmt.Errorf("creating spill directory in %s (is it writable?): %w", outDir, err)
	}
	s := &fileSink{dir: tmp, asJSON: asJSON, re: newRecordEncoder()}
	for k := range numKinds {
		jf, err := os.Create(filepath.Join(tmp, spillKinds[k].field+".json"))
		if err != nil {
			s.remove()
			return nil, fmt.Errorf("creating spill file: %w", err)
		}
		s.js[k] = spillFile{f: jf, w: bufio.NewWriterSize(jf, 256<<10)}
		lf, err := os.Create(filepath.Join(tmp, spillKinds[k].log+".log"))
		if err != nil {
			s.remove()
			return nil, fmt.Errorf("creating spill file: %w", err)
		}
		s.logF[k] = lf
		s.logs[k] = zeeklog.NewRows(lf, spillKinds[k].cols, asJSON)
	}
	return s, nil
}

// remove closes and deletes the spill files.
func (s *fileSink) remove() {
	for k := range numKinds {
		if s.js[k].f != nil {
			s.js[k].f.Close()
		}
		if s.logF[k] != nil {
			s.logF[k].Close()
		}
	}
	os.RemoveAll(s.dir)
}

// put writes one record: raw is its compact JSON (or an encoding error),
// vals its log row.
func (s *fileSink) put(k int, raw []byte, err error, vals []zeeklog.Value) {
	if s.err != nil {
		return
	}
	if err != nil {
		s.err = fmt.Errorf("encoding analysis: %w", err)
		return
	}
	sf := &s.js[k]
	if sf.n > 0 {
		sf.w.WriteString(",\n")
	}
	sf.w.WriteString("    ")
	if _, err := sf.w.Write(raw); err != nil {
		s.err = fmt.Errorf("writing spill file: %w", err)
		return
	}
	sf.n++
	if err := s.logs[k].Row(vals); err != nil {
		s.err = fmt.Errorf("writing spill file: %w", err)
	}
}

func (s *fileSink) conn(c *schema.Conn) {
	var err error
	s.raw, err = s.re.conn(s.raw[:0], c)
	s.vals = connRow(s.vals[:0], c)
	s.put(kindConn, s.raw, err, s.vals)
}

func (s *fileSink) dns(d *schema.DNS) {
	var err error
	s.raw, err = s.re.dns(s.raw[:0], d)
	s.vals = dnsRow(s.vals[:0], d)
	s.put(kindDNS, s.raw, err, s.vals)
}

func (s *fileSink) tls(t *schema.TLS) {
	var err error
	s.raw, err = s.re.generic(s.raw[:0], t)
	s.vals = sslRow(s.vals[:0], t)
	s.put(kindTLS, s.raw, err, s.vals)
}

func (s *fileSink) http(h *schema.HTTP) {
	var err error
	s.raw, err = s.re.generic(s.raw[:0], h)
	s.vals = httpRow(s.vals[:0], h)
	s.put(kindHTTP, s.raw, err, s.vals)
}

func (s *fileSink) ntp(n *schema.NTP) {
	var err error
	s.raw, err = s.re.generic(s.raw[:0], n)
	s.vals = ntpRow(s.vals[:0], n)
	s.put(kindNTP, s.raw, err, s.vals)
}

// assemble writes analysis.json and the logs into dir from a and the spill files.
func (s *fileSink) assemble(dir string, a *schema.Analysis) error {
	for k := range numKinds {
		if err := s.js[k].w.Flush(); err != nil && s.err == nil {
			s.err = fmt.Errorf("writing spill file: %w", err)
		}
		if err := s.logs[k].Flush(); err != nil && s.err == nil {
			s.err = fmt.Errorf("writing spill file: %w", err)
		}
	}
	if s.err != nil {
		return fmt.Errorf("%w (is %s full?)", s.err, dir)
	}
	lists := map[string]*spillFile{}
	for k := range numKinds {
		lists[spillKinds[k].field] = &s.js[k]
	}
	if err := writeFileAtomic(filepath.Join(dir, "analysis.json"), func(w io.Writer) error {
		return writeAnalysisJSON(w, a, lists)
	}); err != nil {
		return err
	}
	for k := range numKinds {
		kd := spillKinds[k]
		f := s.logF[k]
		err := writeFileAtomic(filepath.Join(dir, kd.log+".log"), func(w io.Writer) error {
			if err := zeeklog.Header(w, kd.log, kd.cols, a.Summary.FirstTS, s.asJSON); err != nil {
				return err
			}
			if err := copyFrom(w, f); err != nil {
				return err
			}
			return zeeklog.Trailer(w, a.Summary.LastTS, s.asJSON)
		})
		if err != nil {
			return err
		}
	}
	// The small logs come from the analysis itself.
	for _, l := range logs(a) {
		if l.path != "dhcp" && l.path != "fingerprint" {
			continue
		}
		err := writeFileAtomic(filepath.Join(dir, l.path+".log"), func(w io.Writer) error {
			return writeLog(w, l, a, s.asJSON)
		})
		if err != nil {
			return err
		}
	}
	return nil
}

// copyFrom copies all of f to w (file to file: in the kernel, where it can).
func copyFrom(w io.Writer, f *os.File) error {
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return err
	}
	_, err := io.Copy(w, f)
	return err
}
