package analyzer

import (
	"cmp"
	"errors"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"github.com/firstboot/firstboot/analyzer/decode"
	"github.com/firstboot/firstboot/analyzer/dhcpv6"
	"github.com/firstboot/firstboot/analyzer/dns"
	"github.com/firstboot/firstboot/analyzer/lan"
	"github.com/firstboot/firstboot/analyzer/mdns"
	"github.com/firstboot/firstboot/analyzer/nbns"
	"github.com/firstboot/firstboot/analyzer/ssdp"
	"github.com/firstboot/firstboot/analyzer/wsd"
	"github.com/firstboot/firstboot/results/schema"
)

// What a machine announces on its local network: each message becomes a
// lan.log record, and what it reveals (names, services, DUIDs, user
// agents, …) is aggregated per step into lan_announcements.

const protoIGMP = 2

// maxLANIdentifiers bounds the distinct (step, kind, value) identifiers
// aggregated; past it, new ones are not counted.
const maxLANIdentifiers = 1 << 16

// UDP ports of LAN discovery protocols.
const (
	portNBNS   = 137
	portNBDS   = 138
	portSSDP   = 1900
	portWSD    = 3702
	portDHCP6C = 546
	portDHCP6S = 547
)

type lanAgg struct {
	recs    []schema.LAN
	dropped int64
	ids     map[lanIDKey]*lanIDAgg
}

type lanIDKey struct {
	step        int
	kind, value string
}

type lanIDAgg struct {
	protos  map[string]bool
	senders map[string]bool
	count   int64
	first   int64
}

// lanItem is one identifier a message revealed.
type lanItem struct{ kind, value string }

// lanMsg is a LAN message being recorded.
type lanMsg struct {
	id          schema.ConnID
	proto, msg  string
	mac, sender string
	items       []lanItem
}

// maxLANItems bounds the identifiers kept of one message: real ones
// reveal a few dozen; a crafted one listing thousands must not make the
// repeat check quadratic.
const maxLANItems = 64

func (m *lanMsg) add(kind, value string) {
	if value == "" || len(m.items) >= maxLANItems {
		return
	}
	for _, it := range m.items {
		if it.kind == kind && it.value == value {
			return
		}
	}
	m.items = append(m.items, lanItem{kind, value})
}

// record writes a LAN message's lan.log record and counts its identifiers
// in step si.
func (e *engine) lanRecord(m *lanMsg, ts int64, si int) {
	l := &e.lan
	if len(l.recs) < schema.MaxLANRecords {
		ids := make([]string, len(m.items))
		for i, it := range m.items {
			ids[i] = it.kind + "=" + it.value
		}
		m.id.TS = nsTime(ts)
		l.recs = append(l.recs, schema.LAN{ConnID: m.id, Proto: m.proto, Msg: m.msg, MAC: m.mac,
			Identifiers: ids, Step: e.steps.name(si)})
	} else {
		l.dropped++
	}
	if l.ids == nil {
		l.ids = map[lanIDKey]*lanIDAgg{}
	}
	for _, it := range m.items {
		k := lanIDKey{si, it.kind, it.value}
		a := l.ids[k]
		if a == nil {
			if len(l.ids) >= maxLANIdentifiers {
				continue
			}
			a = &lanIDAgg{protos: map[string]bool{}, senders: map[string]bool{}, first: ts}
			l.ids[k] = a
		}
		a.count++
		a.first = min(a.first, ts)
		a.protos[m.proto] = true
		if m.sender != "" && len(a.senders) < 64 {
			a.senders[m.sender] = true
		}
	}
}

// lanSender is how a packet's sender is listed: its address, or its MAC
// when it has none yet (ARP probes, DHCP, duplicate address detection).
func (e *engine) lanSender(v uint8, src [16]byte, mac []byte) string {
	if a := addrOf(v, src); !a.IsUnspecified() {
		return e.addrString(v, src)
	}
	if len(mac) == 6 {
		return e.macStr([6]byte(mac))
	}
	return e.addrString(v, src)
}

