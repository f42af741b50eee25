package quic

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"math/big"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	quicgo "github.com/quic-go/quic-go"

	"github.com/firstboot/firstboot/analyzer/tlshello"
)

// selfSigned returns a throwaway server certificate for name.
func selfSigned(t *testing.T, name string) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name}, DNSNames: []string{name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// recorded is one UDP payload of a recorded exchange.
type recorded struct {
	fromClient bool
	data       []byte
}

// captureNewDCID runs a real quic-go client and server on loopback through a
// UDP relay that drops the client's second datagram once. The server answers
// the first datagram (its Initial switches the client to the server's
// connection ID), so the client resends the rest of its ClientHello in an
// Initial addressed to the new DCID, which is the order seen in real captures
// when the server's first Initial overtakes the client's second one. It
// returns every datagram the relay forwarded, in order.
func captureNewDCID(t *testing.T, sni string) []recorded {
	t.Helper()
	srvConn, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srvConn.Close() })
	ln, err := quicgo.Listen(srvConn, &tls.Config{Certificates: []tls.Certificate{selfSigned(t, sni)}, NextProtos: []string{"h3"}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	relay, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { relay.Close() })
	// The relay talks to the server from its own socket.
	up, err := net.DialUDP("udp", nil, srvConn.LocalAddr().(*net.UDPAddr))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { up.Close() })

	var (
		mu   sync.Mutex
		recs []recorded
	)
	record := func(fromClient bool, b []byte) {
		mu.Lock()
		recs = append(recs, recorded{fromClient, slices.Clone(b)})
		mu.Unlock()
	}
	var clientAddr net.Addr
	var addrMu sync.Mutex
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { // client → server, dropping the client's second datagram
		defer wg.Done()
		buf := make([]byte, 65536)
		n := 0
		for {
			k, from, err := relay.ReadFrom(buf)
			if err != nil {
				return
			}
			addrMu.Lock()
			clientAddr = from
			addrMu.Unlock()
			n++
			if n == 2 {
				continue
			}
			record(true, buf[:k])
			_, _ = up.Write(buf[:k])
		}
	}()
	go func() { // server → client
		defer wg.Done()
		buf := make([]byte, 65536)
		for {
			k, err := up.Read(buf)
			if err != nil {
				return
			}
			addrMu.Lock()
			to := clientAddr
			addrMu.Unlock()
			record(false, buf[:k])
			_, _ = relay.WriteTo(buf[:k], to)
		}
	}()
	t.Cleanup(func() { relay.Close(); up.Close(); wg.Wait() })

	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	go func() {
		c, err := ln.Accept(ctx)
		if err == nil {
			<-c.Context().Done()
		}
	}()
	conf := &tls.Config{ServerName: sni, NextProtos: []string{"h3"}, InsecureSkipVerify: true}
	conn, err := quicgo.DialAddr(ctx, relay.LocalAddr().String(), conf, &quicgo.Config{Versions: []quicgo.Version{quicgo.Version1}})
	if err != nil {
		t.Fatalf("handshake through the relay: %v", err)
	}
	conn.CloseWithError(0, "")
	time.Sleep(50 * time.Millisecond)
	mu.Lock()
	defer mu.Unlock()
	return slices.Clone(recs)
}

// TestInitialToServerChosenDCID: a client Initial sent after the server's
// first Initial carries the server's connection ID as DCID; it decrypts only
// with keys from the original DCID, and with them the ClientHello is whole.
func TestInitialToServerChosenDCID(t *testing.T) {
	const sni = "odcid.example.test"
	recs := captureNewDCID(t, sni)
	var (
		odcid     []byte
		cs        CryptoStream
		sawServer bool
		laterDCID bool
	)
	for i, r := range recs {
		if !r.fromClient {
			sawServer = true
			continue
		}
		if r.data[0]&0x80 == 0 {
			continue // 1-RTT packets after the handshake
		}
		h, err := parseLongHeader(r.data)
		if err != nil || h.first>>4&3 != 0 {
			continue // Handshake packets
		}
		ins, err := ParseInitials(r.data)
		if odcid == nil {
			if err != nil {
				t.Fatalf("first client Initial: %v", err)
			}
			odcid = slices.Clone(ins[0].DCID)
		} else if sawServer && !bytes.Equal(h.dcid, odcid) {
			laterDCID = true
			if !errors.Is(err, ErrDecrypt) {
				t.Errorf("datagram %d: Initial to the server's DCID decrypted with its own DCID (err %v)", i, err)
			}
			ins, err = ParseInitialsWithDCID(r.data, odcid)
			if err != nil {
				t.Fatalf("datagram %d: with the original DCID: %v", i, err)
			}
		}
		for _, in := range ins {
			for _, f := range in.Frames {
				cs.Add(f, 1<<16)
			}
		}
	}
	if !laterDCID {
		t.Fatalf("no client Initial to a server-chosen DCID among %d datagrams: the relay did not force the case", len(recs))
	}
	ch, err := tlshello.ParseClientHello(cs.Bytes())
	if err != nil {
		t.Fatalf("ClientHello: %v", err)
	}
	if ch.ServerName != sni || !slices.Equal(ch.ALPN, []string{"h3"}) {
		t.Fatalf("SNI %q ALPN %q", ch.ServerName, ch.ALPN)
	}
	if ja4 := tlshello.JA4(ch, 'q'); !strings.HasPrefix(ja4, "q13d") || ja4[8:10] != "h3" {
		t.Fatalf("JA4 %s", ja4)
	}
	var dgs [][]byte
	for _, r := range recs {
		if r.fromClient {
			dgs = append(dgs, append([]byte{'C'}, r.data...))
		} else {
			dgs = append(dgs, append([]byte{'S'}, r.data...))
		}
	}
	// The exchange (direction byte + datagram) for the analyzer's test.
	writeGolden(t, "quic-go-v1-new-dcid", dgs)
}
