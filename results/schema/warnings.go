package schema

import (
	"fmt"
	"sort"
	"strings"
)

// Problems words the counts that mean damaged or missing data, one phrase
// each, in a fixed order; none for a clean capture. The summary table and the
// report show these as warnings.
func (w *Warnings) Problems() []string {
	if w == nil {
		return nil
	}
	var out []string
	count := func(n int64, what string) {
		if n > 0 {
			out = append(out, fmt.Sprintf("%d %s", n, what))
		}
	}
	count(w.BadIPChecksums, "bad IP checksums")
	count(w.BadTCPChecksums, "bad TCP checksums")
	count(w.BadUDPChecksums, "bad UDP checksums")
	count(w.TruncatedPackets, "packets cut short by the capture's snaplen")
	count(w.TimestampsBackwards, "timestamps going backwards")
	count(w.FragmentsDropped, "IP fragments dropped (datagram incomplete)")
	if n, by := total(w.UnknownLinkTypes, ""); n > 0 {
		out = append(out, fmt.Sprintf("%d packets of link types not decoded (%s)", n, by))
	}
	if n, by := total(w.DecodeErrors, DecodeErrorNonIP); n > 0 {
		out = append(out, fmt.Sprintf("%d packets with undecodable headers (%s)", n, by))
	}
	if n, by := total(w.ParserErrors, ""); n > 0 {
		out = append(out, fmt.Sprintf("%d payloads a parser rejected (%s)", n, by))
	}
	for _, d := range w.CaptureDamage {
		out = append(out, "capture damaged: "+d)
	}
	return out
}

// Notes words the counts that are no damage but worth knowing when reading
// the capture in another tool: checksums left to offload (Wireshark flags
// them when told to verify checksums) and frames that carry no IP.
func (w *Warnings) Notes() []string {
	if w == nil {
		return nil
	}
	var out []string
	if n := w.OffloadTCPChecksums + w.OffloadUDPChecksums; n > 0 {
		out = append(out, fmt.Sprintf("%d checksums left to the sender's NIC (offload; TCP %d, UDP %d): captured before the NIC fills them in, no damage",
			n, w.OffloadTCPChecksums, w.OffloadUDPChecksums))
	}
	if n := w.DecodeErrors[DecodeErrorNonIP]; n > 0 {
		out = append(out, fmt.Sprintf("%d non-IP frames (ARP and the like), not analysed", n))
	}
	return out
}

// DecodeErrorNonIP is the DecodeErrors key under which analyses of schema
// 1.0 counted frames that carry something other than IP: no damage. Since
// 1.1 they are in Summary.NonIPFrames.
const DecodeErrorNonIP = "non_ip"

// Notes is Warnings.Notes with the frames that carry no IP, by what they
// carry (Summary.NonIPFrames).
func (s *Summary) Notes() []string {
	out := s.Warnings.Notes()
	if n, by := total(s.NonIPFrames, ""); n > 0 {
		out = append(out, fmt.Sprintf("%d non-IP frames (%s), counted by what they carry", n, by))
	}
	return out
}

// total sums m without the key skip and lists its entries ("ipv4 2, tcp 1").
func total(m map[string]int64, skip string) (int64, string) {
	var n int64
	var parts []string
	for k, v := range m {
		if k == skip || v == 0 {
			continue
		}
		n += v
		parts = append(parts, fmt.Sprintf("%s %d", k, v))
	}
	sort.Strings(parts)
	return n, strings.Join(parts, ", ")
}