func (e *engine) macStr(m [6]byte) string {
	return e.macString(&dir{mac: m, hasMAC: true})
}

func (e *engine) packetMAC(p *decode.Packet) string {
	if !p.HasMAC {
		return ""
	}
	return e.macStr(p.SrcMAC)
}

// flowMsg starts a LAN message carried by flow f in direction di.
func (e *engine) flowMsg(f *flow, p *decode.Packet, ts int64, proto, msg string) lanMsg {
	var mac []byte
	if p.HasMAC {
		mac = p.SrcMAC[:]
	}
	return lanMsg{id: e.connID(f, ts), proto: proto, msg: msg, mac: e.packetMAC(p), sender: e.lanSender(p.IPVersion, p.Src, mac)}
}

// nonIP counts a frame without IP and reads ARP's announcements.
func (e *engine) nonIP(p *decode.Packet, ts int64, si int) {
	name := decode.NonIPName(p)
	for _, c := range []*counters{&e.all, &e.cnt[si]} {
		if c.nonIP == nil {
			c.nonIP = map[string]int64{}
		}
		c.nonIP[name]++
	}
	if p.EtherType != 0x0806 {
		return
	}
	a, err := lan.ParseARP(p.L4)
	if err != nil {
		if !errors.Is(err, lan.ErrUnsupported) {
			e.parserError("arp")
		}
		return
	}
	claimed, ok := a.Claimed()
	if !ok {
		return // a request or reply: address resolution, not an announcement
	}
	mac := e.macStr([6]byte(a.SenderMAC))
	sender := mac
	if !a.SenderIP.IsUnspecified() {
		sender = a.SenderIP.String()
	}
	m := lanMsg{id: schema.ConnID{OrigH: a.SenderIP.String(), RespH: a.TargetIP.String()},
		proto: "arp", msg: a.Kind(), mac: mac, sender: sender}
	m.add("address", claimed.String())
	m.add("mac", mac)
	e.lanRecord(&m, ts, si)
}

// icmpv6LAN reads router and neighbour discovery and MLD messages (the
// ICMPv6 flow is e.lastFlow): solicitations, duplicate address detection,
// unsolicited advertisements and multicast group reports.
func (e *engine) icmpv6LAN(p *decode.Packet, ts int64, si int) {
	if !lan.Discovery(p.ICMPType) || e.lastFlow == nil {
		return
	}
	nd, err := lan.ParseICMPv6(p.ICMPType, p.Payload)
	if err != nil {
		e.parserError("ndp")
		return
	}
	dst := addrOf(6, p.Dst)
	proto, msg := "ndp", ""
	switch nd.Type {
	case lan.TypeRS:
		msg = "router_solicitation"
	case lan.TypeNS:
		if !addrOf(6, p.Src).IsUnspecified() {
			return // address resolution
		}
		msg = "dad"
	case lan.TypeNA:
		if !dst.IsMulticast() {
			return // an answer to a solicitation
		}
		msg = "neighbor_advertisement"
	case lan.TypeMLDReport, lan.TypeMLDv2Report:
		proto, msg = "mld", "report"
		if len(nd.Joined) == 0 && len(nd.Left) > 0 {
			msg = "leave"
		}
	case lan.TypeMLDDone:
		proto, msg = "mld", "leave"
	default:
		return
	}
	m := e.flowMsg(e.lastFlow, p, ts, proto, msg)
	if nd.Target.IsValid() {
		m.add("address", nd.Target.String())
	}
	if len(nd.LinkAddr) == 6 {
		m.add("mac", e.macStr([6]byte(nd.LinkAddr)))
	}
	for _, g := range slices.Concat(nd.Joined, nd.Left) {
		m.add("group", g.String())
	}
	e.lanRecord(&m, ts, si)
}

