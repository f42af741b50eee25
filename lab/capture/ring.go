package capture

import (
	"errors"
	"fmt"
	"net"
	"os"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// ring is a TPACKET_V3 receive ring: the kernel writes packets into blocks
// of memory it shares with the process and hands a block over (marks it
// TP_STATUS_USER and signals the socket) when it is full or timeout after
// its first packet; the reader hands it back when done. Reading costs no
// system call, and waiting parks a goroutine on Go's poller rather than a
// thread in poll(2): gopacket's afpacket, which polls with a timeout, cost
// a 2-core machine about 1% CPU per idle capture in runtime hand-offs.
type ring struct {
	fd        int
	file      *os.File // owns fd; registered with Go's poller
	conn      syscall.RawConn
	mem       []byte
	blockSize int
	blocks    int
	next      int    // the block the kernel hands over next
	tagged    []byte // scratch for a frame with its 802.1Q tag put back
	// stats accumulates PACKET_STATISTICS: the kernel resets its counters
	// on every read.
	stats unix.TpacketStatsV3
}

// openRing opens a ring on iface in the caller's network namespace (the
// socket stays bound to it).
func openRing(iface string, blockSize, blocks int, timeout time.Duration) (_ *ring, err error) {
	ifc, err := net.InterfaceByName(iface)
	if err != nil {
		return nil, err
	}
	// Protocol 0: the socket sees nothing until it is bound, after the
	// ring exists, so every packet it counts is in the ring or dropped.
	fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("packet socket: %w", err)
	}
	r := &ring{fd: fd, blockSize: blockSize, blocks: blocks}
	defer func() {
		if err != nil {
			r.close()
		}
	}()
	if err := unix.SetsockoptInt(fd, unix.SOL_PACKET, unix.PACKET_VERSION, unix.TPACKET_V3); err != nil {
		return nil, fmt.Errorf("TPACKET_V3: %w", err)
	}
	const frame = 1 << 12 // V3 packs packets into blocks; frames only satisfy the request's checks
	req := unix.TpacketReq3{
		Block_size:     uint32(blockSize),
		Block_nr:       uint32(blocks),
		Frame_size:     frame,
		Frame_nr:       uint32(blockSize / frame * blocks),
		Retire_blk_tov: uint32(timeout / time.Millisecond),
	}
	if err := unix.SetsockoptTpacketReq3(fd, unix.SOL_PACKET, unix.PACKET_RX_RING, &req); err != nil {
		return nil, fmt.Errorf("receive ring of %d × %d bytes: %w", blocks, blockSize, err)
	}
	if r.mem, err = unix.Mmap(fd, 0, blockSize*blocks, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED); err != nil {
		return nil, fmt.Errorf("mapping the ring: %w", err)
	}
	if err := unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ALL), Ifindex: ifc.Index}); err != nil {
		return nil, fmt.Errorf("bind to %s: %w", iface, err)
	}
	r.file = os.NewFile(uintptr(fd), "packet:"+iface)
	if r.conn, err = r.file.SyscallConn(); err != nil {
		return nil, err
	}
	return r, nil
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

// header is the block's tpacket_hdr_v1, after the descriptor's version and
// private-area offset.
func (r *ring) header(i int) *unix.TpacketHdrV1 {
	desc := (*unix.TpacketBlockDesc)(unsafe.Pointer(&r.mem[i*r.blockSize]))
	return (*unix.TpacketHdrV1)(unsafe.Pointer(&desc.Hdr[0]))
}

// ready reports whether the kernel has handed over the next block.
func (r *ring) ready() bool {
	return atomic.LoadUint32(&r.header(r.next).Block_status)&unix.TP_STATUS_USER != 0
}

