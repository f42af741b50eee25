package rundir

import (
	"bytes"
	"encoding/binary"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"

	"github.com/firstboot/firstboot/internal/testnet"
)

// t0 is the first packet's time.
var t0 = time.Date(2026, 12, 7, 10, 0, 0, 123456789, time.UTC)

// packet is the i-th test packet: a UDP datagram from the guest.
func packet(t *testing.T, i int) []byte {
	t.Helper()
	buf := gopacket.NewSerializeBuffer()
	eth := &layers.Ethernet{SrcMAC: net.HardwareAddr{0x52, 0x54, 0, 1, 2, 3}, DstMAC: net.HardwareAddr{0x52, 0x54, 0, 4, 5, 6}, EthernetType: layers.EthernetTypeIPv4}
	ip := &layers.IPv4{Version: 4, TTL: 64, Protocol: layers.IPProtocolUDP, SrcIP: net.IPv4(10, 77, 1, 100), DstIP: net.IPv4(10, 77, 1, 1)}
	udp := &layers.UDP{SrcPort: 40000, DstPort: 9}
	udp.SetNetworkLayerForChecksum(ip)
	payload := gopacket.Payload(bytes.Repeat([]byte{byte(i)}, 100+i))
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, eth, ip, udp, payload); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// packetTime is the i-th test packet's time: 10 ms apart.
func packetTime(i int) time.Time { return t0.Add(time.Duration(i) * 10 * time.Millisecond) }

// writeCapture writes n packets the way lab/capture does (gopacket's writer,
// one interface, flushed after each packet, no statistics yet: a capture
// whose writer was killed) and returns the file size after each packet.
func writeCapture(t *testing.T, n int) (string, []int64) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "capture.pcapng")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	w, err := pcapgo.NewNgWriterInterface(f, pcapgo.NgInterface{Name: "firstboot-test", LinkType: layers.LinkTypeEthernet},
		pcapgo.NgWriterOptions{SectionInfo: pcapgo.NgSectionInfo{Application: "firstboot"}})
	if err != nil {
		t.Fatal(err)
	}
	var ends []int64
	for i := range n {
		data := packet(t, i)
		if err := w.WritePacket(gopacket.CaptureInfo{Timestamp: packetTime(i), CaptureLength: len(data), Length: len(data)}, data); err != nil {
			t.Fatal(err)
		}
		if err := w.Flush(); err != nil {
			t.Fatal(err)
		}
		st, _ := f.Stat()
		ends = append(ends, st.Size())
	}
	return path, ends
}

// writeCaptureBy writes the same by hand, in byte order order with
// timestamps in units of 10^-tsresol s (gopacket writes only little-endian
// nanoseconds; other writers do otherwise).
func writeCaptureBy(t *testing.T, n int, order byteOrder, tsresol byte) (string, []int64) {
	t.Helper()
	block := func(typ uint32, body []byte) []byte {
		for len(body)%4 != 0 {
			body = append(body, 0)
		}
		total := uint32(12 + len(body))
		b := order.AppendUint32(order.AppendUint32(nil, typ), total)
		return order.AppendUint32(append(b, body...), total)
	}
	var file []byte
	shb := order.AppendUint32(nil, 0x1A2B3C4D)
	shb = order.AppendUint16(order.AppendUint16(shb, 1), 0)
	shb = order.AppendUint64(shb, ^uint64(0))
	file = append(file, block(blockSHB, shb)...)
	idb := order.AppendUint16(nil, uint16(layers.LinkTypeEthernet))
	idb = order.AppendUint32(order.AppendUint16(idb, 0), 0)
	idb = order.AppendUint16(order.AppendUint16(idb, 9), 1)
	idb = append(idb, tsresol, 0, 0, 0)
	idb = order.AppendUint32(idb, 0) // opt_endofopt
	file = append(file, block(blockIDB, idb)...)
	in := &iface{tsresol: tsresol}
	var ends []int64
	for i := range n {
		data := packet(t, i)
		u := in.units(packetTime(i))
		epb := order.AppendUint32(nil, 0)
		epb = order.AppendUint32(order.AppendUint32(epb, uint32(u>>32)), uint32(u))
		epb = order.AppendUint32(order.AppendUint32(epb, uint32(len(data))), uint32(len(data)))
		file = append(file, block(blockEPB, append(epb, data...))...)
		ends = append(ends, int64(len(file)))
	}
	path := filepath.Join(t.TempDir(), "capture.pcapng")
	if err := os.WriteFile(path, file, 0o644); err != nil {
		t.Fatal(err)
	}
	return path, ends
}

// tsharkReads reports whether tshark reads the whole file without complaint,
// and how many packets it sees.
func tsharkReads(t *testing.T, path string) (int, bool) {
	t.Helper()
	out, err := exec.Command("tshark", "-r", path, "-n", "-T", "fields", "-e", "frame.number").Output()
	n := len(strings.Fields(string(out)))
	return n, err == nil
}