// igmp reads IGMP membership reports: the groups a machine joins.
func (e *engine) igmp(p *decode.Packet, ts int64, si int) {
	g, err := lan.ParseIGMP(p.L4)
	if err != nil {
		e.parserError("igmp")
		return
	}
	if len(g.Joined) == 0 && len(g.Left) == 0 {
		return // a query
	}
	msg := "report"
	if len(g.Joined) == 0 {
		msg = "leave"
	}
	var mac []byte
	if p.HasMAC {
		mac = p.SrcMAC[:]
	}
	m := lanMsg{id: schema.ConnID{OrigH: e.addrString(p.IPVersion, p.Src), RespH: e.addrString(p.IPVersion, p.Dst)},
		proto: "igmp", msg: msg, mac: e.packetMAC(p), sender: e.lanSender(p.IPVersion, p.Src, mac)}
	for _, a := range slices.Concat(g.Joined, g.Left) {
		m.add("group", a.String())
	}
	e.lanRecord(&m, ts, si)
}

// lanPort reports the UDP ports of LAN discovery protocols and tunnels.
func lanPort(p uint16) bool {
	switch p {
	case portNBNS, portNBDS, portSSDP, portWSD, portDHCP6C, portDHCP6S,
		decode.PortVXLAN, decode.PortGeneve, decode.PortGTPU:
		return true
	}
	return false
}

// udpLAN reads a datagram on a LAN discovery or tunnel port; it reports
// false when the datagram is none of them after all.
func (e *engine) udpLAN(f *flow, di int, p *decode.Packet, ts int64) bool {
	if e.udpTunnel(f, p.Payload, ts, e.steps.index(ts)) {
		return true
	}
	op, rp := f.ports()
	si := e.steps.index(ts)
	b := p.Payload
	has := func(port uint16) bool { return op == port || rp == port }
	switch {
	case has(portDHCP6C) || has(portDHCP6S):
		m, err := dhcpv6.Parse(b)
		if err != nil {
			e.parserError("dhcpv6")
			if m == nil {
				return true
			}
		}
		f.service = "dhcpv6"
		e.dhcpv6Message(f, p, m, ts, si)
	case has(portNBNS):
		m, err := nbns.Parse(b)
		if err != nil {
			e.parserError("nbns")
			if m == nil {
				return true
			}
		}
		f.service = "nbns"
		e.nbnsMessage(f, p, m, ts, si)
	case has(portNBDS):
		a, err := nbns.ParseDatagram(b)
		if err != nil {
			e.parserError("nbds")
			return true
		}
		f.service = "nbds"
		if a != nil {
			lm := e.flowMsg(f, p, ts, "nbds", "host_announcement")
			lm.add("netbios_name", a.Server)
			lm.add("os_version", strconv.Itoa(int(a.OSMajor))+"."+strconv.Itoa(int(a.OSMinor)))
			lm.add("comment", a.Comment)
			e.lanRecord(&lm, ts, si)
		}
	case has(portSSDP):
		m, err := ssdp.Parse(b)
		if err != nil {
			e.parserError("ssdp")
			return true
		}
		f.service = "ssdp"
		e.ssdpMessage(f, p, m, ts, si)
	case has(portWSD):
		m, err := wsd.Parse(b)
		if err != nil {
			e.parserError("wsd")
			return true
		}
		f.service = "wsd"
		lm := e.flowMsg(f, p, ts, "wsd", m.Action)
		kind := "device_type"
		if m.Action == "Probe" {
			kind = "query" // the types it looks for
		}
		for _, t := range m.Types {
			lm.add(kind, t)
		}
		for _, ep := range m.Endpoints {
			lm.add("endpoint", ep)
		}
		for _, s := range m.Scopes {
			lm.add("scope", s)
		}
		for _, x := range m.XAddrs {
			lm.add("location", x)
		}
		e.lanRecord(&lm, ts, si)
	default:
		return false
	}
	return true
}

