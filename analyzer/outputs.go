package analyzer

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/firstboot/firstboot/analyzer/zeeklog"
	"github.com/firstboot/firstboot/results/schema"
)

// Log formats for WriteOutputs.
const (
	LogsTSV  = "tsv"
	LogsJSON = "json"
)

// MarshalAnalysis renders analysis.json: indented, with a final newline.
func MarshalAnalysis(a *schema.Analysis) ([]byte, error) {
	var buf bytes.Buffer
	if err := WriteAnalysisJSON(&buf, a); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// WriteAnalysisJSON writes analysis.json to w, one top-level field or list
// element at a time so the whole document is never held in memory. It is
// encoding/json's two-space indented form, except that the record lists
// (conns, dns, tls, http, ntp) hold one compact record per line: they are
// most of the file, and a record per line is what grep, `jq -c` and line
// diffs want, at half the bytes and a fraction of the time of indenting.
func WriteAnalysisJSON(w io.Writer, a *schema.Analysis) error {
	return writeAnalysisJSON(w, a, nil)
}

// isRecordList says whether the analysis.json list is written one compact
// record per line.
func isRecordList(field string) bool {
	if field == "lan" || field == "tunnels" {
		return true
	}
	for _, k := range spillKinds {
		if k.field == field {
			return true
		}
	}
	return false
}

// writeAnalysisJSON writes analysis.json; the lists named in spilled are
// copied from their spill files instead of taken from a.
func writeAnalysisJSON(w io.Writer, a *schema.Analysis, spilled map[string]*spillFile) error {
	bw := bufio.NewWriterSize(w, 256<<10)
	var raw, ind []byte
	re := newRecordEncoder(false)
	put := func(v any, prefix string, compact bool) error {
		var err error
		// The record lists are most of the document: no reflection.
		switch r := v.(type) {
		case *schema.Conn:
			raw, err = re.conn(raw[:0], r)
		case *schema.DNS:
			raw, err = re.dns(raw[:0], r)
		case *schema.TLS:
			raw, err = re.tls(raw[:0], r)
		case *schema.HTTP:
			raw, err = re.http(raw[:0], r)
		case *schema.NTP:
			raw, err = re.ntp(raw[:0], r)
		default:
			raw, err = re.generic(raw[:0], v)
		}
		if err != nil {
			return fmt.Errorf("encoding analysis: %w", err)
		}
		if compact {
			_, err = bw.Write(raw)
			return err
		}
		ind = appendIndent(ind[:0], raw, prefix)
		_, err = bw.Write(ind)
		return err
	}
	v := reflect.ValueOf(a).Elem()
	t := v.Type()
	bw.WriteString("{\n")
	for i := 0; i < t.NumField(); i++ {
		name, opts, _ := strings.Cut(t.Field(i).Tag.Get("json"), ",")
		if opts == "omitempty" && v.Field(i).Len() == 0 && (spilled[name] == nil || spilled[name].n == 0) {
			continue // a list added since 1.0, left out when empty as encoding/json would
		}
		if i > 0 {
			bw.WriteString(",\n")
		}
		fmt.Fprintf(bw, "  %q: ", name)
		if sf := spilled[name]; sf != nil {
			if sf.n == 0 {
				bw.WriteString("[]")
				continue
			}
			bw.WriteString("[\n")
			if err := bw.Flush(); err != nil {
				return err
			}
			if _, err := sf.buf.WriteTo(w); err != nil {
				return fmt.Errorf("copying %s from its spill file: %w", name, err)
			}
			bw.WriteString("\n  ]")
			continue
		}
		fv := v.Field(i)
		if fv.Kind() != reflect.Slice || fv.IsNil() || fv.Len() == 0 {
			if err := put(fv.Interface(), "  ", false); err != nil {
				return err
			}
			continue
		}
		compact := isRecordList(name)
		bw.WriteString("[\n")
		for j := 0; j < fv.Len(); j++ {
			if j > 0 {
				bw.WriteString(",\n")
			}
			bw.WriteString("    ")
			// A pointer: encoding it is the same, without copying the record.
			if err := put(fv.Index(j).Addr().Interface(), "    ", compact); err != nil {
				return err
			}
		}
		bw.WriteString("\n  ]")
	}
	bw.WriteString("\n}\n")
	return bw.Flush()
}

// WriteOutputs writes analysis.json and the logs (conn, dns, ssl, http, ntp,
// dhcp, fingerprint) into dir; logFormat is "tsv" (Zeek ASCII) or "json" (JSON
// lines). Files are written to a temporary name and renamed, so a failed run
// leaves no half-written file behind.
func WriteOutputs(dir string, a *schema.Analysis, logFormat string) error {
	asJSON, err := jsonLogs(logFormat)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("creating output directory: %w", err)
	}
	if err := writeFileAtomic(filepath.Join(dir, "analysis.json"), func(w io.Writer) error {
		return WriteAnalysisJSON(w, a)
	}); err != nil {
		return err
	}
	for _, l := range logs(a, asJSON) {
		if err := writeLogFile(dir, l, a, asJSON); err != nil {
			return err
		}
	}
	return nil
}

