package analyzer

import (
	"bytes"
	"encoding/json"
	"math"
	"strconv"
	"time"

	"github.com/firstboot/firstboot/analyzer/zeeklog"
	"github.com/firstboot/firstboot/results/schema"
)

// recordEncoder writes compact JSON for the streamed records (conn, dns, tls,
// http, ntp) without reflection, byte for byte what encoding/json (SetEscapeHTML(false))
// writes; anything unusual (a string needing escapes, a time or float
// encoding/json would treat specially) goes through encoding/json itself.
type recordEncoder struct {
	slow bytes.Buffer
	enc  *json.Encoder
	// The hour of the last record time, and its text up to the minutes
	// ("2006-01-02T15:"): records come in time order, mostly in one hour.
	hour     int64
	hourText []byte
	// made tells that the records come from the engine: their uids,
	// addresses and enums skip the escape scan (see madeStr).
	made bool
}

func newRecordEncoder(made bool) *recordEncoder {
	r := &recordEncoder{made: made}
	r.enc = json.NewEncoder(&r.slow)
	r.enc.SetEscapeHTML(false)
	return r
}

// generic appends v as encoding/json writes it, without the newline.
func (r *recordEncoder) generic(b []byte, v any) ([]byte, error) {
	r.slow.Reset()
	if err := r.enc.Encode(v); err != nil {
		return b, err
	}
	return append(b, bytes.TrimSuffix(r.slow.Bytes(), []byte("\n"))...), nil
}

// madeStr appends a field the engine builds from a fixed alphabet (see
// madeStr in outputs.go).
func (r *recordEncoder) madeStr(b []byte, s string) []byte {
	if r.made {
		return zeeklog.AppendQuoted(b, s)
	}
	return r.str(b, s)
}

func (r *recordEncoder) str(b []byte, s string) []byte {
	if !zeeklog.Plain(s, '"') {
		out, _ := r.generic(b, s) // strings always encode
		return out
	}
	return zeeklog.AppendQuoted(b, s)
}

// finite reports whether encoding/json accepts f (it refuses NaN and infinities).
func finite(f float64) bool { return !math.IsNaN(f) && !math.IsInf(f, 0) }

// float appends a finite f as encoding/json's float64 encoder writes it.
func float(b []byte, f float64) []byte {
	if f >= 0 && f < 1<<53 && f == math.Trunc(f) && !(f == 0 && math.Signbit(f)) {
		// A whole number below 2^53 is its shortest decimal (TTLs mostly).
		return zeeklog.AppendInt(b, int64(f))
	}
	if out, ok := zeeklog.AppendShortSeconds(b, f); ok {
		return out // durations and round trips
	}
	abs := math.Abs(f)
	format := byte('f')
	if abs != 0 && (abs < 1e-6 || abs >= 1e21) {
		format = 'e'
	}
	b = strconv.AppendFloat(b, f, format, -1, 64)
	if format == 'e' {
		// e-09 becomes e-9, as encoding/json writes it.
		n := len(b)
		if n >= 4 && b[n-4] == 'e' && b[n-3] == '-' && b[n-2] == '0' {
			b[n-2] = b[n-1]
			b = b[:n-1]
		}
	}
	return b
}

// timeOK reports whether time.Time.MarshalJSON would write t as RFC 3339 with
// nanoseconds (it refuses years outside 0–9999 and odd zone offsets).
func timeOK(t time.Time) bool {
	if t.Location() == time.UTC {
		// 0000-01-01T00:00:00Z <= t < 10000-01-01T00:00:00Z, without working out the date.
		sec := t.Unix()
		return sec >= -62167219200 && sec < 253402300800
	}
	_, off := t.Zone()
	return t.Year() >= 0 && t.Year() <= 9999 && off%60 == 0 && off > -24*3600 && off < 24*3600
}

