package tlsdecrypt

import (
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/quic-go/quic-go"
)

// udpWire records the datagrams both ends send, in the order sent.
type udpWire struct {
	mu        sync.Mutex
	datagrams []write
}

type recPacketConn struct {
	net.PacketConn
	w   *udpWire
	dir int
}

func (c *recPacketConn) WriteTo(p []byte, addr net.Addr) (int, error) {
	c.w.mu.Lock()
	c.w.datagrams = append(c.w.datagrams, write{c.dir, append([]byte{}, p...)})
	c.w.mu.Unlock()
	return c.PacketConn.WriteTo(p, addr)
}

// quicExchange runs a QUIC connection of version v: the client sends each
// of reqs on its own stream and reads the echo.
func quicExchange(t *testing.T, v quic.Version, reqs []string) (*udpWire, *wire) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	w, keyLog := &udpWire{}, &wire{}
	sc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer sc.Close()
	cc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	st := &quic.Transport{Conn: &recPacketConn{sc, w, 1}}
	defer st.Close()
	ln, err := st.Listen(&tls.Config{Certificates: []tls.Certificate{testCert(t, "example.test")}, NextProtos: []string{"test"}, KeyLogWriter: keyLog},
		&quic.Config{Versions: []quic.Version{v}})
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		c, err := ln.Accept(ctx)
		if err != nil {
			return
		}
		for {
			s, err := c.AcceptStream(ctx)
			if err != nil {
				return
			}
			go func() {
				b, _ := io.ReadAll(s)
				s.Write(bytes.ToUpper(b))
				s.Close()
			}()
		}
	}()
	ct := &quic.Transport{Conn: &recPacketConn{cc, w, 0}}
	defer ct.Close()
	conn, err := ct.Dial(ctx, sc.LocalAddr(), &tls.Config{ServerName: "example.test", InsecureSkipVerify: true, NextProtos: []string{"test"}},
		&quic.Config{Versions: []quic.Version{v}})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range reqs {
		s, err := conn.OpenStreamSync(ctx)
		if err != nil {
			t.Fatal(err)
		}
		s.Write([]byte(r))
		s.Close()
		if b, err := io.ReadAll(s); err != nil || string(b) != strings.ToUpper(r) {
			t.Fatalf("echo: %v", err)
		}
	}
	conn.CloseWithError(0, "")
	time.Sleep(50 * time.Millisecond)
	return w, keyLog
}

func TestDecryptQUIC(t *testing.T) {
	reqs := []string{"first stream", strings.Repeat("x", 50000), "third"}
	for _, v := range []quic.Version{quic.Version1, quic.Version2} {
		t.Run(fmt.Sprintf("v%d", map[quic.Version]int{quic.Version1: 1, quic.Version2: 2}[v]), func(t *testing.T) {
			w, kl := quicExchange(t, v, reqs)
			var keys Keys
			if n, err := keys.Add(kl.keyLog.Bytes()); n == 0 || err != nil {
				t.Fatalf("key log: %d, %v", n, err)
			}
			got := map[string]string{}
			q := NewQUICConn(&keys, func(dir int, id uint64, data []byte, fin bool) {
				got[fmt.Sprintf("%d/%d", dir, id)] += string(data)
			})
			for _, d := range w.datagrams {
				q.Datagram(d.dir, d.data)
			}
			q.Close()
			if q.Status() != StatusDecrypted {
				t.Errorf("status %q", q.Status())
			}
			for i, r := range reqs {
				id := 4 * i
				if got[fmt.Sprintf("0/%d", id)] != r || got[fmt.Sprintf("1/%d", id)] != strings.ToUpper(r) {
					t.Errorf("stream %d: client %d bytes, server %d bytes; want %d", id, len(got[fmt.Sprintf("0/%d", id)]), len(got[fmt.Sprintf("1/%d", id)]), len(r))
				}
			}
			// Without keys nothing comes out.
			q = NewQUICConn(&Keys{}, func(int, uint64, []byte, bool) { t.Error("data without keys") })
			for _, d := range w.datagrams {
				q.Datagram(d.dir, d.data)
			}
			q.Close()
			if q.Status() != StatusNoKeys {
				t.Errorf("without keys: status %q", q.Status())
			}
		})
	}
}