// writeLogFile writes log l into dir; an optional log without rows is not
// written, and one an earlier analysis left there is removed.
func writeLogFile(dir string, l logDef, a *schema.Analysis, asJSON bool) error {
	path := filepath.Join(dir, l.path+".log")
	if l.optional && l.n == 0 {
		if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("removing %s: %w", path, err)
		}
		return nil
	}
	return writeFileAtomic(path, func(w io.Writer) error {
		return writeLog(w, l, a, asJSON)
	})
}

func writeFileAtomic(path string, write func(io.Writer) error) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	tmp := f.Name()
	err = write(f)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Chmod(tmp, 0o644)
	}
	if err == nil {
		err = replaceFile(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("writing %s: %w", path, err)
	}
	return nil
}

// replaceFile moves the finished file tmp to path, in place of the file of
// an earlier analysis. It removes that file first: renaming over it makes
// ext4 (auto_da_alloc) write the new file to disk before the rename returns,
// 40 ms of waiting on the bench capture. Outputs can be made again, so
// a crash in between losing them is an acceptable price.
func replaceFile(tmp, path string) error {
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return os.Rename(tmp, path)
}

// writeLog writes one log to w.
func writeLog(w io.Writer, l logDef, a *schema.Analysis, asJSON bool) error {
	open, closeTS := a.Summary.FirstTS, a.Summary.LastTS
	lw, err := zeeklog.New(w, l.path, l.cols, open, asJSON)
	if err != nil {
		return err
	}
	var vals []zeeklog.Value // reused: no allocation per row
	for i := 0; i < l.n; i++ {
		vals = l.row(vals[:0], i)
		if err := lw.Row(vals); err != nil {
			return err
		}
	}
	return lw.Close(closeTS)
}

type logDef struct {
	path     string
	cols     []zeeklog.Column
	n        int
	optional bool // written only when it has rows
	row      func(dst []zeeklog.Value, i int) []zeeklog.Value
}

func cols(spec ...string) []zeeklog.Column {
	out := make([]zeeklog.Column, 0, len(spec)/2)
	for i := 0; i+1 < len(spec); i += 2 {
		out = append(out, zeeklog.Column{Name: spec[i], Type: spec[i+1]})
	}
	return out
}

var idCols = []string{"id.orig_h", "addr", "id.orig_p", "port", "id.resp_h", "addr", "id.resp_p", "port"}

func withIDs(head []string, rest ...string) []zeeklog.Column {
	spec := append(append(append([]string{}, head...), idCols...), rest...)
	return cols(spec...)
}

// head appends the ts, uid and id columns most logs start with. made tells
// that the record comes from the engine, whose uids and addresses need no
// escape scan (see madeStr).
func head(dst []zeeklog.Value, id *schema.ConnID, made bool) []zeeklog.Value {
	return append(dst, zeeklog.Time(id.TS), madeStr(id.UID, made), madeStr(id.OrigH, made), zeeklog.Count(int64(id.OrigP)), madeStr(id.RespH, made), zeeklog.Count(int64(id.RespP)))
}

// madeStr is a field the engine builds from a fixed alphabet (uids,
// addresses, protocol and state names): written without the escape scan
// when the record is the engine's (TestEngineMadeFields), escaped like any
// string in a record from elsewhere (an analysis.json read back).
func madeStr(s string, made bool) zeeklog.Value {
	if made {
		return zeeklog.Safe(s)
	}
	return zeeklog.Str(s)
}

func step(s string) zeeklog.Value { return zeeklog.OptStr(s) }