// appendTime appends t in RFC 3339 with nanoseconds, as t.AppendFormat(b,
// time.RFC3339Nano) does; records' times are UTC, which is done by hand
// (the year must be in 0–9999, see timeOK).
func appendTime(b []byte, t time.Time) []byte {
	if t.Location() != time.UTC {
		return t.AppendFormat(b, time.RFC3339Nano)
	}
	sec := t.Unix()
	days := sec / 86400
	if sec%86400 < 0 {
		days--
	}
	clock := sec - days*86400
	// Civil date from days since 1970-01-01 (Howard Hinnant's days_from_civil, inverted).
	z := days + 719468
	era := z / 146097
	if z%146097 < 0 {
		era--
	}
	doe := z - era*146097
	yoe := (doe - doe/1460 + doe/36524 - doe/146096) / 365
	doy := doe - (365*yoe + yoe/4 - yoe/100)
	mp := (5*doy + 2) / 153
	day := doy - (153*mp+2)/5 + 1
	month := mp + 3
	year := yoe + era*400
	if month > 12 {
		month -= 12
		year++
	}
	hh, mm, ss := clock/3600, clock/60%60, clock%60
	b = append(b, byte('0'+year/1000), byte('0'+year/100%10), byte('0'+year/10%10), byte('0'+year%10), '-',
		byte('0'+month/10), byte('0'+month%10), '-', byte('0'+day/10), byte('0'+day%10), 'T',
		byte('0'+hh/10), byte('0'+hh%10), ':', byte('0'+mm/10), byte('0'+mm%10), ':', byte('0'+ss/10), byte('0'+ss%10))
	return appendFraction(b, t)
}

// time is appendTime, with the date and hour taken from the previous call's
// when they are the same.
func (r *recordEncoder) time(b []byte, t time.Time) []byte {
	sec := t.Unix()
	if t.Location() != time.UTC || sec < 0 {
		return appendTime(b, t)
	}
	if hour := sec / 3600; hour != r.hour || len(r.hourText) == 0 {
		r.hour = hour
		r.hourText = appendTime(r.hourText[:0], time.Unix(hour*3600, 0).UTC())[:len("2006-01-02T15:")]
	}
	b = append(b, r.hourText...)
	mm, ss := sec/60%60, sec%60
	b = append(b, byte('0'+mm/10), byte('0'+mm%10), ':', byte('0'+ss/10), byte('0'+ss%10))
	return appendFraction(b, t)
}

// appendFraction appends the fraction of a second and the Z of a UTC time in RFC 3339 with nanoseconds.
func appendFraction(b []byte, t time.Time) []byte {
	return append(zeeklog.AppendNanos(b, int64(t.Nanosecond())), 'Z')
}

// head appends the opening brace and the ConnID fields every record starts
// with; the caller has checked timeOK(id.TS).
func (r *recordEncoder) head(b []byte, id *schema.ConnID) []byte {
	b = append(b, `{"ts":"`...)
	b = r.time(b, id.TS)
	b = append(b, `","uid":`...)
	b = r.madeStr(b, id.UID)
	b = append(b, `,"id.orig_h":`...)
	b = r.madeStr(b, id.OrigH)
	b = append(b, `,"id.orig_p":`...)
	b = zeeklog.AppendInt(b, int64(id.OrigP))
	b = append(b, `,"id.resp_h":`...)
	b = r.madeStr(b, id.RespH)
	b = append(b, `,"id.resp_p":`...)
	return zeeklog.AppendInt(b, int64(id.RespP))
}

// strs appends a string list; nil is null, as encoding/json writes it.
func (r *recordEncoder) strs(b []byte, l []string) []byte {
	if l == nil {
		return append(b, "null"...)
	}
	b = append(b, '[')
	for i, s := range l {
		if i > 0 {
			b = append(b, ',')
		}
		b = r.str(b, s)
	}
	return append(b, ']')
}

