package tlsdecrypt

import (
	"encoding/hex"
	"os"
	"strings"
	"testing"
)

// A key log line for the seed hellos' client random (all 0x11).
var fuzzKeyLog = "CLIENT_RANDOM " + strings.Repeat("11", 32) + " " + strings.Repeat("22", 48) + "\n" +
	"SERVER_HANDSHAKE_TRAFFIC_SECRET " + strings.Repeat("11", 32) + " " + strings.Repeat("33", 32) + "\n" +
	"SERVER_TRAFFIC_SECRET_0 " + strings.Repeat("11", 32) + " " + strings.Repeat("44", 32) + "\n"

// seedHellos are a ClientHello and a ServerHello record (TLS 1.2, AES-128-GCM).
func seedHellos() (client, server []byte) {
	ch := append([]byte{1, 0, 0, 38, 3, 3}, []byte(strings.Repeat("\x11", 32))...)
	ch = append(ch, 0, 0, 0)
	client = append([]byte{22, 3, 1, 0, byte(len(ch))}, ch...)
	sh := append([]byte{2, 0, 0, 38, 3, 3}, []byte(strings.Repeat("\x55", 32))...)
	sh = append(sh, 0, 0xc0, 0x2f, 0)
	sh[3] = byte(len(sh) - 4)
	server = append([]byte{22, 3, 3, 0, byte(len(sh))}, sh...)
	server = append(server, 20, 3, 3, 0, 1, 1, 23, 3, 3, 0, 30)
	server = append(server, make([]byte, 30)...)
	return client, server
}

func FuzzTLS(f *testing.F) {
	c, s := seedHellos()
	f.Add(c, s)
	f.Fuzz(func(t *testing.T, client, server []byte) {
		var keys Keys
		keys.Add([]byte(fuzzKeyLog))
		conn := NewConn(&keys, func(int, []byte) {})
		for len(client) > 0 || len(server) > 0 {
			n := min(len(client), 13)
			conn.Feed(0, client[:n])
			client = client[n:]
			m := min(len(server), 29)
			conn.Feed(1, server[:m])
			server = server[m:]
		}
		conn.Close()
	})
}

func FuzzQUIC(f *testing.F) {
	raw, err := os.ReadFile("../quic/testdata/rfc9001-a2-client-initial.hex")
	if err != nil {
		f.Fatal(err)
	}
	initial, err := hex.DecodeString(strings.Join(strings.Fields(string(raw)), ""))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(initial, []byte{0x40, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24})
	f.Fuzz(func(t *testing.T, a, b []byte) {
		var keys Keys
		keys.Add([]byte(fuzzKeyLog))
		q := NewQUICConn(&keys, func(int, uint64, []byte, bool) {})
		q.Datagram(0, a)
		q.Datagram(1, b)
		q.Datagram(0, b)
		q.Close()
	})
}

func FuzzKeyLog(f *testing.F) {
	f.Add([]byte(fuzzKeyLog))
	f.Add([]byte("# c\nCLIENT_RANDOM zz 00\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		var k Keys
		k.Add(b)
	})
}
