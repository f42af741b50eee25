package schema

import (
	"slices"
	"testing"
)

// TestWarningWords: what is normal in a clean lab capture (checksums left to
// offload, ARP) is a note, never a problem; damage is a problem.
func TestWarningWords(t *testing.T) {
	for _, tc := range []struct {
		name            string
		w               Warnings
		problems, notes []string
	}{
		{"clean lab capture", Warnings{OffloadTCPChecksums: 52, OffloadUDPChecksums: 53, DecodeErrors: map[string]int64{DecodeErrorNonIP: 2}}, nil,
			[]string{"105 checksums left to the sender's NIC (offload; TCP 52, UDP 53): captured before the NIC fills them in, no damage",
				"2 non-IP frames (ARP and the like), not analysed"}},
		{"damage", Warnings{BadTCPChecksums: 1, DecodeErrors: map[string]int64{DecodeErrorNonIP: 2, "ipv4": 1, "tcp": 3}, ParserErrors: map[string]int64{"dns": 1},
			CaptureDamage: []string{"truncated record at byte offset 1234"}},
			[]string{"1 bad TCP checksums", "4 packets with undecodable headers (ipv4 1, tcp 3)", "1 payloads a parser rejected (dns 1)",
				"capture damaged: truncated record at byte offset 1234"},
			[]string{"2 non-IP frames (ARP and the like), not analysed"}},
		{"nothing", Warnings{}, nil, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.w.Problems(); !slices.Equal(got, tc.problems) {
				t.Errorf("problems %q, want %q", got, tc.problems)
			}
			if got := tc.w.Notes(); !slices.Equal(got, tc.notes) {
				t.Errorf("notes %q, want %q", got, tc.notes)
			}
		})
	}
}

// TestSummaryNotes: since schema 1.1 the frames without IP are counted in
// the summary by what they carry, and noted so.
func TestSummaryNotes(t *testing.T) {
	s := Summary{Warnings: &Warnings{OffloadUDPChecksums: 1}, NonIPFrames: map[string]int64{"arp": 3, "lldp": 1}}
	want := []string{"1 checksums left to the sender's NIC (offload; TCP 0, UDP 1): captured before the NIC fills them in, no damage",
		"4 non-IP frames (arp 3, lldp 1), counted by what they carry"}
	if got := s.Notes(); !slices.Equal(got, want) {
		t.Errorf("notes %q, want %q", got, want)
	}
	if got := (&Summary{}).Notes(); got != nil {
		t.Errorf("no warnings: %q", got)
	}
}
