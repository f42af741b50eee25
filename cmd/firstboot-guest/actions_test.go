package main

import (
	"context"
	"encoding/binary"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// ntpServer answers each request on loopback; when stray is set it first
// sends a reply whose origin timestamp does not match, which the client must
// ignore.
func ntpServer(t *testing.T, stray bool) string {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	go func() {
		buf := make([]byte, 512)
		for {
			n, addr, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			if n != 48 || buf[0] != 0x23 {
				continue // only a v4 client request (LI 0, VN 4, mode 3) gets an answer
			}
			resp := make([]byte, 48)
			resp[0] = 0<<6 | 4<<3 | 4
			resp[1] = 2
			if stray {
				binary.BigEndian.PutUint64(resp[24:], 12345)
				_, _ = pc.WriteTo(resp, addr)
			}
			copy(resp[24:32], buf[40:48]) // origin = client's transmit time
			binary.BigEndian.PutUint64(resp[40:], ntpTime(time.Now().Add(time.Hour)))
			_, _ = pc.WriteTo(resp, addr)
		}
	}()
	return pc.LocalAddr().String()
}

func TestDoNTP(t *testing.T) {
	for _, stray := range []bool{false, true} {
		addr := ntpServer(t, stray)
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		res, err := doNTP(ctx, addr)
		cancel()
		if err != nil {
			t.Fatalf("stray=%v: %v", stray, err)
		}
		// The server runs an hour ahead.
		if !strings.Contains(res, "stratum=2") || !strings.Contains(res, "offset=59m59.") && !strings.Contains(res, "offset=1h0m0") {
			t.Errorf("stray=%v: %s", stray, res)
		}
	}
}

func TestDoNTPTimeout(t *testing.T) {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0") // never answers
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	if _, err := doNTP(ctx, pc.LocalAddr().String()); err == nil {
		t.Error("no error from a silent server")
	}
}

func TestDoHTTPAndTCP(t *testing.T) {
	var gotUA, gotPath string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		gotUA, gotPath = r.UserAgent(), r.URL.RequestURI()
		if r.URL.Path == "/redirect" {
			http.Redirect(w, r, "/elsewhere", http.StatusFound)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	}))
	defer srv.Close()
	ctx := context.Background()
	res, err := doHTTP(ctx, srv.URL+"/generate_204?x=1")
	if err != nil || !strings.Contains(res, "status=204") || gotUA != userAgent || gotPath != "/generate_204?x=1" {
		t.Errorf("doHTTP: %s, %v (UA %q path %q)", res, err, gotUA, gotPath)
	}
	res, err = doHTTP(ctx, srv.URL+"/redirect")
	if err != nil || !strings.Contains(res, "status=302") || gotPath != "/redirect" {
		t.Errorf("redirect must be reported, not followed: %s, %v (last path %q)", res, err, gotPath)
	}
	host := strings.TrimPrefix(srv.URL, "http://")
	if res, err := doTCP(ctx, host); err != nil || !strings.Contains(res, "remote="+host) {
		t.Errorf("doTCP: %s, %v", res, err)
	}
}

func TestDoHTTPSSendsSNI(t *testing.T) {
	var sni string
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		sni = r.TLS.ServerName
	}))
	srv.StartTLS()
	defer srv.Close()
	_, port, _ := net.SplitHostPort(strings.TrimPrefix(srv.URL, "https://"))
	// "localhost" resolves through /etc/hosts; the SNI is the name given.
	res, err := doHTTPS(context.Background(), "localhost:"+port)
	if err != nil || sni != "localhost" || !strings.Contains(res, "status=200") {
		t.Errorf("doHTTPS: %s, %v, SNI %q", res, err, sni)
	}
}

func TestRunActionTimeout(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Timeout = 100 * time.Millisecond
	start := time.Now()
	if _, err := runAction(context.Background(), cfg, Action{Kind: "sleep", Arg: "0.05"}); err != nil {
		t.Errorf("sleep: %v", err)
	}
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	if _, err := runAction(context.Background(), cfg, Action{Kind: "ntp", Arg: pc.LocalAddr().String()}); err == nil {
		t.Error("ntp to a silent server succeeded")
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("actions took %s; the timeout is not applied", d)
	}
}
