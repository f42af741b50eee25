// Package export writes analysed runs as Parquet tables, one per record
// kind (conns, dns, tls, http, destinations, steps), each row carrying the
// run, scenario, OS release, campaign, repetition, host label and step, so a
// campaign of thousands of runs opens in DuckDB, pandas or Spark. The same
// input gives the same bytes (runs in run-id order, records in file order,
// fixed writer settings, nothing from the clock).
package export

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/parquet-go/parquet-go"

	"github.com/firstboot/firstboot/results/manifest"
	"github.com/firstboot/firstboot/results/schema"
)

// Tables lists the tables written, each as <name>.parquet.
var Tables = []string{"conns", "dns", "tls", "http", "destinations", "steps"}

// RunColumns start every row: which run, of what, where.
type RunColumns struct {
	Run        string `parquet:"run"`
	Scenario   string `parquet:"scenario"`
	OSProduct  string `parquet:"os_product"`
	OSRelease  string `parquet:"os_release"`
	Campaign   string `parquet:"campaign"`
	Execution  string `parquet:"execution"`
	Job        string `parquet:"job"`
	Repetition int32  `parquet:"repetition"`
	HostLabel  string `parquet:"host_label"`
	// Step is the scenario step the record started in ("before"/"after"
	// outside them); in destinations, "" is the whole run.
	Step string `parquet:"step"`
}

// Conn is a conn.log record.
type Conn struct {
	RunColumns
	TS          time.Time `parquet:"ts,timestamp(microsecond)"`
	UID         string    `parquet:"uid"`
	OrigH       string    `parquet:"orig_h"`
	OrigP       int32     `parquet:"orig_p"`
	RespH       string    `parquet:"resp_h"`
	RespP       int32     `parquet:"resp_p"`
	Proto       string    `parquet:"proto"`
	Service     string    `parquet:"service"`
	Duration    float64   `parquet:"duration"`
	OrigBytes   int64     `parquet:"orig_bytes"`
	RespBytes   int64     `parquet:"resp_bytes"`
	ConnState   string    `parquet:"conn_state"`
	History     string    `parquet:"history"`
	OrigPkts    int64     `parquet:"orig_pkts"`
	OrigIPBytes int64     `parquet:"orig_ip_bytes"`
	RespPkts    int64     `parquet:"resp_pkts"`
	RespIPBytes int64     `parquet:"resp_ip_bytes"`
	Name        string    `parquet:"name"`
	NameSource  string    `parquet:"name_source"`
}

// DNS is a dns.log record.
type DNS struct {
	RunColumns
	TS        time.Time `parquet:"ts,timestamp(microsecond)"`
	UID       string    `parquet:"uid"`
	OrigH     string    `parquet:"orig_h"`
	RespH     string    `parquet:"resp_h"`
	Proto     string    `parquet:"proto"`
	Query     string    `parquet:"query"`
	QType     string    `parquet:"qtype"`
	Rcode     string    `parquet:"rcode"`
	RTT       *float64  `parquet:"rtt,optional"`
	Answers   []string  `parquet:"answers,list"`
	TTLs      []float64 `parquet:"ttls,list"`
	Truncated bool      `parquet:"truncated"`
}

// TLS is an ssl.log record (TLS over TCP, or QUIC).
type TLS struct {
	RunColumns
	TS          time.Time `parquet:"ts,timestamp(microsecond)"`
	UID         string    `parquet:"uid"`
	OrigH       string    `parquet:"orig_h"`
	RespH       string    `parquet:"resp_h"`
	RespP       int32     `parquet:"resp_p"`
	Transport   string    `parquet:"transport"`
	Version     string    `parquet:"version"`
	ServerName  string    `parquet:"server_name"`
	Established bool      `parquet:"established"`
	ECH         bool      `parquet:"ech"`
	ClientALPN  []string  `parquet:"client_alpn,list"`
	JA3         string    `parquet:"ja3"`
	JA4         string    `parquet:"ja4"`
}

