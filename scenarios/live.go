package scenarios

import (
	"net/netip"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"

	"github.com/firstboot/firstboot/analyzer/dhcp"
	"github.com/firstboot/firstboot/analyzer/dns"
	fbhttp "github.com/firstboot/firstboot/analyzer/http"
	"github.com/firstboot/firstboot/analyzer/tlshello"
)

// LiveDecoder turns captured Ethernet frames into TrafficWatch events while the
// capture runs. It looks at single packets only (a ClientHello split over
// segments is missed here, never in the analysis): waits need "soon", not "all".
type LiveDecoder struct {
	watch  *TrafficWatch
	parser *gopacket.DecodingLayerParser
	eth    layers.Ethernet
	ip4    layers.IPv4
	ip6    layers.IPv6
	tcp    layers.TCP
	udp    layers.UDP
	decod  []gopacket.LayerType
	udpDst map[netip.AddrPort]bool

	// DHCP, when set, sees every DHCP message the capture carries.
	DHCP func(*dhcp.Message)
}

// NewLiveDecoder feeds w.
func NewLiveDecoder(w *TrafficWatch) *LiveDecoder {
	d := &LiveDecoder{watch: w, udpDst: map[netip.AddrPort]bool{}}
	d.parser = gopacket.NewDecodingLayerParser(layers.LayerTypeEthernet, &d.eth, &d.ip4, &d.ip6, &d.tcp, &d.udp)
	d.parser.IgnoreUnsupported = true
	return d
}

// Packet handles one frame. It is called from the capture goroutine only.
func (d *LiveDecoder) Packet(data []byte, at time.Time) {
	if err := d.parser.DecodeLayers(data, &d.decod); err != nil && len(d.decod) == 0 {
		return
	}
	var dst netip.Addr
	for _, lt := range d.decod {
		switch lt {
		case layers.LayerTypeIPv4:
			dst, _ = netip.AddrFromSlice(d.ip4.DstIP.To4())
		case layers.LayerTypeIPv6:
			dst, _ = netip.AddrFromSlice(d.ip6.DstIP)
		case layers.LayerTypeTCP:
			d.onTCP(dst, at)
		case layers.LayerTypeUDP:
			d.onUDP(dst, at)
		}
	}
}

func (d *LiveDecoder) onTCP(dst netip.Addr, at time.Time) {
	t := &d.tcp
	if t.SYN && !t.ACK {
		d.watch.Observe(TrafficConn, netip.AddrPortFrom(dst, uint16(t.DstPort)).String(), at)
		return
	}
	p := t.Payload
	if len(p) == 0 {
		return
	}
	if p[0] == 0x16 {
		if msg, err := tlshello.ReadHandshake(p, 1); err == nil {
			if ch, err := tlshello.ParseClientHello(msg); err == nil && ch.ServerName != "" {
				d.watch.Observe(TrafficSNI, ch.ServerName, at)
			}
		}
		return
	}
	if fbhttp.LooksLikeRequest(p) {
		if req, _, err := fbhttp.ParseRequest(p); err == nil && req.Host != "" {
			d.watch.Observe(TrafficHost, req.Host, at)
		}
	}
}

func (d *LiveDecoder) onUDP(dst netip.Addr, at time.Time) {
	u := &d.udp
	ap := netip.AddrPortFrom(dst, uint16(u.DstPort))
	switch u.DstPort {
	case 53, 5353, 5355:
		if m, err := dns.Parse(u.Payload); err == nil && !m.Response {
			for _, q := range m.Questions {
				d.watch.Observe(TrafficDNS, q.Name, at)
			}
		}
	case 67, 68:
		if d.DHCP != nil {
			if m, err := dhcp.Parse(u.Payload); err == nil {
				d.DHCP(m)
			}
		}
		return // DHCP is not a connection to a destination
	}
	// A UDP flow to a new destination counts as a new connection for wait_idle.
	if !d.udpDst[ap] {
		d.udpDst[ap] = true
		d.watch.Observe(TrafficConn, ap.String(), at)
	}
}