// mdnsLAN reads what an mDNS or LLMNR message reveals (dnsMessage made its
// dns.log record).
func (e *engine) mdnsLAN(f *flow, p *decode.Packet, b []byte, ts int64, proto string) {
	if proto == "dns" {
		return
	}
	m, err := dns.ParseFull(b)
	if err != nil && len(m.Questions) == 0 && len(m.Answers) == 0 {
		return // dnsMessage counted the error
	}
	lm := e.flowMsg(f, p, ts, proto, mdns.Kind(m))
	for _, it := range mdns.Items(m) {
		lm.add(it.Kind, it.Value)
	}
	if len(lm.items) > 0 {
		e.lanRecord(&lm, ts, e.steps.index(ts))
	}
}

func (e *engine) nbnsMessage(f *flow, p *decode.Packet, m *nbns.Message, ts int64, si int) {
	msg := m.OpName()
	if m.Response && m.Opcode == 0 {
		msg = "response"
	}
	lm := e.flowMsg(f, p, ts, "nbns", msg)
	for _, n := range m.Names {
		switch {
		case !m.Response && m.Opcode == 0:
			lm.add("query", n.String())
		case n.Group:
			lm.add("netbios_group", n.String())
		default:
			lm.add("netbios_name", n.String())
		}
	}
	if !m.Response || m.Opcode == 0 {
		for _, a := range m.Addrs {
			lm.add("address", a.String())
		}
	}
	e.lanRecord(&lm, ts, si)
}

func (e *engine) ssdpMessage(f *flow, p *decode.Packet, m *ssdp.Message, ts int64, si int) {
	msg := m.Method
	if msg == "" {
		msg = "response"
	}
	if m.Method != "" {
		// tshark reads SSDP requests as HTTP: so does http.log.
		f.httpN++
		rec := e.baseHTTP(f)
		rec.TransDepth, rec.Method, rec.URI, rec.Version = f.httpN, e.intern([]byte(m.Method)), m.URI, m.Version
		rec.Host, rec.UserAgent = m.Host, m.UserAgent
		e.out.http(&rec)
	}
	lm := e.flowMsg(f, p, ts, "ssdp", msg)
	if m.Method == "M-SEARCH" {
		lm.add("query", m.ST)
	} else {
		lm.add("device_type", m.ST)
	}
	lm.add("device_type", m.NT)
	lm.add("usn", m.USN)
	lm.add("server", m.Server)
	lm.add("user_agent", m.UserAgent)
	lm.add("location", m.Location)
	for _, h := range m.Extra {
		name, v, _ := strings.Cut(h, ": ")
		switch name {
		case "X-USER-AGENT":
			lm.add("user_agent", v)
		case "X-FRIENDLY-NAME", "FRIENDLYNAME.DLNA.ORG":
			lm.add("friendly_name", v)
		default:
			lm.add("header", h)
		}
	}
	e.lanRecord(&lm, ts, si)
}

// dhcpLAN records what a DHCP client message reveals.
func (e *engine) dhcpLAN(f *flow, p *decode.Packet, ts int64, msg, hostname, vendor, params string, clientID []byte) {
	lm := e.flowMsg(f, p, ts, "dhcp", msg)
	lm.add("hostname", hostname)
	lm.add("vendor_class", vendor)
	lm.add("param_list", params)
	if len(clientID) > 0 {
		lm.add("client_id", dhcpv6.DUIDString(clientID))
	}
	e.lanRecord(&lm, ts, e.steps.index(ts))
}