func optTime(t *time.Time) zeeklog.Value {
	if t == nil {
		return zeeklog.Unset()
	}
	return zeeklog.Time(*t)
}

func logs(a *schema.Analysis, asJSON bool) []logDef {
	tlsCol, hcols := httpTLSCol(a.HTTP, asJSON)
	return []logDef{
		{path: "conn", cols: connCols, n: len(a.Conns), row: func(dst []zeeklog.Value, i int) []zeeklog.Value { return connRow(dst, &a.Conns[i], false) }},
		{path: "dns", cols: dnsCols, n: len(a.DNS), row: func(dst []zeeklog.Value, i int) []zeeklog.Value { return dnsRow(dst, &a.DNS[i], false) }},
		{path: "ssl", cols: sslCols, n: len(a.TLS), row: func(dst []zeeklog.Value, i int) []zeeklog.Value { return sslRow(dst, &a.TLS[i], false) }},
		{path: "http", cols: hcols, n: len(a.HTTP), row: func(dst []zeeklog.Value, i int) []zeeklog.Value { return httpRow(dst, &a.HTTP[i], false, tlsCol) }},
		{path: "ntp", cols: ntpCols, n: len(a.NTP), row: func(dst []zeeklog.Value, i int) []zeeklog.Value { return ntpRow(dst, &a.NTP[i], false) }},
		{path: "dhcp", cols: dhcpCols, n: len(a.DHCP), row: func(dst []zeeklog.Value, i int) []zeeklog.Value { return dhcpRow(dst, &a.DHCP[i]) }},
		{path: "fingerprint", cols: fingerprintCols, n: len(a.Fingerprints), row: func(dst []zeeklog.Value, i int) []zeeklog.Value { return fingerprintRow(dst, &a.Fingerprints[i]) }},
		// Written only when they have rows, as Zeek does.
		{path: "lan", cols: lanCols, n: len(a.LAN), optional: true, row: func(dst []zeeklog.Value, i int) []zeeklog.Value { return lanRow(dst, &a.LAN[i]) }},
		{path: "tunnel", cols: tunnelCols, n: len(a.Tunnels), optional: true, row: func(dst []zeeklog.Value, i int) []zeeklog.Value { return tunnelRow(dst, &a.Tunnels[i]) }},
	}
}

// lanCols are lan.log's columns (firstboot's own log: Zeek has none for
// these messages).
var lanCols = withIDs([]string{"ts", "time", "uid", "string"},
	"mac", "string", "proto", "string", "msg", "string", "identifiers", "vector[string]", "step", "string")

func lanRow(dst []zeeklog.Value, l *schema.LAN) []zeeklog.Value {
	// ARP and IGMP messages have no flow: no uid.
	id := &l.ConnID
	dst = append(dst, zeeklog.Time(id.TS), zeeklog.OptStr(id.UID), zeeklog.Str(id.OrigH), zeeklog.Count(int64(id.OrigP)),
		zeeklog.Str(id.RespH), zeeklog.Count(int64(id.RespP)))
	return append(dst, zeeklog.OptStr(l.MAC), zeeklog.Str(l.Proto), zeeklog.OptStr(l.Msg),
		zeeklog.List(l.Identifiers), step(l.Step))
}

// tunnelCols are tunnel.log's columns, as Zeek's (and the step).
var tunnelCols = withIDs([]string{"ts", "time", "uid", "string"},
	"tunnel_type", "enum", "action", "enum", "step", "string")

func tunnelRow(dst []zeeklog.Value, t *schema.Tunnel) []zeeklog.Value {
	return append(head(dst, &t.ConnID, false), zeeklog.Str(t.TunnelType), zeeklog.Str(t.Action), step(t.Step))
}

// connCols are conn.log's columns.
var connCols = withIDs([]string{"ts", "time", "uid", "string"},
	"proto", "enum", "service", "string", "duration", "interval", "orig_bytes", "count", "resp_bytes", "count",
	"conn_state", "string", "local_orig", "bool", "local_resp", "bool", "missed_bytes", "count", "history", "string",
	"orig_pkts", "count", "orig_ip_bytes", "count", "resp_pkts", "count", "resp_ip_bytes", "count",
	"tunnel_parents", "set[string]", "orig_l2_addr", "string", "resp_l2_addr", "string",
	"name", "string", "name_source", "string", "step", "string")