// readBlock calls fn for every packet of the next block, then done, and
// hands the block back; it reports false when the kernel has not handed one
// over. data stays valid until done returns.
func (r *ring) readBlock(fn func(data []byte, at time.Time, length int), done func()) bool {
	if !r.ready() {
		return false
	}
	h := r.header(r.next)
	block := r.mem[r.next*r.blockSize : (r.next+1)*r.blockSize]
	off := int(h.Offset_to_first_pkt)
	for range h.Num_pkts {
		p := (*unix.Tpacket3Hdr)(unsafe.Pointer(&block[off]))
		start := off + int(p.Mac)
		data := block[start : start+int(p.Snaplen)]
		length := int(p.Len)
		if p.Status&unix.TP_STATUS_VLAN_VALID != 0 && len(data) >= 12 {
			data = r.tag(data, p)
			length += 4
		}
		fn(data, time.Unix(int64(p.Sec), int64(p.Nsec)), length)
		off += int(p.Next_offset)
	}
	done()
	atomic.StoreUint32(&h.Block_status, unix.TP_STATUS_KERNEL)
	r.next = (r.next + 1) % r.blocks
	return true
}

// tag puts back the 802.1Q tag the kernel took off the frame into the
// ring's header, as libpcap does, so the file shows the frame as sent.
func (r *ring) tag(data []byte, p *unix.Tpacket3Hdr) []byte {
	tpid := uint16(unix.ETH_P_8021Q)
	if p.Status&unix.TP_STATUS_VLAN_TPID_VALID != 0 && p.Hv1.Vlan_tpid != 0 {
		tpid = p.Hv1.Vlan_tpid
	}
	tci := uint16(p.Hv1.Vlan_tci)
	r.tagged = append(r.tagged[:0], data[:12]...)
	r.tagged = append(r.tagged, byte(tpid>>8), byte(tpid), byte(tci>>8), byte(tci))
	return append(r.tagged, data[12:]...)
}

// wait parks until the kernel hands over the next block. It fails when
// wake was called or the socket failed (its interface went down or away).
func (r *ring) wait() error {
	var failed error
	err := r.conn.Read(func(fd uintptr) bool {
		if r.ready() {
			return true
		}
		// The kernel reports a failed socket as an error event, which
		// wakes the poller but is no block: ask the socket.
		if e, err := unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_ERROR); err == nil && e != 0 {
			failed = syscall.Errno(e)
			return true
		}
		return false
	})
	if err != nil {
		return err
	}
	return failed
}

// nap sleeps d in nanosleep(2), a plain system call. Parking the goroutine
// instead (a Go timer, or the poller's wake-up per block) wakes Go's
// scheduler and its sysmon, which after every wake-up from idle polls at
// 20 µs for a while: at 1 Gbit/s of TCP that tripled the capture's context
// switches. A system call shorter than sysmon's 10 ms keeps its thread and
// processor; Stop waits at most d longer. sysmon still polls through the
// first naps after a wake-up from idle, so a reader that switches between
// waiting and napping all the time pays for both (hence busyGap).
func nap(d time.Duration) {
	ts := unix.NsecToTimespec(int64(d))
	for unix.Nanosleep(&ts, &ts) == unix.EINTR {
	}
}

// wake makes wait return at once, now and from now on.
func (r *ring) wake() { r.file.SetReadDeadline(time.Now()) }

// shut attaches a filter that accepts nothing: from now on packets are
// neither counted nor queued, so the counters are final.
func (r *ring) shut() error {
	none := unix.SockFilter{Code: unix.BPF_RET | unix.BPF_K, K: 0}
	return unix.SetsockoptSockFprog(r.fd, unix.SOL_SOCKET, unix.SO_ATTACH_FILTER, &unix.SockFprog{Len: 1, Filter: &none})
}

// statistics returns the kernel's counters since the ring was opened:
// Packets counts every packet the socket received, Drops those the full ring
// had no room for, Freeze_q_cnt the times it filled up.
func (r *ring) statistics() (unix.TpacketStatsV3, error) {
	st, err := unix.GetsockoptTpacketStatsV3(r.fd, unix.SOL_PACKET, unix.PACKET_STATISTICS)
	if err != nil {
		return r.stats, fmt.Errorf("packet statistics: %w", err)
	}
	r.stats.Packets += st.Packets
	r.stats.Drops += st.Drops
	r.stats.Freeze_q_cnt += st.Freeze_q_cnt
	return r.stats, nil
}

func (r *ring) close() error {
	var errs []error
	if r.mem != nil {
		errs = append(errs, unix.Munmap(r.mem))
		r.mem = nil
	}
	if r.file != nil {
		errs = append(errs, r.file.Close())
	} else {
		errs = append(errs, unix.Close(r.fd))
	}
	return errors.Join(errs...)
}
