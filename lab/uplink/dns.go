package uplink

import (
	"bufio"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/net/dns/dnsmessage"

	"github.com/firstboot/firstboot/lab/netns"
)

// DNSConfig says where a routed run's DNS forwarder listens and whom it asks.
type DNSConfig struct {
	// Netns and Addr are where the guests reach it: the lab namespace and the
	// lab bridge's address (the DNS server the lab network's DHCP hands out).
	Netns string
	Addr  netip.Addr
	// Port defaults to 53 (UDP and TCP).
	Port int
	// Upstreams are the resolvers asked, in order. Empty means the
	// nameservers of /etc/resolv.conf as this process sees it: the resolvers
	// of the namespace firstboot runs in. Queries to them leave from that
	// namespace, as the host's own would.
	Upstreams []netip.AddrPort
	// Log gets one JSON line (DNSRecord) per query; nil logs nothing.
	Log io.Writer
	// Timeout bounds each try of an upstream (default 3 s).
	Timeout time.Duration
}

// DNSRecord is one line of a forwarder's log.
type DNSRecord struct {
	TS       time.Time `json:"ts"`
	Proto    string    `json:"proto"`  // udp or tcp
	Client   string    `json:"client"` // ip:port of the guest
	ID       uint16    `json:"id"`
	Name     string    `json:"name,omitempty"`
	QType    string    `json:"qtype,omitempty"`
	Upstream string    `json:"upstream,omitempty"` // the resolver that answered
	RCode    string    `json:"rcode,omitempty"`
	Answers  []string  `json:"answers,omitempty"` // "TYPE value", in answer order
	Millis   float64   `json:"ms"`
	Error    string    `json:"error,omitempty"` // why the guest got SERVFAIL
}

// DNS is a running forwarder.
type DNS struct {
	cfg  DNSConfig
	udp  *net.UDPConn
	tcp  net.Listener
	sem  chan struct{} // bounds queries in flight
	wg   sync.WaitGroup
	logM sync.Mutex

	closeOnce sync.Once
	closed    chan struct{}
}

// StartDNS opens the forwarder's sockets in the lab namespace and serves
// until Close. Every query goes to the upstreams unchanged; a query no
// upstream answers gets SERVFAIL. Nothing is cached: each guest query is one
// upstream query, so the log shows what the guest asked when.
func StartDNS(cfg DNSConfig) (_ *DNS, err error) {
	if cfg.Port == 0 {
		cfg.Port = 53
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = 3 * time.Second
	}
	if len(cfg.Upstreams) == 0 {
		if cfg.Upstreams, err = Resolvers("/etc/resolv.conf"); err != nil {
			return nil, fmt.Errorf("routed mode DNS: %w", err)
		}
	}
	d := &DNS{cfg: cfg, sem: make(chan struct{}, 64), closed: make(chan struct{})}
	at := netip.AddrPortFrom(cfg.Addr, uint16(cfg.Port))
	err = netns.Do(cfg.Netns, func() error {
		var err error
		if d.udp, err = net.ListenUDP("udp", net.UDPAddrFromAddrPort(at)); err != nil {
			return err
		}
		d.tcp, err = net.Listen("tcp", at.String())
		return err
	})
	if err != nil {
		if d.udp != nil {
			d.udp.Close()
		}
		return nil, fmt.Errorf("routed mode DNS: listening on %s in netns %s: %w", at, cfg.Netns, err)
	}
	d.wg.Add(2)
	go d.serveUDP()
	go d.serveTCP()
	return d, nil
}

// Upstreams are the resolvers the forwarder asks.
func (d *DNS) Upstreams() []netip.AddrPort { return d.cfg.Upstreams }

// Close stops serving and waits for queries in flight.
func (d *DNS) Close() error {
	var err error
	d.closeOnce.Do(func() {
		close(d.closed)
		err = errors.Join(d.udp.Close(), d.tcp.Close())
		d.wg.Wait()
	})
	return err
}