func connRow(dst []zeeklog.Value, c *schema.Conn, made bool) []zeeklog.Value {
	// Zeek leaves duration and byte counts unset for single-instant connections.
	dur, ob, rb := zeeklog.Interval(c.Duration), zeeklog.Count(c.OrigBytes), zeeklog.Count(c.RespBytes)
	if c.Duration == 0 {
		dur, ob, rb = zeeklog.Unset(), zeeklog.Unset(), zeeklog.Unset()
	}
	return append(head(dst, &c.ConnID, made),
		madeStr(c.Proto, made), zeeklog.OptStr(c.Service), dur, ob, rb,
		madeStr(c.ConnState, made), zeeklog.Unset(), zeeklog.Unset(), zeeklog.Count(c.MissedBytes), zeeklog.OptStr(c.History),
		zeeklog.Count(c.OrigPkts), zeeklog.Count(c.OrigIPBytes), zeeklog.Count(c.RespPkts), zeeklog.Count(c.RespIPBytes),
		tunnelParents(c.TunnelParents), zeeklog.OptStr(c.OrigL2Addr), zeeklog.OptStr(c.RespL2Addr),
		zeeklog.Str(c.Name), zeeklog.Str(c.NameSource), step(c.Step))
}

func tunnelParents(uids []string) zeeklog.Value {
	if len(uids) == 0 {
		return zeeklog.Unset()
	}
	return zeeklog.List(uids)
}

// dnsCols are dns.log's columns.
var dnsCols = withIDs([]string{"ts", "time", "uid", "string"},
	"proto", "enum", "trans_id", "count", "rtt", "interval", "query", "string", "qclass", "count", "qclass_name", "string",
	"qtype", "count", "qtype_name", "string", "rcode", "count", "rcode_name", "string", "TC", "bool",
	"answers", "vector[string]", "TTLs", "vector[interval]", "kind", "string", "step", "string")

func dnsRow(dst []zeeklog.Value, d *schema.DNS, made bool) []zeeklog.Value {
	rtt, rcode, answers, ttls := zeeklog.Unset(), zeeklog.Unset(), zeeklog.Unset(), zeeklog.Unset()
	if d.RTT != nil {
		rtt = zeeklog.Interval(*d.RTT)
	}
	if d.Rcode != nil {
		rcode = zeeklog.Count(int64(*d.Rcode))
	}
	if len(d.Answers) > 0 {
		answers, ttls = zeeklog.List(d.Answers), zeeklog.Intervals(d.TTLs)
	}
	return append(head(dst, &d.ConnID, made),
		madeStr(d.Proto, made), zeeklog.Count(int64(d.TransID)), rtt, zeeklog.OptStr(d.Query),
		zeeklog.Count(int64(d.QClass)), zeeklog.OptStr(qclassName(d.QClass)), zeeklog.Count(int64(d.QType)), zeeklog.OptStr(d.QTypeName),
		rcode, zeeklog.OptStr(d.RcodeName), zeeklog.Bool(d.TC), answers, ttls, madeStr(d.Kind, made), step(d.Step))
}

// sslCols are ssl.log's columns.
var sslCols = withIDs([]string{"ts", "time", "uid", "string"},
	"version", "string", "cipher", "string", "server_name", "string", "next_protocol", "string", "established", "bool",
	"ja3", "string", "ja4", "string", "transport", "string", "ja3_string", "string",
	"client_alpn", "vector[string]", "client_supported_versions", "vector[string]", "ech", "bool", "step", "string")

func sslRow(dst []zeeklog.Value, t *schema.TLS, made bool) []zeeklog.Value {
	return append(head(dst, &t.ConnID, made),
		zeeklog.OptStr(t.Version), zeeklog.OptStr(t.Cipher), zeeklog.OptStr(t.ServerName), zeeklog.OptStr(t.NextProtocol),
		zeeklog.Bool(t.Established), zeeklog.OptStr(t.JA3), zeeklog.OptStr(t.JA4), zeeklog.Str(t.Transport), zeeklog.OptStr(t.JA3String),
		zeeklog.List(t.ClientALPN), zeeklog.List(t.ClientVersions), zeeklog.Bool(t.ECH), step(t.Step))
}