// HTTP is an http.log record.
type HTTP struct {
	RunColumns
	TS              time.Time `parquet:"ts,timestamp(microsecond)"`
	UID             string    `parquet:"uid"`
	OrigH           string    `parquet:"orig_h"`
	RespH           string    `parquet:"resp_h"`
	Method          string    `parquet:"method"`
	Host            string    `parquet:"host"`
	URI             string    `parquet:"uri"`
	UserAgent       string    `parquet:"user_agent"`
	StatusCode      int32     `parquet:"status_code"`
	RequestBodyLen  int64     `parquet:"request_body_len"`
	ResponseBodyLen int64     `parquet:"response_body_len"`
}

// Destination is one destination of a run's whole capture (step "") or of one step.
type Destination struct {
	RunColumns
	Name        string    `parquet:"name"`
	Org         string    `parquet:"org"`
	Party       string    `parquet:"party"`
	Protocols   []string  `parquet:"protocols,list"`
	Ports       []string  `parquet:"ports,list"`
	Addresses   []string  `parquet:"addresses,list"`
	Connections int64     `parquet:"connections"`
	BytesUp     int64     `parquet:"bytes_up"`
	BytesDown   int64     `parquet:"bytes_down"`
	PacketsUp   int64     `parquet:"packets_up"`
	PacketsDown int64     `parquet:"packets_down"`
	FirstSeen   time.Time `parquet:"first_seen,timestamp(microsecond)"`
	LastSeen    time.Time `parquet:"last_seen,timestamp(microsecond)"`
}

// Step is one step of a run, with its summary.
type Step struct {
	RunColumns
	Start          time.Time `parquet:"start,timestamp(microsecond)"`
	End            time.Time `parquet:"end,timestamp(microsecond)"`
	Packets        int64     `parquet:"packets"`
	IPBytes        int64     `parquet:"ip_bytes"`
	DNSQueries     int64     `parquet:"dns_queries"`
	TCPConnections int64     `parquet:"tcp_connections"`
	UDPFlows       int64     `parquet:"udp_flows"`
	Destinations   int64     `parquet:"destinations"`
}

// Result says what was written.
type Result struct {
	Runs int
	// Rows counts rows per table.
	Rows map[string]int
	// Files are the tables' paths, in Tables' order.
	Files []string
}

// ErrInput marks arguments that hold no analysed run.
var ErrInput = errors.New("export input")

// FindRuns resolves arguments (run directories, campaign executions or
// campaign directories, directories of runs, globs) into the analysed run
// directories under them, sorted by run id.
func FindRuns(args []string) ([]string, error) {
	var roots []string
	for _, a := range args {
		if strings.ContainsAny(a, "*?[") {
			m, err := filepath.Glob(a)
			if err != nil || len(m) == 0 {
				return nil, fmt.Errorf("%w: %q matches nothing", ErrInput, a)
			}
			roots = append(roots, m...)
			continue
		}
		if _, err := os.Stat(a); err != nil {
			return nil, fmt.Errorf("%w: %v", ErrInput, err)
		}
		roots = append(roots, a)
	}
	seen := map[string]bool{}
	var runs []string
	for _, r := range roots {
		err := filepath.WalkDir(r, func(p string, d os.DirEntry, err error) error {
			if err != nil || !d.IsDir() {
				return err
			}
			if _, err := os.Stat(filepath.Join(p, "analysis.json")); err == nil {
				if abs, _ := filepath.Abs(p); !seen[abs] {
					seen[abs] = true
					runs = append(runs, p)
				}
				return filepath.SkipDir // a run's own subfolders hold no runs
			}
			if strings.Count(filepath.ToSlash(strings.TrimPrefix(p, r)), "/") >= 4 {
				return filepath.SkipDir // campaigns/<name>/<execution>/runs/<run> is as deep as runs go
			}
			return nil
		})
		if err != nil {
			return nil, fmt.Errorf("%w: %v", ErrInput, err)
		}
	}
	if len(runs) == 0 {
		return nil, fmt.Errorf("%w: no analysed runs in %s", ErrInput, strings.Join(args, " "))
	}
	sort.Slice(runs, func(i, j int) bool {
		return runID(runs[i]) < runID(runs[j]) || (runID(runs[i]) == runID(runs[j]) && runs[i] < runs[j])
	})
	return runs, nil
}