func (r *recordEncoder) conn(b []byte, c *schema.Conn) ([]byte, error) {
	if !finite(c.Duration) || !timeOK(c.TS) {
		return r.generic(b, c)
	}
	b = r.head(b, &c.ConnID)
	b = append(b, `,"proto":`...)
	b = r.madeStr(b, c.Proto)
	b = append(b, `,"service":`...)
	b = r.str(b, c.Service)
	b = append(b, `,"duration":`...)
	b = float(b, c.Duration)
	b = append(b, `,"orig_bytes":`...)
	b = zeeklog.AppendInt(b, c.OrigBytes)
	b = append(b, `,"resp_bytes":`...)
	b = zeeklog.AppendInt(b, c.RespBytes)
	b = append(b, `,"conn_state":`...)
	b = r.madeStr(b, c.ConnState)
	b = append(b, `,"missed_bytes":`...)
	b = zeeklog.AppendInt(b, c.MissedBytes)
	b = append(b, `,"history":`...)
	b = r.str(b, c.History)
	b = append(b, `,"orig_pkts":`...)
	b = zeeklog.AppendInt(b, c.OrigPkts)
	b = append(b, `,"orig_ip_bytes":`...)
	b = zeeklog.AppendInt(b, c.OrigIPBytes)
	b = append(b, `,"resp_pkts":`...)
	b = zeeklog.AppendInt(b, c.RespPkts)
	b = append(b, `,"resp_ip_bytes":`...)
	b = zeeklog.AppendInt(b, c.RespIPBytes)
	if len(c.TunnelParents) > 0 {
		b = append(b, `,"tunnel_parents":`...)
		b = r.strs(b, c.TunnelParents)
	}
	b = append(b, `,"orig_l2_addr":`...)
	b = r.str(b, c.OrigL2Addr)
	b = append(b, `,"resp_l2_addr":`...)
	b = r.str(b, c.RespL2Addr)
	b = append(b, `,"name":`...)
	b = r.str(b, c.Name)
	b = append(b, `,"name_source":`...)
	b = r.str(b, c.NameSource)
	if c.Proxy != "" {
		b = append(b, `,"proxy":`...)
		b = r.str(b, c.Proxy)
	}
	if c.ProxiedTo != "" {
		b = append(b, `,"proxied_to":`...)
		b = r.str(b, c.ProxiedTo)
	}
	b = append(b, `,"step":`...)
	b = r.str(b, c.Step)
	return append(b, '}'), nil
}

func (r *recordEncoder) dns(b []byte, d *schema.DNS) ([]byte, error) {
	if !timeOK(d.TS) || d.Answers == nil || d.TTLs == nil {
		return r.generic(b, d) // nil lists encode as null: leave them to encoding/json
	}
	if d.RTT != nil && !finite(*d.RTT) {
		return r.generic(b, d)
	}
	for _, f := range d.TTLs {
		if !finite(f) {
			return r.generic(b, d)
		}
	}
	b = r.head(b, &d.ConnID)
	b = append(b, `,"proto":`...)
	b = r.madeStr(b, d.Proto)
	b = append(b, `,"kind":`...)
	b = r.madeStr(b, d.Kind)
	b = append(b, `,"trans_id":`...)
	b = zeeklog.AppendInt(b, int64(d.TransID))
	if len(d.Questions) > 0 {
		b = append(b, `,"questions":`...)
		b = r.strs(b, d.Questions)
	}
	if d.RTT != nil {
		b = append(b, `,"rtt":`...)
		b = float(b, *d.RTT)
	}
	b = append(b, `,"query":`...)
	b = r.str(b, d.Query)
	b = append(b, `,"qclass":`...)
	b = zeeklog.AppendInt(b, int64(d.QClass))
	b = append(b, `,"qtype":`...)
	b = zeeklog.AppendInt(b, int64(d.QType))
	b = append(b, `,"qtype_name":`...)
	b = r.str(b, d.QTypeName)
	if d.Rcode != nil {
		b = append(b, `,"rcode":`...)
		b = zeeklog.AppendInt(b, int64(*d.Rcode))
	}
	if d.RcodeName != "" {
		b = append(b, `,"rcode_name":`...)
		b = r.str(b, d.RcodeName)
	}
	b = append(b, `,"TC":`...)
	b = strconv.AppendBool(b, d.TC)
	b = append(b, `,"answers":[`...)
	for i, a := range d.Answers {
		if i > 0 {
			b = append(b, ',')
		}
		b = r.str(b, a)
	}
	b = append(b, `],"TTLs":[`...)
	for i, f := range d.TTLs {
		if i > 0 {
			b = append(b, ',')
		}
		b = float(b, f)
	}
	b = append(b, `],"step":`...)
	b = r.str(b, d.Step)
	return append(b, '}'), nil
}

