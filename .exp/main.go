// Experiment: where must a DSB be for tshark's one pass to decrypt?
package main

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"os"
	"strings"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"
)

func block(w *bufio.Writer, typ uint32, body []byte) {
	for len(body)%4 != 0 {
		body = append(body, 0)
	}
	n := uint32(12 + len(body))
	binary.Write(w, binary.LittleEndian, typ)
	binary.Write(w, binary.LittleEndian, n)
	w.Write(body)
	binary.Write(w, binary.LittleEndian, n)
}

func main() {
	in, keysPath, out, mode := os.Args[1], os.Args[2], os.Args[3], os.Args[4]
	keyText, _ := os.ReadFile(keysPath)
	byRandom := map[string][]string{}
	for _, l := range strings.Split(string(keyText), "\n") {
		f := strings.Fields(l)
		if len(f) == 3 {
			byRandom[strings.ToLower(f[1])] = append(byRandom[strings.ToLower(f[1])], l)
		}
	}
	f, _ := os.Open(in)
	r, _ := pcapgo.NewReader(f)
	o, _ := os.Create(out)
	w := bufio.NewWriter(o)
	shb := make([]byte, 16)
	binary.LittleEndian.PutUint32(shb, 0x1A2B3C4D)
	binary.LittleEndian.PutUint16(shb[4:], 1)
	binary.LittleEndian.PutUint64(shb[8:], ^uint64(0))
	block(w, 0x0A0D0D0A, shb)
	idb := make([]byte, 8)
	binary.LittleEndian.PutUint16(idb, uint16(r.LinkType()))
	binary.LittleEndian.PutUint32(idb[4:], 262144)
	idb = append(idb, 9, 0, 1, 0, 6, 0, 0, 0, 0, 0, 0, 0) // if_tsresol=6
	block(w, 1, idb)
	// per TCP connection (client port): random, state
	type conn struct {
		random  string
		pending bool // DSB waits for the trigger
	}
	conns := map[uint16]*conn{}
	dsb := func(random string) {
		lines := strings.Join(byRandom[random], "\n") + "\n"
		body := make([]byte, 8)
		binary.LittleEndian.PutUint32(body, 0x544c534b)
		binary.LittleEndian.PutUint32(body[4:], uint32(len(lines)))
		block(w, 10, append(body, lines...))
	}
	for {
		data, ci, err := r.ReadPacketData()
		if err != nil {
			break
		}
		p := gopacket.NewPacket(data, r.LinkType(), gopacket.Default)
		tcp, _ := p.Layer(layers.LayerTypeTCP).(*layers.TCP)
		afterPkt := ""
		if tcp != nil && len(tcp.Payload) > 5 {
			pl := tcp.Payload
			if tcp.DstPort == 443 && pl[0] == 22 && pl[5] == 1 { // ClientHello
				c := &conn{random: hex.EncodeToString(pl[11:43]), pending: true}
				conns[uint16(tcp.SrcPort)] = c
				if mode == "after-ch" {
					afterPkt = c.random
					c.pending = false
				}
			} else if c := conns[uint16(tcp.SrcPort)]; c != nil && c.pending && tcp.DstPort == 443 && (bytes.Contains(pl, []byte{20, 3, 3, 0, 1, 1}) || pl[0] == 23 || pl[0] == 20) {
				// the client's first packet with protected records (CKE+CCS+Finished, or CCS+Finished)
				afterPkt = c.random
				c.pending = false
			}
		}
		epb := make([]byte, 20)
		ts := uint64(ci.Timestamp.UnixMicro())
		binary.LittleEndian.PutUint32(epb[4:], uint32(ts>>32))
		binary.LittleEndian.PutUint32(epb[8:], uint32(ts))
		binary.LittleEndian.PutUint32(epb[12:], uint32(len(data)))
		binary.LittleEndian.PutUint32(epb[16:], uint32(ci.Length))
		block(w, 6, append(epb, data...))
		if afterPkt != "" {
			dsb(afterPkt)
		}
	}
	w.Flush()
	o.Close()
	fmt.Println("ok")
}