func runID(dir string) string { return filepath.Base(filepath.Clean(dir)) }

// tables holds one writer per table while runs are added.
type tables struct {
	files   []*os.File
	conns   *parquet.GenericWriter[Conn]
	dns     *parquet.GenericWriter[DNS]
	tls     *parquet.GenericWriter[TLS]
	http    *parquet.GenericWriter[HTTP]
	dests   *parquet.GenericWriter[Destination]
	steps   *parquet.GenericWriter[Step]
	rows    map[string]int
	closers []func() error
}

// writerOptions are fixed, so the bytes depend on the input alone.
func writerOptions() []parquet.WriterOption {
	return []parquet.WriterOption{
		parquet.Compression(&parquet.Snappy),
		parquet.CreatedBy("firstboot", "export", "1"),
		parquet.MaxRowsPerRowGroup(1 << 20),
	}
}

func newWriter[T any](t *tables, w io.Writer) *parquet.GenericWriter[T] {
	pw := parquet.NewGenericWriter[T](w, writerOptions()...)
	t.closers = append(t.closers, pw.Close)
	return pw
}

// Write exports the runs into dir as Tables, replacing earlier exports.
func Write(ctx context.Context, runs []string, dir string) (*Result, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	t := &tables{rows: map[string]int{}}
	var tmps []string
	for _, name := range Tables {
		f, err := os.CreateTemp(dir, "."+name+"-*.parquet")
		if err != nil {
			t.abort()
			return nil, err
		}
		t.files = append(t.files, f)
		tmps = append(tmps, f.Name())
	}
	t.conns, t.dns, t.tls = newWriter[Conn](t, t.files[0]), newWriter[DNS](t, t.files[1]), newWriter[TLS](t, t.files[2])
	t.http, t.dests, t.steps = newWriter[HTTP](t, t.files[3]), newWriter[Destination](t, t.files[4]), newWriter[Step](t, t.files[5])
	for _, r := range runs {
		if err := ctx.Err(); err != nil {
			t.abort()
			return nil, err
		}
		if err := t.add(r); err != nil {
			t.abort()
			return nil, err
		}
	}
	for _, c := range t.closers {
		if err := c(); err != nil {
			t.abort()
			return nil, err
		}
	}
	res := &Result{Runs: len(runs), Rows: t.rows}
	for i, f := range t.files {
		if err := errors.Join(f.Chmod(0o644), f.Close()); err != nil {
			t.abort()
			return nil, err
		}
		final := filepath.Join(dir, Tables[i]+".parquet")
		// Remove first: renaming over a file makes ext4 flush the new one
		// before the rename returns (analyzer/outputs.go says why).
		os.Remove(final)
		if err := os.Rename(tmps[i], final); err != nil {
			return nil, err
		}
		res.Files = append(res.Files, final)
	}
	return res, nil
}

func (t *tables) abort() {
	for _, f := range t.files {
		f.Close()
		os.Remove(f.Name())
	}
}

