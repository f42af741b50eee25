package nbns

import (
	"encoding/hex"
	"testing"
)

// encode writes a NetBIOS name's first-level encoding (RFC 1001 14.1).
func encode(name string, suffix byte) []byte {
	raw := []byte(name + "               ")[:15]
	raw = append(raw, suffix)
	out := []byte{32}
	for _, c := range raw {
		out = append(out, 'A'+c>>4, 'A'+c&0xf)
	}
	return append(out, 0)
}

func TestParse(t *testing.T) {
	// A registration: the question, and an additional record pointing
	// back at it (0xc00c) with the group flag and the address.
	msg, _ := hex.DecodeString("1234" + "2910" + "0001000000000001")
	msg = append(msg, encode("WORKGROUP", 0x1e)...)
	msg = append(msg, 0, 0x20, 0, 1, 0xc0, 0x0c, 0, 0x20, 0, 1, 0, 0, 0, 0, 0, 6, 0x80, 0, 10, 0, 0, 7)
	m, err := Parse(msg)
	if err != nil {
		t.Fatal(err)
	}
	if m.OpName() != "registration" || len(m.Names) != 1 || m.Names[0].String() != "WORKGROUP<1e>" || !m.Names[0].Group ||
		len(m.Addrs) != 1 || m.Addrs[0].String() != "10.0.0.7" {
		t.Errorf("%+v", m)
	}
	for n := range len(msg) {
		Parse(msg[:n])
	}
	if got := (Name{Name: "\x01\x02__MSBROWSE__\x02", Suffix: 1}).String(); got != "\x01\x02__MSBROWSE__\x02<01>" {
		t.Errorf("String = %q", got)
	}
	if got := printable("\x01\x02__MSBROWSE__\x02"); got != "<01><02>__MSBROWSE__<02>" {
		t.Errorf("printable = %q", got)
	}
}