// Resolvers reads the nameservers of a resolv.conf (port 53).
func Resolvers(path string) ([]netip.AddrPort, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("reading the resolvers: %w", err)
	}
	defer f.Close()
	var out []netip.AddrPort
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 2 || fields[0] != "nameserver" {
			continue
		}
		if a, err := netip.ParseAddr(fields[1]); err == nil {
			out = append(out, netip.AddrPortFrom(a, 53))
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no nameserver in %s of the namespace firstboot runs in: configure a resolver there", path)
	}
	return out, sc.Err()
}

func (d *DNS) serveUDP() {
	defer d.wg.Done()
	buf := make([]byte, 65535)
	for {
		n, client, err := d.udp.ReadFromUDPAddrPort(buf)
		if err != nil {
			select {
			case <-d.closed:
				return
			default:
			}
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		q := append([]byte(nil), buf[:n]...)
		d.sem <- struct{}{}
		d.wg.Add(1)
		go func() {
			defer func() { <-d.sem; d.wg.Done() }()
			if resp := d.forward("udp", client, q); resp != nil {
				_, _ = d.udp.WriteToUDPAddrPort(resp, client)
			}
		}()
	}
}

func (d *DNS) serveTCP() {
	defer d.wg.Done()
	for {
		c, err := d.tcp.Accept()
		if err != nil {
			return
		}
		d.wg.Add(1)
		go func() {
			defer d.wg.Done()
			defer c.Close()
			client := netip.MustParseAddrPort(c.RemoteAddr().String())
			for {
				_ = c.SetDeadline(time.Now().Add(10 * time.Second))
				q, err := readTCPMsg(c)
				if err != nil {
					return
				}
				resp := d.forward("tcp", client, q)
				if resp == nil || writeTCPMsg(c, resp) != nil {
					return
				}
			}
		}()
	}
}

func readTCPMsg(r io.Reader) ([]byte, error) {
	var l [2]byte
	if _, err := io.ReadFull(r, l[:]); err != nil {
		return nil, err
	}
	b := make([]byte, binary.BigEndian.Uint16(l[:]))
	_, err := io.ReadFull(r, b)
	return b, err
}

func writeTCPMsg(w io.Writer, m []byte) error {
	_, err := w.Write(append(binary.BigEndian.AppendUint16(nil, uint16(len(m))), m...))
	return err
}

// forward asks the upstreams and returns the reply for the guest (SERVFAIL
// when none answered; nil when the query cannot be answered at all), logging
// the exchange.
func (d *DNS) forward(proto string, client netip.AddrPort, q []byte) []byte {
	start := time.Now()
	rec := DNSRecord{TS: start.UTC(), Proto: proto, Client: client.String()}
	var p dnsmessage.Parser
	h, err := p.Start(q)
	if err != nil || h.Response {
		rec.Error = "not a DNS query"
		d.log(rec, start)
		return nil
	}
	rec.ID = h.ID
	question, qerr := p.Question()
	if qerr == nil {
		rec.Name = strings.TrimSuffix(question.Name.String(), ".")
		rec.QType = strings.TrimPrefix(question.Type.String(), "Type")
	}
	resp, up, err := d.exchange(proto, q, h.ID)
	if err != nil {
		rec.Error = err.Error()
		resp = servfail(h, question, qerr == nil)
	} else {
		rec.Upstream = up.String()
	}
	rec.RCode, rec.Answers = describe(resp)
	d.log(rec, start)
	return resp
}

// exchange tries each upstream in order, from firstboot's namespace.
func (d *DNS) exchange(proto string, q []byte, id uint16) ([]byte, netip.AddrPort, error) {
	var errs []error
	for _, up := range d.cfg.Upstreams {
		resp, err := d.ask(proto, up, q, id)
		if err == nil {
			return resp, up, nil
		}
		errs = append(errs, fmt.Errorf("%s: %w", up, err))
	}
	return nil, netip.AddrPort{}, errors.Join(errs...)
}

func (d *DNS) ask(proto string, up netip.AddrPort, q []byte, id uint16) ([]byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), d.cfg.Timeout)
	defer cancel()
	var dialer net.Dialer
	c, err := dialer.DialContext(ctx, proto, up.String())
	if err != nil {
		return nil, err
	}
	defer c.Close()
	deadline, _ := ctx.Deadline()
	_ = c.SetDeadline(deadline)
	if proto == "tcp" {
		if err := writeTCPMsg(c, q); err != nil {
			return nil, err
		}
		return readTCPMsg(c)
	}
	if _, err := c.Write(q); err != nil {
		return nil, err
	}
	buf := make([]byte, 65535)
	for {
		n, err := c.Read(buf)
		if err != nil {
			return nil, err
		}
		// A connected socket takes datagrams from the upstream only; skip
		// any that answers something else.
		if n >= 2 && binary.BigEndian.Uint16(buf) == id {
			return buf[:n], nil
		}
	}
}