func (r *recordEncoder) tls(b []byte, t *schema.TLS) ([]byte, error) {
	if !timeOK(t.TS) {
		return r.generic(b, t)
	}
	b = r.head(b, &t.ConnID)
	b = append(b, `,"transport":`...)
	b = r.str(b, t.Transport)
	b = append(b, `,"version":`...)
	b = r.str(b, t.Version)
	b = append(b, `,"cipher":`...)
	b = r.str(b, t.Cipher)
	b = append(b, `,"server_name":`...)
	b = r.str(b, t.ServerName)
	b = append(b, `,"next_protocol":`...)
	b = r.str(b, t.NextProtocol)
	b = append(b, `,"established":`...)
	b = strconv.AppendBool(b, t.Established)
	b = append(b, `,"client_alpn":`...)
	b = r.strs(b, t.ClientALPN)
	b = append(b, `,"client_supported_versions":`...)
	b = r.strs(b, t.ClientVersions)
	b = append(b, `,"ech":`...)
	b = strconv.AppendBool(b, t.ECH)
	if t.HelloRetry {
		b = append(b, `,"hello_retry":true`...)
	}
	b = append(b, `,"ja3":`...)
	b = r.str(b, t.JA3)
	b = append(b, `,"ja3_string":`...)
	b = r.str(b, t.JA3String)
	b = append(b, `,"ja4":`...)
	b = r.str(b, t.JA4)
	b = append(b, `,"step":`...)
	b = r.str(b, t.Step)
	return append(b, '}'), nil
}

func (r *recordEncoder) http(b []byte, h *schema.HTTP) ([]byte, error) {
	if !timeOK(h.TS) {
		return r.generic(b, h)
	}
	b = r.head(b, &h.ConnID)
	b = append(b, `,"trans_depth":`...)
	b = zeeklog.AppendInt(b, int64(h.TransDepth))
	b = append(b, `,"method":`...)
	b = r.str(b, h.Method)
	b = append(b, `,"host":`...)
	b = r.str(b, h.Host)
	b = append(b, `,"uri":`...)
	b = r.str(b, h.URI)
	b = append(b, `,"version":`...)
	b = r.str(b, h.Version)
	if h.TLS {
		b = append(b, `,"tls":true`...)
	}
	b = append(b, `,"user_agent":`...)
	b = r.str(b, h.UserAgent)
	b = append(b, `,"request_body_len":`...)
	b = zeeklog.AppendInt(b, h.RequestBodyLen)
	b = append(b, `,"response_body_len":`...)
	b = zeeklog.AppendInt(b, h.ResponseBodyLen)
	b = append(b, `,"status_code":`...)
	b = zeeklog.AppendInt(b, int64(h.StatusCode))
	b = append(b, `,"status_msg":`...)
	b = r.str(b, h.StatusMsg)
	b = append(b, `,"request_content_type":`...)
	b = r.str(b, h.RequestContentType)
	b = append(b, `,"response_content_type":`...)
	b = r.str(b, h.ResponseContentType)
	b = append(b, `,"ocsp":`...)
	b = strconv.AppendBool(b, h.OCSP)
	b = append(b, `,"ocsp_responder":`...)
	b = r.str(b, h.OCSPResponder)
	b = append(b, `,"step":`...)
	b = r.str(b, h.Step)
	return append(b, '}'), nil
}

func (r *recordEncoder) ntp(b []byte, n *schema.NTP) ([]byte, error) {
	if !timeOK(n.TS) || !finite(n.Poll) || !finite(n.Precision) || (n.XmtTime != nil && !timeOK(*n.XmtTime)) {
		return r.generic(b, n)
	}
	b = r.head(b, &n.ConnID)
	b = append(b, `,"sender":`...)
	b = r.str(b, n.Sender)
	b = append(b, `,"version":`...)
	b = zeeklog.AppendInt(b, int64(n.Version))
	b = append(b, `,"mode":`...)
	b = zeeklog.AppendInt(b, int64(n.Mode))
	b = append(b, `,"mode_name":`...)
	b = r.str(b, n.ModeName)
	b = append(b, `,"stratum":`...)
	b = zeeklog.AppendInt(b, int64(n.Stratum))
	b = append(b, `,"poll":`...)
	b = float(b, n.Poll)
	b = append(b, `,"precision":`...)
	b = float(b, n.Precision)
	b = append(b, `,"ref_id":`...)
	b = r.str(b, n.RefID)
	if n.XmtTime != nil {
		b = append(b, `,"xmt_time":"`...)
		b = r.time(b, *n.XmtTime)
		b = append(b, '"')
	}
	b = append(b, `,"step":`...)
	b = r.str(b, n.Step)
	return append(b, '}'), nil
}
