package analyzer

import (
	"encoding/binary"
	"slices"

	"github.com/firstboot/firstboot/analyzer/decode"
	"github.com/firstboot/firstboot/results/schema"
)

// Tunnels are followed this many levels deep (a VXLAN inside GRE inside
// PPPoE is two): deeper nesting is counted as a "tunnel" decode error.
const maxTunnelDepth = 4

// maxTunnels bounds the tunnels remembered for tunnel.log (and its
// records); past it, inner packets are still analysed, with their tunnel
// uids, but new tunnels get no tunnel.log record.
const maxTunnels = 1 << 14

// tunnelKey identifies an IP tunnel (GRE or IP-in-IP) by its outer
// addresses, whichever way a packet goes.
type tunnelKey struct {
	typ  uint8 // the outer IP protocol
	v    uint8
	a, b [16]byte
}

// tunnels is what the engine keeps about tunnels: the stack of uids of
// the tunnels around the packet being analysed, a packet per level to
// decode inner packets into, and the tunnels seen.
type tunnels struct {
	stack []string
	inner *[maxTunnelDepth]decode.Packet
	ip    map[tunnelKey]string // IP tunnels' uids
	flows map[string]bool      // UDP tunnel flows already in recs, by uid
	recs  []schema.Tunnel
}

// ipTunnel follows a GRE or IP-in-IP packet (IPv4 or IPv6 inside IPv4 or
// IPv6) into the packet it carries. Zeek gives such a tunnel a uid of its
// own, but no conn record: here too.
func (e *engine) ipTunnel(p *decode.Packet, ts int64, si int) {
	b, kind, typ := p.L4, decode.InnerIP, "Tunnel::IP"
	if p.Proto == decode.ProtoGRE {
		b, kind = decode.GRE(p.L4)
		typ = "Tunnel::GRE"
		if kind == decode.InnerNone {
			e.parserError("gre")
			return
		}
	}
	k := tunnelKey{typ: p.Proto, v: p.IPVersion, a: p.Src, b: p.Dst}
	if compare16(k.a, k.b) > 0 {
		k.a, k.b = k.b, k.a
	}
	uid, ok := e.tun.ip[k]
	if !ok {
		var buf [2 + 32 + 8]byte
		buf[0], buf[1] = k.typ, k.v
		copy(buf[2:], k.a[:])
		copy(buf[18:], k.b[:])
		binary.BigEndian.PutUint64(buf[34:], uint64(len(e.tun.ip)))
		uid = e.uid(buf[:])
		if len(e.tun.ip) < maxTunnels {
			if e.tun.ip == nil {
				e.tun.ip = map[tunnelKey]string{}
			}
			e.tun.ip[k] = uid
			e.addTunnel(schema.ConnID{TS: nsTime(ts), UID: uid,
				OrigH: e.addrString(p.IPVersion, p.Src), RespH: e.addrString(p.IPVersion, p.Dst)}, typ, ts)
		}
	}
	e.decapsulate(kind, b, uid, nil, ts, si)
}

// udpTunnel follows a VXLAN, Geneve or GTP-U datagram of flow f into the
// frame it carries; the outer flow is the tunnel, its uid the parent.
func (e *engine) udpTunnel(f *flow, b []byte, ts int64, si int) bool {
	op, rp := f.ports()
	var inner []byte
	var kind decode.Inner
	var service, typ string
	switch {
	case rp == decode.PortVXLAN || op == decode.PortVXLAN:
		inner, kind = decode.VXLAN(b)
		service, typ = "vxlan", "Tunnel::VXLAN"
	case rp == decode.PortGeneve || op == decode.PortGeneve:
		inner, kind = decode.Geneve(b)
		service, typ = "geneve", "Tunnel::GENEVE"
	case rp == decode.PortGTPU || op == decode.PortGTPU:
		inner, kind = decode.GTPU(b)
		service, typ = "gtpv1", "Tunnel::GTPv1"
	default:
		return false
	}
	if kind == decode.InnerNone {
		return true // a control message, or not the tunnel after all
	}
	f.service = service
	if !e.tun.flows[f.uid] && len(e.tun.flows) < maxTunnels {
		if e.tun.flows == nil {
			e.tun.flows = map[string]bool{}
		}
		e.tun.flows[f.uid] = true
		e.addTunnel(e.connID(f, f.first), typ, f.first)
	}
	e.decapsulate(kind, inner, f.uid, f, ts, si)
	return true
}

// addTunnel adds a tunnel.log record, up to maxTunnels of them.
func (e *engine) addTunnel(id schema.ConnID, typ string, ts int64) {
	if len(e.tun.recs) >= maxTunnels {
		return
	}
	e.tun.recs = append(e.tun.recs, schema.Tunnel{ConnID: id, TunnelType: typ, Action: "Tunnel::DISCOVER",
		Step: e.steps.name(e.steps.index(ts))})
}

// decapsulate analyses the frame a tunnel with the given uid carries, as a
// packet of its own (its flow lists the tunnel in tunnel_parents). carrier
// is the flow of the packet that carried it (a UDP tunnel's), nil for an IP
// tunnel. Frames without IP inside a tunnel are not counted: they are no
// captured frames.
func (e *engine) decapsulate(kind decode.Inner, b []byte, uid string, carrier *flow, ts int64, si int) {
	t := &e.tun
	depth := len(t.stack)
	if carrier != nil && depth > 0 {
		carrier.addTunnelParents(t.stack) // a tunnel inside a tunnel
	}
	if depth == maxTunnelDepth {
		e.warn.DecodeErrors["tunnel"]++
		return
	}
	if t.inner == nil {
		t.inner = new([maxTunnelDepth]decode.Packet)
	}
	p := &t.inner[depth]
	k := decode.DecodeInner(kind, b, p)
	if k == decode.KindNonIP {
		return
	}
	if k != decode.OK {
		e.warn.DecodeErrors[string(k)]++
		return
	}
	t.stack = append(t.stack, uid)
	e.lastFlow = nil // set again if the inner packet has a flow
	e.ipPacket(p, ts, si)
	// The inner packet's flow (one deeper down got its longer list already).
	if f := e.lastFlow; f != nil {
		f.addTunnelParents(t.stack)
	}
	t.stack = t.stack[:depth]
}

// maxTunnelParents bounds a conn's tunnel_parents: a flow seen through
// more tunnels than this lists the first ones.
const maxTunnelParents = 16

// addTunnelParents adds the uids of tunnels a packet came through.
func (f *flow) addTunnelParents(uids []string) {
	x := f.extra()
	for _, u := range uids {
		if len(x.tunnels) < maxTunnelParents && !slices.Contains(x.tunnels, u) {
			x.tunnels = append(x.tunnels, u)
		}
	}
}

// tunnelParents returns the flow's tunnel_parents (nil when untunnelled).
func (f *flow) tunnelParents() []string {
	if f.x == nil {
		return nil
	}
	return f.x.tunnels
}