// httpCols are http.log's columns.
var httpCols = withIDs([]string{"ts", "time", "uid", "string"},
	"trans_depth", "count", "method", "string", "host", "string", "uri", "string", "version", "string",
	"user_agent", "string", "request_body_len", "count", "response_body_len", "count", "status_code", "count",
	"status_msg", "string", "request_content_type", "string", "response_content_type", "string",
	"ocsp", "bool", "ocsp_responder", "string", "step", "string")

// httpColsTLS are httpCols with a last column, tls, telling requests
// decrypted from TLS or QUIC. A TSV http.log has it only when it holds
// such a request, so logs of captures without secrets stay as they were;
// JSON lines always have it, where a false tls is left out like any unset
// field.
var httpColsTLS = append(httpCols[:len(httpCols):len(httpCols)], zeeklog.Column{Name: "tls", Type: "bool"})

// How an http.log row shows the tls column.
const (
	tlsColNone = iota // no column (TSV without decrypted requests)
	tlsColTSV         // T or F
	tlsColJSON        // true, or left out
)

func httpRow(dst []zeeklog.Value, h *schema.HTTP, made bool, tlsCol int) []zeeklog.Value {
	status := zeeklog.Unset()
	if h.StatusCode != 0 {
		status = zeeklog.Count(int64(h.StatusCode))
	}
	dst = append(head(dst, &h.ConnID, made),
		zeeklog.Count(int64(h.TransDepth)), zeeklog.OptStr(h.Method), zeeklog.OptStr(h.Host), zeeklog.OptStr(h.URI),
		zeeklog.OptStr(h.Version), zeeklog.OptStr(h.UserAgent), zeeklog.Count(h.RequestBodyLen), zeeklog.Count(h.ResponseBodyLen),
		status, zeeklog.OptStr(h.StatusMsg), zeeklog.OptStr(h.RequestContentType), zeeklog.OptStr(h.ResponseContentType),
		zeeklog.Bool(h.OCSP), zeeklog.OptStr(h.OCSPResponder), step(h.Step))
	switch {
	case tlsCol == tlsColTSV:
		dst = append(dst, zeeklog.Bool(h.TLS))
	case tlsCol == tlsColJSON && h.TLS:
		dst = append(dst, zeeklog.Bool(true))
	case tlsCol == tlsColJSON:
		dst = append(dst, zeeklog.Unset())
	}
	return dst
}

// httpTLSCol says how http.log shows tls for records hs (see httpColsTLS).
func httpTLSCol(hs []schema.HTTP, asJSON bool) (int, []zeeklog.Column) {
	if asJSON {
		return tlsColJSON, httpColsTLS
	}
	for i := range hs {
		if hs[i].TLS {
			return tlsColTSV, httpColsTLS
		}
	}
	return tlsColNone, httpCols
}

// ntpCols are ntp.log's columns.
var ntpCols = withIDs([]string{"ts", "time", "uid", "string"},
	"version", "count", "mode", "count", "stratum", "count", "poll", "interval", "precision", "interval",
	"ref_id", "string", "xmt_time", "time", "sender", "addr", "mode_name", "string", "step", "string")

func ntpRow(dst []zeeklog.Value, n *schema.NTP, made bool) []zeeklog.Value {
	return append(head(dst, &n.ConnID, made),
		zeeklog.Count(int64(n.Version)), zeeklog.Count(int64(n.Mode)), zeeklog.Count(int64(n.Stratum)),
		zeeklog.Interval(n.Poll), zeeklog.Interval(n.Precision), zeeklog.OptStr(n.RefID), optTime(n.XmtTime),
		zeeklog.Str(n.Sender), zeeklog.OptStr(n.ModeName), step(n.Step))
}

// dhcpCols are dhcp.log's columns.
var dhcpCols = cols("ts", "time", "uids", "set[string]", "client_addr", "addr", "server_addr", "addr", "mac", "string",
	"host_name", "string", "domain", "string", "requested_addr", "addr", "assigned_addr", "addr", "lease_time", "interval",
	"msg_types", "vector[string]", "duration", "interval", "vendor_class", "string", "param_list", "string", "step", "string")

