package analyzer

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/firstboot/firstboot/analyzer/capfile"
	"github.com/firstboot/firstboot/analyzer/zeeklog"
	"github.com/firstboot/firstboot/results/schema"
)

// AnalyzeFileTo analyses the capture at path and writes the same files as
// WriteOutputs into dir, but writes each record out as soon as it is final,
// so memory follows the live flows, not the size of the capture: log rows
// into their logs, analysis.json elements into memory up to spillMemory
// bytes, then into spill files (both in a temporary directory inside dir).
// At the end analysis.json is assembled from the buffered records, and the
// logs get their header times and move into dir.
//
// The returned analysis holds everything except the record lists Conns,
// DNS, TLS, HTTP and NTP, which are only in the files (DHCP is there: it is
// small and the host detection needs it).
func AnalyzeFileTo(ctx context.Context, path string, opts Options, dir, logFormat string) (*schema.Analysis, error) {
	return analyzeFileTo(ctx, path, opts, dir, logFormat, spillMemory, multiCore())
}

// analyzeFileTo is AnalyzeFileTo keeping at most memory bytes of records in
// memory; with async, packets are read and records written on goroutines of
// their own, beside the analysis.
func analyzeFileTo(ctx context.Context, path string, opts Options, dir, logFormat string, memory int64, async bool) (*schema.Analysis, error) {
	asJSON, err := jsonLogs(logFormat)
	if err != nil {
		return nil, err
	}
	r, err := capfile.OpenMapped(path)
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
	s, err := newFileSink(dir, asJSON, memory)
	if err != nil {
		return nil, err
	}
	defer s.remove()
	var out recordSink = s
	wait := func() {}
	if async {
		as := newAsyncSink(s)
		out, wait = as, as.close
	}
	a, err := run(ctx, r, filepath.Base(path), opts, out, async)
	wait()
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

// spillFile holds encoded analysis.json list elements (compact, one per line,
// separated by ",\n", without the brackets).
type spillFile struct {
	buf *spillBuffer
	n   int64 // records
}

// fileSink encodes each record twice: its analysis.json element into a
// spill buffer (analysis.json begins with what only the end of the capture
// tells), and its log row straight into the log, in the temporary directory
// until the end.
type fileSink struct {
	dir     string // temporary, inside the output directory, removed at the end
	asJSON  bool
	re      *recordEncoder
	budget  spillBudget
	js      [numKinds]spillFile
	logFile [numKinds]*os.File
	logW    [numKinds]*fileWriter
	logs    [numKinds]*zeeklog.Writer
	rowBuf  []zeeklog.Value
	err     error // the first write error; later records are dropped
	httpTLS tlsRows
}

func newFileSink(outDir string, asJSON bool, memory int64) (*fileSink, error) {
	tmp, err := os.MkdirTemp(outDir, ".analysis-spill-")
	if err != nil {
		return nil, fmt.Errorf("creating spill directory in %s (is it writable?): %w", outDir, err)
	}
	s := &fileSink{dir: tmp, asJSON: asJSON, re: newRecordEncoder(true), budget: spillBudget{left: memory}}
	for k := range numKinds {
		kd := spillKinds[k]
		s.js[k] = spillFile{buf: newSpillBuffer(tmp, kd.field+".json", &s.budget)}
		f, err := os.Create(filepath.Join(tmp, kd.log+".log"))
		if err != nil {
			s.remove()
			return nil, fmt.Errorf("creating %s in %s (is it writable?): %w", kd.log+".log", outDir, err)
		}
		s.logFile[k], s.logW[k] = f, newFileWriter(f, fileBuffer)
		// The #open time is the capture's first, known at the end: a
		// placeholder of the same width holds its place (see finishLog).
		cols := kd.cols
		if k == kindHTTP && asJSON {
			cols = httpColsTLS
		}
		if err := zeeklog.Header(s.logW[k], kd.log, cols, time.Time{}, asJSON); err != nil {
			s.remove()
			return nil, fmt.Errorf("writing %s: %w", f.Name(), err)
		}
		s.logs[k] = zeeklog.NewRows(s.logW[k], cols, asJSON)
	}
	return s, nil
}

// remove closes and deletes the spill files and unfinished logs.
func (s *fileSink) remove() {
	for k := range numKinds {
		if s.js[k].buf != nil {
			s.js[k].buf.close()
		}
		if s.logFile[k] != nil {
			s.logFile[k].Close()
		}
	}
	os.RemoveAll(s.dir)
}

// finishLog completes log k, its rows written, and moves it to dir: the
// trailer, and over the header's placeholder the capture's #open time.
func (s *fileSink) finishLog(k int, dir string, a *schema.Analysis) error {
	kd := spillKinds[k]
	f, path := s.logFile[k], filepath.Join(dir, kd.log+".log")
	err := zeeklog.Trailer(s.logW[k], a.Summary.LastTS, s.asJSON)
	if err == nil {
		err = s.logW[k].Flush()
	}
	if err == nil && !s.asJSON {
		var placeholder, head bytes.Buffer
		zeeklog.Header(&placeholder, kd.log, kd.cols, time.Time{}, false)
		zeeklog.Header(&head, kd.log, kd.cols, a.Summary.FirstTS, false)
		if head.Len() == placeholder.Len() {
			_, err = f.WriteAt(head.Bytes(), 0)
		} else {
			// Only a year outside 0–9999 is wider, and analysis.json,
			// written before, cannot hold such a time either.
			err = fmt.Errorf("#open time %v does not fit the header", a.Summary.FirstTS)
		}
	}
	if err == nil && k == kindHTTP && s.httpTLS.any {
		f, err = s.httpTLS.addColumn(f)
	}
	if err == nil {
		err = f.Chmod(0o644)
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	s.logFile[k] = nil
	if err == nil {
		err = replaceFile(f.Name(), path)
	}
	if err != nil {
		return fmt.Errorf("writing %s: %w (is %s full?)", path, err, dir)
	}
	return nil
}

// start begins the analysis.json element of a record of kind k: the
// separator from the previous element and the indent, which the record's
// encoding is appended to. It is built in the free space of the spill
// buffer, where put's Write takes it without a copy.
func (s *fileSink) start(k int) []byte {
	b := s.js[k].buf.AvailableBuffer()
	if s.js[k].n > 0 {
		b = append(b, ",\n"...)
	}
	return append(b, "    "...)
}

// put writes one record: raw is its element as start began it (or an
// encoding error), vals its log row.
func (s *fileSink) put(k int, raw []byte, err error, vals []zeeklog.Value) {
	if s.err != nil {
		return
	}
	if err != nil {
		s.err = fmt.Errorf("encoding analysis: %w", err)
		return
	}
	sf := &s.js[k]
	if _, err := sf.buf.Write(raw); err != nil {
		s.err = fmt.Errorf("writing spill file: %w", err)
		return
	}
	sf.n++
	if err := s.logs[k].Row(vals); err != nil {
		s.err = fmt.Errorf("writing %s.log: %w", spillKinds[k].log, err)
	}
}

// row returns the sink's row buffer, emptied: one slice reused for every
// row, where an array on the stack had to be cleared (2.5 KB) per record.
func (s *fileSink) row() []zeeklog.Value { return s.rowBuf[:0] }

func (s *fileSink) conn(c *schema.Conn) {
	raw, err := s.re.conn(s.start(kindConn), c)
	s.rowBuf = connRow(s.row(), c, true)
	s.put(kindConn, raw, err, s.rowBuf)
}

func (s *fileSink) dns(d *schema.DNS) {
	raw, err := s.re.dns(s.start(kindDNS), d)
	s.rowBuf = dnsRow(s.row(), d, true)
	s.put(kindDNS, raw, err, s.rowBuf)
}

func (s *fileSink) tls(t *schema.TLS) {
	raw, err := s.re.tls(s.start(kindTLS), t)
	s.rowBuf = sslRow(s.row(), t, true)
	s.put(kindTLS, raw, err, s.rowBuf)
}

func (s *fileSink) http(h *schema.HTTP) {
	raw, err := s.re.http(s.start(kindHTTP), h)
	if s.asJSON {
		s.rowBuf = httpRow(s.row(), h, true, tlsColJSON)
	} else {
		// TSV rows go out without the tls column; finishLog adds it when
		// a decrypted request came (tlsrows.go).
		s.rowBuf = httpRow(s.row(), h, true, tlsColNone)
		s.httpTLS.add(h.TLS)
	}
	s.put(kindHTTP, raw, err, s.rowBuf)
}

func (s *fileSink) ntp(n *schema.NTP) {
	raw, err := s.re.ntp(s.start(kindNTP), n)
	s.rowBuf = ntpRow(s.row(), n, true)
	s.put(kindNTP, raw, err, s.rowBuf)
}

// assemble writes analysis.json and the logs into dir from a and the spill files.
func (s *fileSink) assemble(dir string, a *schema.Analysis) error {
	for k := range numKinds {
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
		if err := s.finishLog(k, dir, a); err != nil {
			return err
		}
	}
	// The small logs come from the analysis itself.
	for _, l := range logs(a, s.asJSON) {
		switch l.path {
		case "dhcp", "fingerprint", "lan", "tunnel":
			if err := writeLogFile(dir, l, a, s.asJSON); err != nil {
				return err
			}
		}
	}
	return nil
}