// servfail builds a SERVFAIL reply to a query.
func servfail(h dnsmessage.Header, q dnsmessage.Question, hasQ bool) []byte {
	b := dnsmessage.NewBuilder(nil, dnsmessage.Header{
		ID: h.ID, Response: true, OpCode: h.OpCode, RecursionDesired: h.RecursionDesired,
		RecursionAvailable: true, RCode: dnsmessage.RCodeServerFailure,
	})
	if hasQ {
		_ = b.StartQuestions()
		_ = b.Question(q)
	}
	out, _ := b.Finish()
	return out
}

// describe gives a reply's rcode and answers for the log.
func describe(resp []byte) (string, []string) {
	var p dnsmessage.Parser
	h, err := p.Start(resp)
	if err != nil {
		return "", nil
	}
	rcode := rcodeName(h.RCode)
	if err := p.SkipAllQuestions(); err != nil {
		return rcode, nil
	}
	var answers []string
	for {
		ah, err := p.AnswerHeader()
		if err != nil {
			break
		}
		typ := strings.TrimPrefix(ah.Type.String(), "Type")
		var v string
		switch ah.Type {
		case dnsmessage.TypeA:
			r, err := p.AResource()
			if err != nil {
				return rcode, answers
			}
			v = netip.AddrFrom4(r.A).String()
		case dnsmessage.TypeAAAA:
			r, err := p.AAAAResource()
			if err != nil {
				return rcode, answers
			}
			v = netip.AddrFrom16(r.AAAA).String()
		case dnsmessage.TypeCNAME:
			r, err := p.CNAMEResource()
			if err != nil {
				return rcode, answers
			}
			v = strings.TrimSuffix(r.CNAME.String(), ".")
		default:
			if err := p.SkipAnswer(); err != nil {
				return rcode, answers
			}
			v = "(" + strconv.Itoa(int(ah.Length)) + " bytes)"
		}
		answers = append(answers, typ+" "+v)
	}
	return rcode, answers
}

// rcodeName gives the usual names (dig's) of the common response codes.
func rcodeName(r dnsmessage.RCode) string {
	switch r {
	case dnsmessage.RCodeSuccess:
		return "NOERROR"
	case dnsmessage.RCodeFormatError:
		return "FORMERR"
	case dnsmessage.RCodeServerFailure:
		return "SERVFAIL"
	case dnsmessage.RCodeNameError:
		return "NXDOMAIN"
	case dnsmessage.RCodeNotImplemented:
		return "NOTIMP"
	case dnsmessage.RCodeRefused:
		return "REFUSED"
	}
	return "RCODE" + strconv.Itoa(int(r))
}

func (d *DNS) log(rec DNSRecord, start time.Time) {
	if d.cfg.Log == nil {
		return
	}
	rec.Millis = float64(time.Since(start).Microseconds()) / 1000
	b, err := json.Marshal(rec)
	if err != nil {
		return
	}
	d.logM.Lock()
	defer d.logM.Unlock()
	_, _ = d.cfg.Log.Write(append(b, '\n'))
}