func dhcpRow(dst []zeeklog.Value, d *schema.DHCP) []zeeklog.Value {
	lease := zeeklog.Unset()
	if d.LeaseTime > 0 {
		lease = zeeklog.Interval(d.LeaseTime)
	}
	return append(dst, zeeklog.Time(d.TS), zeeklog.List(d.UIDs), zeeklog.OptStr(d.ClientAddr), zeeklog.OptStr(d.ServerAddr),
		zeeklog.OptStr(d.MAC), zeeklog.OptStr(d.HostName), zeeklog.OptStr(d.Domain), zeeklog.OptStr(d.RequestedAddr),
		zeeklog.OptStr(d.AssignedAddr), lease, zeeklog.List(d.MsgTypes), zeeklog.Interval(d.Duration),
		zeeklog.OptStr(d.VendorClass), zeeklog.OptStr(d.ParamList), step(d.Step))
}

// fingerprintCols are fingerprint.log's columns.
var fingerprintCols = cols("ts", "time", "host", "addr", "kind", "string", "ttl", "count", "ittl", "count", "df", "bool", "ecn", "bool",
	"count", "count", "p0f", "string", "tcpdump", "string", "step", "string")

func fingerprintRow(dst []zeeklog.Value, f *schema.Fingerprint) []zeeklog.Value {
	return append(dst, zeeklog.Time(f.FirstTS), zeeklog.Str(f.Host), zeeklog.Str(f.Kind), zeeklog.Count(int64(f.TTL)),
		zeeklog.Count(int64(f.ITTL)), zeeklog.Bool(f.DF), zeeklog.Bool(f.ECN), zeeklog.Count(f.Count),
		zeeklog.OptStr(f.P0f), zeeklog.OptStr(f.Tcpdump), step(f.Step))
}

func qclassName(c uint16) string {
	switch c {
	case 0:
		return ""
	case 1:
		return "C_INTERNET"
	case 3:
		return "C_CHAOS"
	case 4:
		return "C_HESIOD"
	case 254:
		return "C_NONE"
	case 255:
		return "C_ANY"
	}
	return "C_" + strconv.Itoa(int(c))
}

// WriteTable prints a human summary and the destinations table.
func WriteTable(w io.Writer, a *schema.Analysis) error {
	s := &a.Summary
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "capture\t%s (%s%s)\n", a.Input.File, a.Input.Format, map[bool]string{true: ", gzip", false: ""}[a.Input.Gzip])
	if !s.FirstTS.IsZero() {
		fmt.Fprintf(tw, "span\t%s – %s (%.3f s)\n", s.FirstTS.Format(time.RFC3339Nano), s.LastTS.Format(time.RFC3339Nano), s.Duration)
	}
	fmt.Fprintf(tw, "packets\t%d (%d frame bytes, %d IP bytes)\n", s.Packets, s.FrameBytes, s.IPBytes)
	fmt.Fprintf(tw, "connections\t%d TCP, %d UDP, %d ICMP; %d DNS queries; %d remote hosts; IPv6 %v\n",
		s.TCPConnections, s.UDPFlows, s.ICMPFlows, s.DNSQueries, s.DistinctRemoteHosts, s.IPv6Seen)
	h := &a.Host
	fmt.Fprintf(tw, "machine\t%s %s hostname=%q vendor=%q (by %s)\n", cmp0(h.IP), cmp0(h.MAC), h.DHCPHostname, h.DHCPVendorClass, h.Method)
	if wn := s.Warnings; wn != nil {
		// Warnings are for damaged or missing data only; what is normal in a
		// clean capture (checksum offload, ARP) is a note.
		problems := wn.Problems()
		if len(problems) == 0 {
			problems = []string{"none"}
		}
		fmt.Fprintf(tw, "warnings\t%s\n", strings.Join(problems, "; "))
		if notes := s.Notes(); len(notes) > 0 {
			fmt.Fprintf(tw, "notes\t%s\n", strings.Join(notes, "; "))
		}
	}
	fmt.Fprintln(tw)
	fmt.Fprintln(tw, "DESTINATION\tORG\tPARTY\tCONNS\tUP\tDOWN\tPROTOCOLS\tFIRST SEEN")
	for _, d := range a.Destinations {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%d\t%d\t%s\t%s\n", d.Name, cmp0(d.Org), d.Party, d.Connections, d.BytesUp, d.BytesDown,
			joinComma(d.Protocols), d.FirstSeen.Format("2006-01-02T15:04:05.000Z07:00"))
	}
	return tw.Flush()
}

func cmp0(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func joinComma(s []string) string {
	var b bytes.Buffer
	for i, x := range s {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(x)
	}
	return b.String()
}