// statistics reads the file's interface statistics with gopacket's reader.
func statistics(t *testing.T, path string) pcapgo.NgInterfaceStatistics {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r, err := pcapgo.NewNgReader(f, pcapgo.DefaultNgReaderOptions)
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, _, err := r.ReadPacketData(); err != nil {
			break
		}
	}
	in, err := r.Interface(0)
	if err != nil {
		t.Fatal(err)
	}
	return in.Statistics
}

func TestRepairCapture(t *testing.T) {
	testnet.RequireTools(t, "tshark")
	const n = 5
	start := t0.Add(-2 * time.Second)
	gopacketWriter := func(t *testing.T) (string, []int64) { return writeCapture(t, n) }
	for _, c := range []struct {
		name    string
		write   func(t *testing.T) (string, []int64)
		res     time.Duration                   // timestamp resolution of the file
		damage  func(path string, ends []int64) // what the killed writer left
		packets int
		cut     bool
	}{
		{"killed between packets", gopacketWriter, time.Nanosecond, func(string, []int64) {}, n, false},
		{"killed while writing the last packet", gopacketWriter, time.Nanosecond, func(p string, ends []int64) {
			os.Truncate(p, ends[n-2]+30) // the header and part of packet n
		}, n - 1, true},
		{"killed after 3 bytes of a block", gopacketWriter, time.Nanosecond, func(p string, ends []int64) {
			os.Truncate(p, ends[n-2]+3)
		}, n - 1, true},
		{"zeros after the last block (a crash of the host)", gopacketWriter, time.Nanosecond, func(p string, ends []int64) {
			f, _ := os.OpenFile(p, os.O_WRONLY|os.O_APPEND, 0)
			f.Write(make([]byte, 4096))
			f.Close()
		}, n, true},
		{"big-endian, microseconds, torn", func(t *testing.T) (string, []int64) {
			return writeCaptureBy(t, n, binary.BigEndian, 6)
		}, time.Microsecond, func(p string, ends []int64) { os.Truncate(p, ends[n-1]-2) }, n - 1, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			path, ends := c.write(t)
			c.damage(path, ends)
			if c.cut {
				if _, ok := tsharkReads(t, path); ok {
					t.Fatal("tshark reads the damaged file without complaint: the damage is not what a torn write leaves")
				}
			}
			r, err := RepairCapture(path, start, "firstboot was killed")
			if err != nil {
				t.Fatal(err)
			}
			if r.Packets != uint64(c.packets) || (r.Truncated > 0) != c.cut || !r.Statistics {
				t.Errorf("repair = %+v; want %d packets, cut %v, statistics added", r, c.packets, c.cut)
			}
			wantLast := packetTime(c.packets - 1).Truncate(c.res)
			if !r.Last.Equal(wantLast) {
				t.Errorf("last packet at %v, want %v", r.Last, wantLast)
			}
			got, ok := tsharkReads(t, path)
			if !ok || got != c.packets {
				t.Errorf("after the repair tshark reads %d packets (ok %v), want %d", got, ok, c.packets)
			}
			st := statistics(t, path)
			if st.Comment != "firstboot was killed" || !st.StartTime.Equal(start.Truncate(c.res)) || !st.EndTime.Equal(wantLast) {
				t.Errorf("statistics block: comment %q, start %v, end %v; want start %v, end %v", st.Comment, st.StartTime, st.EndTime, start, wantLast)
			}
			// Repairing a whole file changes nothing.
			before, _ := os.ReadFile(path)
			again, err := RepairCapture(path, start, "again")
			after, _ := os.ReadFile(path)
			if err != nil || again.Truncated != 0 || again.Statistics || again.Packets != uint64(c.packets) || !bytes.Equal(before, after) {
				t.Errorf("a second repair: %+v, %v, file changed: %v", again, err, !bytes.Equal(before, after))
			}
		})
	}
}

// Damage inside the file is not a torn end: cutting there would lose the
// packets after it, so the file is left as it is and the error says so.
func TestRepairCaptureDamagedInside(t *testing.T) {
	path, ends := writeCapture(t, 5)
	data, _ := os.ReadFile(path)
	data[ends[1]+4] ^= 0x40 // the length of packet 3's block
	os.WriteFile(path, data, 0o644)
	_, err := RepairCapture(path, t0, "x")
	if err == nil || !strings.Contains(err.Error(), "not a torn end") {
		t.Errorf("err = %v, want damage inside the file reported", err)
	}
	if after, _ := os.ReadFile(path); !bytes.Equal(after, data) {
		t.Error("a file damaged inside was changed")
	}

	short := filepath.Join(t.TempDir(), "short.pcapng")
	os.WriteFile(short, data[:10], 0o644)
	if _, err := RepairCapture(short, t0, "x"); err == nil {
		t.Error("a file without a whole section header was accepted")
	}
}
