package analyzer

import (
	"bytes"
	"encoding/json"
	"math"
	"strconv"
	"time"

	"github.com/firstboot/firstboot/results/schema"
)

// recordEncoder writes compact JSON for the most numerous record type (conn)
// without reflection, byte for byte what encoding/json (SetEscapeHTML(false))
// writes; anything unusual (a string needing escapes, a time or float
// encoding/json would treat specially) goes through encoding/json itself.
type recordEncoder struct {
	slow bytes.Buffer
	enc  *json.Encoder
}

func newRecordEncoder() *recordEncoder {
	r := &recordEncoder{}
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

func (r *recordEncoder) str(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c >= 0x7f || c == '"' || c == '\\' {
			out, _ := r.generic(b, s) // strings always encode
			return out
		}
	}
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"')
}

// float follows encoding/json's float64 encoder; ok is false for NaN and
// infinities, which encoding/json refuses.
func float(b []byte, f float64) ([]byte, bool) {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return b, false
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
	return b, true
}

// timeOK reports whether time.Time.MarshalJSON would write t as RFC 3339 with
// nanoseconds (it refuses years outside 0–9999 and odd zone offsets).
func timeOK(t time.Time) bool {
	_, off := t.Zone()
	return t.Year() >= 0 && t.Year() <= 9999 && off%60 == 0 && off > -24*3600 && off < 24*3600
}

func (r *recordEncoder) conn(b []byte, c *schema.Conn) ([]byte, error) {
	dur, ok := float(nil, c.Duration)
	if !ok || !timeOK(c.TS) {
		return r.generic(b, c)
	}
	b = append(b, `{"ts":"`...)
	b = c.TS.AppendFormat(b, time.RFC3339Nano)
	b = append(b, `","uid":`...)
	b = r.str(b, c.UID)
	b = append(b, `,"id.orig_h":`...)
	b = r.str(b, c.OrigH)
	b = append(b, `,"id.orig_p":`...)
	b = strconv.AppendUint(b, uint64(c.OrigP), 10)
	b = append(b, `,"id.resp_h":`...)
	b = r.str(b, c.RespH)
	b = append(b, `,"id.resp_p":`...)
	b = strconv.AppendUint(b, uint64(c.RespP), 10)
	b = append(b, `,"proto":`...)
	b = r.str(b, c.Proto)
	b = append(b, `,"service":`...)
	b = r.str(b, c.Service)
	b = append(b, `,"duration":`...)
	b = append(b, dur...)
	b = append(b, `,"orig_bytes":`...)
	b = strconv.AppendInt(b, c.OrigBytes, 10)
	b = append(b, `,"resp_bytes":`...)
	b = strconv.AppendInt(b, c.RespBytes, 10)
	b = append(b, `,"conn_state":`...)
	b = r.str(b, c.ConnState)
	b = append(b, `,"missed_bytes":`...)
	b = strconv.AppendInt(b, c.MissedBytes, 10)
	b = append(b, `,"history":`...)
	b = r.str(b, c.History)
	b = append(b, `,"orig_pkts":`...)
	b = strconv.AppendInt(b, c.OrigPkts, 10)
	b = append(b, `,"orig_ip_bytes":`...)
	b = strconv.AppendInt(b, c.OrigIPBytes, 10)
	b = append(b, `,"resp_pkts":`...)
	b = strconv.AppendInt(b, c.RespPkts, 10)
	b = append(b, `,"resp_ip_bytes":`...)
	b = strconv.AppendInt(b, c.RespIPBytes, 10)
	b = append(b, `,"orig_l2_addr":`...)
	b = r.str(b, c.OrigL2Addr)
	b = append(b, `,"resp_l2_addr":`...)
	b = r.str(b, c.RespL2Addr)
	b = append(b, `,"name":`...)
	b = r.str(b, c.Name)
	b = append(b, `,"name_source":`...)
	b = r.str(b, c.NameSource)
	b = append(b, `,"step":`...)
	b = r.str(b, c.Step)
	return append(b, '}'), nil
}

func (r *recordEncoder) dns(b []byte, d *schema.DNS) ([]byte, error) {
	if !timeOK(d.TS) || d.Answers == nil || d.TTLs == nil {
		return r.generic(b, d) // nil lists encode as null: leave them to encoding/json
	}
	var rtt []byte
	if d.RTT != nil {
		var ok bool
		if rtt, ok = float(nil, *d.RTT); !ok {
			return r.generic(b, d)
		}
	}
	for _, f := range d.TTLs {
		if math.IsNaN(f) || math.IsInf(f, 0) {
			return r.generic(b, d)
		}
	}
	b = append(b, `{"ts":"`...)
	b = d.TS.AppendFormat(b, time.RFC3339Nano)
	b = append(b, `","uid":`...)
	b = r.str(b, d.UID)
	b = append(b, `,"id.orig_h":`...)
	b = r.str(b, d.OrigH)
	b = append(b, `,"id.orig_p":`...)
	b = strconv.AppendUint(b, uint64(d.OrigP), 10)
	b = append(b, `,"id.resp_h":`...)
	b = r.str(b, d.RespH)
	b = append(b, `,"id.resp_p":`...)
	b = strconv.AppendUint(b, uint64(d.RespP), 10)
	b = append(b, `,"proto":`...)
	b = r.str(b, d.Proto)
	b = append(b, `,"kind":`...)
	b = r.str(b, d.Kind)
	b = append(b, `,"trans_id":`...)
	b = strconv.AppendUint(b, uint64(d.TransID), 10)
	if d.RTT != nil {
		b = append(b, `,"rtt":`...)
		b = append(b, rtt...)
	}
	b = append(b, `,"query":`...)
	b = r.str(b, d.Query)
	b = append(b, `,"qclass":`...)
	b = strconv.AppendUint(b, uint64(d.QClass), 10)
	b = append(b, `,"qtype":`...)
	b = strconv.AppendUint(b, uint64(d.QType), 10)
	b = append(b, `,"qtype_name":`...)
	b = r.str(b, d.QTypeName)
	if d.Rcode != nil {
		b = append(b, `,"rcode":`...)
		b = strconv.AppendUint(b, uint64(*d.Rcode), 10)
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
		b, _ = float(b, f)
	}
	b = append(b, `],"step":`...)
	b = r.str(b, d.Step)
	return append(b, '}'), nil
}