// dhcpv6Message adds a DHCPv6 message to its transaction's dhcp.log record
// (keyed by client DUID and transaction id) and, for a client's, to lan.log.
func (e *engine) dhcpv6Message(f *flow, p *decode.Packet, m *dhcpv6.Message, ts int64, si int) {
	duid := dhcpv6.DUIDString(m.ClientID)
	tx := e.dhcpTransaction(dhcpKey{mac: "duid " + duid, xid: m.XID}, f, ts)
	r := &tx.rec
	r.DHCPv6, r.ClientID = true, duid
	r.MsgTypes = append(r.MsgTypes, dhcpv6.TypeName(m.Type))
	if mac := dhcpv6.DUIDMAC(m.ClientID); mac != nil && r.MAC == "" {
		r.MAC = mac.String()
	}
	var addr string
	if len(m.Addrs) > 0 {
		addr = m.Addrs[0].String()
	}
	if !dhcpv6.FromClient(m.Type) {
		r.ServerAddr = e.addrString(p.IPVersion, p.Src)
		if addr != "" && (m.Type == 7 || r.AssignedAddr == "") {
			r.AssignedAddr = addr
		}
		if m.Valid > 0 {
			r.LeaseTime = float64(m.Valid)
		}
		if len(m.Domains) > 0 {
			r.Domain = m.Domains[0]
		}
		return
	}
	tx.client = true
	if r.MAC == "" && p.HasMAC {
		r.MAC = e.macStr(p.SrcMAC)
	}
	r.ClientAddr = e.addrString(p.IPVersion, p.Src)
	if addr != "" {
		r.RequestedAddr = addr
	}
	oro := make([]string, len(m.ORO))
	for i, o := range m.ORO {
		oro[i] = strconv.Itoa(int(o))
	}
	params := strings.Join(oro, ",")
	r.HostName = cmp.Or(m.FQDN, r.HostName)
	r.VendorClass = cmp.Or(m.VendorClass, r.VendorClass)
	r.ParamList = cmp.Or(params, r.ParamList)

	lm := e.flowMsg(f, p, ts, "dhcpv6", dhcpv6.TypeName(m.Type))
	lm.add("duid", duid)
	if mac := dhcpv6.DUIDMAC(m.ClientID); mac != nil {
		lm.add("mac", mac.String())
	}
	lm.add("fqdn", m.FQDN)
	lm.add("vendor_class", m.VendorClass)
	lm.add("user_class", m.UserClass)
	lm.add("param_list", params)
	e.lanRecord(&lm, ts, si)
}

// lanIdentifiers lists the identifiers of step si (-1: merged over all
// steps); host tells whether a sender is the studied machine.
func (e *engine) lanIdentifiers(si int, host func(string) bool) []schema.LANIdentifier {
	type key struct{ kind, value string }
	type acc struct {
		id      schema.LANIdentifier
		first   int64
		protos  map[string]bool
		senders map[string]bool
	}
	m := map[key]*acc{}
	for k, a := range e.lan.ids {
		if si >= 0 && k.step != si {
			continue
		}
		kk := key{k.kind, k.value}
		x := m[kk]
		if x == nil {
			x = &acc{id: schema.LANIdentifier{Kind: k.kind, Value: k.value}, first: a.first,
				protos: map[string]bool{}, senders: map[string]bool{}}
			x.id.Step = e.steps.name(k.step)
			m[kk] = x
		}
		if a.first < x.first {
			x.first, x.id.Step = a.first, e.steps.name(k.step)
		}
		x.id.Count += a.count
		for p := range a.protos {
			x.protos[p] = true
		}
		for s := range a.senders {
			x.senders[s] = true
		}
	}
	out := make([]schema.LANIdentifier, 0, len(m))
	for _, x := range m {
		id := x.id
		id.FirstTS = nsTime(x.first)
		id.Protocols, id.Senders = sortedKeys(x.protos), sortedKeys(x.senders)
		id.Host = slices.ContainsFunc(id.Senders, host)
		out = append(out, id)
	}
	slices.SortFunc(out, func(a, b schema.LANIdentifier) int {
		return cmp.Or(cmp.Compare(a.Kind, b.Kind), cmp.Compare(a.Value, b.Value))
	})
	if len(out) == 0 {
		return nil
	}
	return out
}

// hostMatcher tells whether a LAN sender (an address or a MAC) is the
// studied machine.
func hostMatcher(h *schema.Host) func(string) bool {
	return func(s string) bool {
		if s == "" {
			return false
		}
		if s == h.IP || s == h.MAC || slices.Contains(h.OtherIPs, s) {
			return true
		}
		if hw, err := net.ParseMAC(s); err == nil && h.MAC != "" {
			return hw.String() == h.MAC
		}
		if a, err := netip.ParseAddr(s); err == nil && h.IP != "" {
			return a.String() == h.IP
		}
		return false
	}
}
