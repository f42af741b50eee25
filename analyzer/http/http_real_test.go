package http

import (
	"context"
	"encoding/base64"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gopacket/gopacket/layers"

	"github.com/firstboot/firstboot/internal/testnet"
	"github.com/firstboot/firstboot/internal/testnet/corpus"
)

// stream collects one direction of a TCP connection, in capture order.
type stream struct {
	data  []byte
	first int // frame number of the first payload byte
}

// streams reassembles TCP payloads per direction. The test traffic is on
// loopback without loss or reordering, so concatenation is enough.
func streams(frames []testnet.Frame) ([]string, map[string]*stream) {
	var order []string
	res := map[string]*stream{}
	for _, f := range frames {
		tc, ok := f.Packet.Layer(layers.LayerTypeTCP).(*layers.TCP)
		if !ok || len(tc.Payload) == 0 {
			continue
		}
		src, dst := f.Packet.NetworkLayer().NetworkFlow().Endpoints()
		key := fmt.Sprintf("%s:%d>%s:%d", src, tc.SrcPort, dst, tc.DstPort)
		s, ok := res[key]
		if !ok {
			s = &stream{first: f.Num}
			res[key] = s
			order = append(order, key)
		}
		s.data = append(s.data, tc.Payload...)
	}
	return order, res
}

// bodyLen returns how many body bytes follow a head (chunked bodies are
// walked chunk by chunk), or -1 if unknown.
func bodyLen(b []byte, cl int64, chunked bool) int {
	if !chunked {
		if cl < 0 {
			return 0
		}
		return int(cl)
	}
	n := 0
	for {
		i := strings.Index(string(b[n:]), "\r\n")
		if i < 0 {
			return -1
		}
		var size int
		if _, err := fmt.Sscanf(string(b[n:n+i]), "%x", &size); err != nil {
			return -1
		}
		n += i + 2 + size + 2
		if size == 0 || n > len(b) {
			return min(n, len(b))
		}
	}
}

func httpHost(v string) string {
	if h, _, err := net.SplitHostPort(v); err == nil {
		return strings.ToLower(h)
	}
	return strings.ToLower(v)
}