// add appends one run's records to every table.
func (t *tables) add(dir string) error {
	data, err := os.ReadFile(filepath.Join(dir, "analysis.json"))
	if err != nil {
		return err
	}
	var a schema.Analysis
	if err := json.Unmarshal(data, &a); err != nil {
		return fmt.Errorf("%w: %s/analysis.json: %v", ErrInput, dir, err)
	}
	rc := RunColumns{Run: runID(dir)}
	if m, err := manifest.Read(dir); err == nil {
		rc.Run, rc.Scenario, rc.OSProduct, rc.OSRelease = m.RunID, m.Scenario.Name, m.Scenario.OS.Product, m.Scenario.OS.Release
		if c := m.Campaign; c != nil {
			rc.Campaign, rc.Execution, rc.Job, rc.Repetition, rc.HostLabel = c.Name, c.Instance, c.Job, int32(c.Repetition), c.Label
		}
	}
	at := func(step string) RunColumns { c := rc; c.Step = step; return c }
	conns := make([]Conn, len(a.Conns))
	for i, c := range a.Conns {
		conns[i] = Conn{RunColumns: at(c.Step), TS: c.TS, UID: c.UID, OrigH: c.OrigH, OrigP: int32(c.OrigP), RespH: c.RespH, RespP: int32(c.RespP),
			Proto: c.Proto, Service: c.Service, Duration: c.Duration, OrigBytes: c.OrigBytes, RespBytes: c.RespBytes, ConnState: c.ConnState,
			History: c.History, OrigPkts: c.OrigPkts, OrigIPBytes: c.OrigIPBytes, RespPkts: c.RespPkts, RespIPBytes: c.RespIPBytes,
			Name: c.Name, NameSource: c.NameSource}
	}
	dns := make([]DNS, len(a.DNS))
	for i, d := range a.DNS {
		dns[i] = DNS{RunColumns: at(d.Step), TS: d.TS, UID: d.UID, OrigH: d.OrigH, RespH: d.RespH, Proto: d.Proto, Query: d.Query,
			QType: d.QTypeName, Rcode: d.RcodeName, RTT: d.RTT, Answers: d.Answers, TTLs: d.TTLs, Truncated: d.TC}
	}
	tls := make([]TLS, len(a.TLS))
	for i, s := range a.TLS {
		tls[i] = TLS{RunColumns: at(s.Step), TS: s.TS, UID: s.UID, OrigH: s.OrigH, RespH: s.RespH, RespP: int32(s.RespP), Transport: s.Transport,
			Version: s.Version, ServerName: s.ServerName, Established: s.Established, ECH: s.ECH, ClientALPN: s.ClientALPN, JA3: s.JA3, JA4: s.JA4}
	}
	http := make([]HTTP, len(a.HTTP))
	for i, h := range a.HTTP {
		http[i] = HTTP{RunColumns: at(h.Step), TS: h.TS, UID: h.UID, OrigH: h.OrigH, RespH: h.RespH, Method: h.Method, Host: h.Host, URI: h.URI,
			UserAgent: h.UserAgent, StatusCode: int32(h.StatusCode), RequestBodyLen: h.RequestBodyLen, ResponseBodyLen: h.ResponseBodyLen}
	}
	var dests []Destination
	addDests := func(step string, ds []schema.Destination) {
		for _, d := range ds {
			dests = append(dests, Destination{RunColumns: at(step), Name: d.Name, Org: d.Org, Party: d.Party, Protocols: d.Protocols, Ports: d.Ports,
				Addresses: d.Addresses, Connections: d.Connections, BytesUp: d.BytesUp, BytesDown: d.BytesDown, PacketsUp: d.PacketsUp,
				PacketsDown: d.PacketsDown, FirstSeen: d.FirstSeen, LastSeen: d.LastSeen})
		}
	}
	addDests("", a.Destinations)
	steps := make([]Step, len(a.Steps))
	for i, s := range a.Steps {
		addDests(s.Name, s.Destinations)
		steps[i] = Step{RunColumns: at(s.Name), Start: s.Start, End: s.End, Packets: s.Summary.Packets, IPBytes: s.Summary.IPBytes,
			DNSQueries: s.Summary.DNSQueries, TCPConnections: s.Summary.TCPConnections, UDPFlows: s.Summary.UDPFlows, Destinations: int64(len(s.Destinations))}
	}
	return errors.Join(
		write(t, "conns", t.conns, conns), write(t, "dns", t.dns, dns), write(t, "tls", t.tls, tls),
		write(t, "http", t.http, http), write(t, "destinations", t.dests, dests), write(t, "steps", t.steps, steps))
}

func write[T any](t *tables, name string, w *parquet.GenericWriter[T], rows []T) error {
	if len(rows) == 0 {
		return nil
	}
	n, err := w.Write(rows)
	t.rows[name] += n
	if err != nil {
		return fmt.Errorf("export: %s: %w", name, err)
	}
	return nil
}
