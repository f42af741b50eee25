package main

import (
	"fmt"
	"os"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"

	"github.com/firstboot/firstboot/analyzer/tlsdecrypt"
)

func main() {
	keyText, _ := os.ReadFile(os.Args[2])
	var keys tlsdecrypt.Keys
	keys.Add(keyText)
	f, _ := os.Open(os.Args[1])
	r, _ := pcapgo.NewReader(f)
	type st struct {
		c     *tlsdecrypt.Conn
		n     [2]int
		next  [2]uint32
		init  [2]bool
		fed   [2]int
		ooo   int
	}
	conns := map[uint16]*st{}
	for {
		data, _, err := r.ReadPacketData()
		if err != nil {
			break
		}
		p := gopacket.NewPacket(data, r.LinkType(), gopacket.Default)
		tcp, _ := p.Layer(layers.LayerTypeTCP).(*layers.TCP)
		if tcp == nil {
			continue
		}
		port, dir := uint16(tcp.SrcPort), 0
		if tcp.SrcPort == 443 {
			port, dir = uint16(tcp.DstPort), 1
		}
		s := conns[port]
		if s == nil {
			s = &st{}
			conns[port] = s
			s.c = tlsdecrypt.NewConn(&keys, func(d int, b []byte) { s.n[d] += len(b) })
		}
		if tcp.SYN {
			s.next[dir], s.init[dir] = tcp.Seq+1, true
			continue
		}
		if len(tcp.Payload) == 0 {
			continue
		}
		if tcp.Seq != s.next[dir] {
			s.ooo++
			if int32(tcp.Seq-s.next[dir]) < 0 {
				continue
			}
		}
		s.next[dir] = tcp.Seq + uint32(len(tcp.Payload))
		before := s.c.Status()
		s.c.Feed(dir, tcp.Payload)
		s.fed[dir] += len(tcp.Payload)
		if before == "" && s.c.Status() != "" && s.c.Status() != "decrypted" {
			fmt.Printf("port %d: %s after %d/%d bytes fed, plaintext %v\n", port, s.c.Status(), s.fed[0], s.fed[1], s.n)
		}
	}
	for p, s := range conns {
		s.c.Close()
		fmt.Println(p, s.c.Status(), s.n, "ooo", s.ooo, "fed", s.fed)
	}
}
