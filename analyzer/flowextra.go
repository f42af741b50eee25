package analyzer

import (
	"net/netip"

	"github.com/firstboot/firstboot/results/schema"
)

// flowExtra holds the state only a few flows need, behind one pointer so
// the flows of ordinary traffic stay as small as they were.
type flowExtra struct {
	// tunnels are the uids of the tunnels the flow's packets came
	// through (tunnel_parents), outermost first.
	tunnels []string

	// A proxy tunnel (proxy.go): the proxy's kind ("http_connect",
	// "socks4", "socks4a", "socks5"), the destination asked for
	// ("host:port"), its host name or address.
	proxy       string
	proxiedTo   string
	proxiedHost string
	proxiedAddr netip.Addr
	socks       socksState

	// An HTTP CONNECT request waiting for its response: the client's
	// later bytes belong to the tunnel, or to HTTP again if it is refused.
	connectWait bool

	// firstService is the service before the protocol changed (STARTTLS,
	// a proxy tunnel): the conn's service lists both, as Zeek's does.
	firstService string

	// STARTTLS (starttls.go): the protocol spoken before the upgrade, and
	// whether the client asked for it.
	starttls      string
	starttlsAsked bool
	plainLines    int

	// TLS (stream.go): the first ClientHello was answered by a
	// HelloRetryRequest, so a second one follows.
	helloRetry bool
	retried    *schema.TLS // the first hello's record, answered by the HelloRetryRequest
}

// extra returns the flow's extra state, made on first use.
func (f *flow) extra() *flowExtra {
	if f.x == nil {
		f.x = &flowExtra{}
	}
	return f.x
}