// TestRealHTTP runs busybox httpd in a namespace, sends requests with curl
// (GET, POST, chunked, IPv6, odd Host) and openssl ocsp (a real OCSP POST),
// plus the same OCSP request as a GET, and compares every request and
// response head with tshark.
func TestRealHTTP(t *testing.T) {
	testnet.Require(t, "busybox", "curl", "openssl", "tshark", "tcpdump", "ss")
	ns := testnet.New(t, "fbt")
	dir := t.TempDir()
	www := filepath.Join(dir, "www")
	must(t, os.MkdirAll(www, 0o755))
	must(t, os.WriteFile(filepath.Join(www, "index.html"), []byte("<html>hello</html>\n"), 0o644))
	body := filepath.Join(dir, "body.json")
	must(t, os.WriteFile(body, []byte(`{"hello":"world"}`), 0o644))

	// An issuer certificate and an OCSP request for one of its serials,
	// both made by openssl.
	ca, key := filepath.Join(dir, "ca.pem"), filepath.Join(dir, "ca.key")
	ns.MustRun(t, "openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
		"-keyout", key, "-out", ca, "-subj", "/CN=firstboot test CA", "-days", "1")
	reqDER := filepath.Join(dir, "req.der")
	ns.MustRun(t, "openssl", "ocsp", "-issuer", ca, "-serial", "0x1234abcd", "-no_nonce", "-reqout", reqDER)
	der, err := os.ReadFile(reqDER)
	must(t, err)
	certDER := filepath.Join(dir, "ca.der")
	ns.MustRun(t, "openssl", "x509", "-in", ca, "-outform", "DER", "-out", certDER)
	notOCSP, err := os.ReadFile(certDER)
	must(t, err)

	capture := testnet.NewCapture(t, ns, "lo", filepath.Join(dir, "capture.pcap"))
	ns.Background(t, "busybox", "httpd", "-f", "-p", "8080", "-h", www)
	ns.WaitListening(t, "tcp", "8080")
	base := "http://127.0.0.1:8080"
	ocspGET := "/ocsp/" + url.PathEscape(base64.StdEncoding.EncodeToString(der))
	notOCSPGET := "/ocsp/" + url.PathEscape(base64.StdEncoding.EncodeToString(notOCSP))
	curl := func(args ...string) {
		t.Helper()
		ns.MustRun(t, "curl", append([]string{"-sS", "-o", "/dev/null", "--max-time", "5"}, args...)...)
	}
	curl("-A", "firstboot-test/1.0", base+"/index.html")
	curl("-H", "Host: WWW.Example.TEST:8080", base+"/missing")
	curl("-H", "Content-Type: application/json", "--data-binary", "@"+body, base+"/post")
	curl("-H", "Transfer-Encoding: chunked", "--data-binary", "@"+body, base+"/chunked")
	curl("-6", "http://[::1]:8080/index.html")
	curl(base + ocspGET)
	curl(base + notOCSPGET)
	// openssl posts the request; httpd answers with an error, which is fine.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out, _ := ns.Run(ctx, "openssl", "ocsp", "-issuer", ca, "-serial", "0x1234abcd", "-no_nonce",
		"-url", base+"/ocsp", "-timeout", "3")
	t.Logf("openssl ocsp: %s", out)
	path := capture.Complete(t)

	order, ss := streams(testnet.ReadPcap(t, path))
	var gotReq, gotResp []string
	ocsp := map[string]bool{}
	var seedsReq, seedsResp [][]byte
	for _, key := range order {
		s := ss[key]
		b := s.data
		for len(b) > 0 {
			switch {
			case LooksLikeRequest(b):
				r, n, err := ParseRequest(b)
				if err != nil {
					t.Fatalf("%s: ParseRequest: %v\n%q", key, err, b)
				}
				seedsReq = append(seedsReq, b[:n])
				cl := ""
				if r.ContentLength >= 0 {
					cl = fmt.Sprint(r.ContentLength)
				}
				te := ""
				if r.Chunked {
					te = "chunked"
				}
				gotReq = append(gotReq, strings.Join([]string{r.Method, r.URI, "HTTP/" + r.Version, r.Host, r.UserAgent, r.ContentType, cl, te}, "|"))
				ocsp[r.Method+" "+r.URI] = IsOCSP(r)
				bl := bodyLen(b[n:], r.ContentLength, r.Chunked)
				if bl < 0 {
					t.Fatalf("%s: bad body", key)
				}
				b = b[n+bl:]
			case strings.HasPrefix(string(b), "HTTP/"):
				r, n, err := ParseResponse(b)
				if err != nil {
					t.Fatalf("%s: ParseResponse: %v\n%q", key, err, b)
				}
				seedsResp = append(seedsResp, b[:n])
				cl := ""
				if r.ContentLength >= 0 {
					cl = fmt.Sprint(r.ContentLength)
				}
				gotResp = append(gotResp, strings.Join([]string{"HTTP/" + r.Version, fmt.Sprint(r.Status), r.Reason, r.ContentType, cl}, "|"))
				// busybox closes after each response: the rest is the body.
				b = nil
			default:
				t.Fatalf("%s: unexpected stream bytes %q", key, b[:min(len(b), 40)])
			}
		}
	}
	corpus.Save(t, "FuzzHTTPRequest", seedsReq)
	corpus.Save(t, "FuzzHTTPResponse", seedsResp)

	reqFields := []string{"http.request.method", "http.request.uri", "http.request.version", "http.host", "http.user_agent", "http.content_type", "http.content_length_header", "http.transfer_encoding"}
	var wantReq []string
	for _, v := range testnet.FrameFields(t, path, "http.request", reqFields...) {
		v[3] = httpHost(v[3])
		wantReq = append(wantReq, strings.Join(v, "|"))
	}
	respFields := []string{"http.response.version", "http.response.code", "http.response.phrase", "http.content_type", "http.content_length_header"}
	var wantResp []string
	for _, v := range testnet.FrameFields(t, path, "http.response", respFields...) {
		wantResp = append(wantResp, strings.Join(v, "|"))
	}
	slices.Sort(gotReq)
	slices.Sort(wantReq)
	slices.Sort(gotResp)
	slices.Sort(wantResp)
	if len(gotReq) != 8 {
		t.Errorf("parsed %d requests, want 8", len(gotReq))
	}
	if !slices.Equal(gotReq, wantReq) {
		t.Errorf("requests differ from tshark:\n got %q\nwant %q", gotReq, wantReq)
	}
	if !slices.Equal(gotResp, wantResp) {
		t.Errorf("responses differ from tshark:\n got %q\nwant %q", gotResp, wantResp)
	}

	// OCSP: tshark decodes the POST body as OCSP; the GET carries the same DER.
	tsOCSP := testnet.FrameFields(t, path, "ocsp && http.request", "http.request.method", "http.request.uri")
	if len(tsOCSP) != 1 {
		t.Errorf("tshark found %d OCSP requests, want 1: %v", len(tsOCSP), tsOCSP)
	}
	for _, v := range tsOCSP {
		if !ocsp[v[0]+" "+v[1]] {
			t.Errorf("IsOCSP false for %s %s, which tshark decodes as OCSP", v[0], v[1])
		}
	}
	wantOCSP := map[string]bool{"POST /ocsp": true, "GET " + ocspGET: true, "GET " + notOCSPGET: false, "GET /index.html": false, "POST /post": false}
	for k, want := range wantOCSP {
		if got, ok := ocsp[k]; !ok || got != want {
			t.Errorf("IsOCSP(%s) = %v (seen %v), want %v", k, got, ok, want)
		}
	}
	if !IsOCSPRequestDER(der) || IsOCSPRequestDER(notOCSP) {
		t.Errorf("IsOCSPRequestDER: request %v, certificate %v", IsOCSPRequestDER(der), IsOCSPRequestDER(notOCSP))
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
