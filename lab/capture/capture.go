// Package capture records one interface inside a network namespace to a
// pcapng file. Packets come from a memory-mapped TPACKET_V3 ring (kernel
// timestamps on the host clock) that holds about half a second of traffic
// at 1 Gbit/s, so a busy moment on the host loses nothing. They are written as
// whole pcapng blocks in batches: when a batch reaches batchBytes, when its
// oldest packet is batchAge old, and whenever the ring runs empty. The file
// therefore grows by whole blocks, and a crash (kill -9) loses only what
// the ring and the batch held: a few tens of milliseconds.
package capture

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"
	"golang.org/x/sys/unix"

	"github.com/firstboot/firstboot/lab/netns"
)

// The ring and the batches. The kernel hands a block over when it is full
// or blockTimeout after its first packet; 256 KiB blocks hold three 64 KiB
// offloaded TCP frames, and 256 of them about half a second of full-size
// packets at 1 Gbit/s (1.8 s of small packets at 200 k/s, and at least 256
// × blockTimeout at any rate) before the kernel must drop. (32 MiB dropped
// once in the benchmark's TCP at 1 Gbit/s on a busy machine.) The kernel
// zeroes the ring when it is set up; in blocks of 1 MiB (order-8 pages) that
// cost 0.1–0.15 s of CPU on a VM whose free memory was handed back to the
// host, in blocks of 256 KiB (libpcap's size) about 5 ms. blockTimeout
// bounds how late a packet reaches the file; every handover wakes the
// reader, which at low rates costs more CPU than the packets.
const (
	ringBlockSize = 256 << 10
	ringBlocks    = 256
	blockTimeout  = 50 * time.Millisecond
	batchBytes    = 256 << 10
	batchAge      = 50 * time.Millisecond
	// Packets of at least directBytes (offloaded TCP frames of up to 64
	// KiB) go to the file straight from the ring, beside their block's
	// head and tail in the batch, in one writev: copying them into the
	// batch first cost a tenth more CPU than tcpdump at 1 Gbit/s.
	directBytes = 4 << 10
	// While blocks come less than busyGap apart (above about 80 MB/s), the
	// reader takes what the ring holds every napTime instead of waking for
	// each block: at 1 Gbit/s of TCP, waking per block cost it three times
	// the context switches of napping and more CPU than tcpdump. It goes
	// back to waiting when a nap finds no block. (With busyGap = napTime,
	// 100 k small packets/s, whose blocks come 9–14 ms apart, switched
	// between the two all the time and cost three times as much: see nap.)
	napTime = 9 * time.Millisecond
	busyGap = 3 * time.Millisecond
	// maxSpans keeps a batch's writev under the kernel's IOV_MAX (1024).
	maxSpans = 1000
	// drainTimeout bounds how long Stop waits for the packets the kernel
	// counted to come out of the ring (the last block comes within
	// blockTimeout); drainPoll is how often it looks.
	drainTimeout = 2 * time.Second
	drainPoll    = 5 * time.Millisecond
)

// Config says what to capture where.
type Config struct {
	// Netns holds Iface: a namespace name or a /proc/PID/ns/net path; empty
	// means the caller's namespace.
	Netns string
	// Iface is the interface to capture (the machine's tap, vnetN).
	Iface string
	// Path is the pcapng file to create.
	Path string
	// SectionComment goes into the section header (firstboot version, run).
	SectionComment string
	// InterfaceName names the interface in the file (e.g. the machine name);
	// default Iface.
	InterfaceName string
	// InterfaceDescription is free text for the interface block.
	InterfaceDescription string
	// OnPacket, when set, sees every packet after it is written, on the
	// capture's reader goroutine: data is only valid during the call, and a
	// slow OnPacket delays reading (the ring fills, then the kernel drops).
	// Packets reach it up to blockTimeout + napTime after they arrive.
	OnPacket func(data []byte, at time.Time)

	// ringBlocks overrides the ring's size in blocks (tests).
	ringBlocks int
}

// Stats summarise a capture.
type Stats struct {
	Packets uint64 // packets written
	// Received and Drops are the kernel's PACKET_STATISTICS for the ring
	// (filled in by Stop): every packet the kernel saw, and those it dropped
	// because the ring was full. Received = Packets + Drops.
	Received uint64
	Drops    uint64
	// RingFreezes counts the times the ring was full (TPACKET_V3's
	// tp_freeze_q_cnt): each froze the queue and dropped until the reader
	// freed a block.
	RingFreezes uint64
	First, Last time.Time // packet timestamps; zero when no packet
}

// Capture is a running capture.
type Capture struct {
	cfg   Config
	ring  *ring
	file  *os.File
	start time.Time
	done  chan struct{}
	// stopping tells the reader to drain and end; checked per block.
	stopping atomic.Bool

	mu    sync.Mutex
	batch []byte // whole blocks not yet in the file
	// spans, when packets stay in the ring, are the batch in file order:
	// slices of batch and of the ring block being read (valid until it
	// is handed back, which flushes first); batch[spanFrom:] follows them.
	spans      [][]byte
	spanFrom   int
	direct     int       // bytes of ring data in spans
	batchStart time.Time // timestamp of the batch's first packet
	marks      []mark    // waiting for a packet stamped at or after them
	taken      uint64    // packets taken off the ring (written or not)
	stats      Stats
	werr       error // writing the file failed: no more packets are written
	ringErr    error // stopping the ring failed: the counts may be incomplete
	stopped    bool
	stopCtx    context.Context
}

type mark struct {
	at   time.Time
	text string
}

// Start opens the ring inside the namespace and begins writing. Packets
// already queued on the interface before Start are not seen.
func Start(ctx context.Context, cfg Config) (_ *Capture, err error) {
	if cfg.Iface == "" || cfg.Path == "" {
		return nil, errors.New("capture: Iface and Path are required")
	}
	if cfg.InterfaceName == "" {
		cfg.InterfaceName = cfg.Iface
	}
	if cfg.ringBlocks == 0 {
		cfg.ringBlocks = ringBlocks
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	var r *ring
	open := func() error {
		var err error
		// The socket is bound to the namespace it is created in; reading it
		// later from any thread still sees that namespace's interface.
		r, err = openRing(cfg.Iface, ringBlockSize, cfg.ringBlocks, blockTimeout)
		return err
	}
	if cfg.Netns != "" {
		err = netns.Do(cfg.Netns, open)
	} else {
		err = open()
	}
	if err != nil {
		return nil, fmt.Errorf("capture %s in netns %q: %w (is it root, and does the interface exist?)", cfg.Iface, cfg.Netns, err)
	}
	c := &Capture{cfg: cfg, ring: r, start: time.Now(), done: make(chan struct{})}
	defer func() {
		if err != nil {
			r.close()
			if c.file != nil {
				c.file.Close()
			}
		}
	}()
	c.file, err = os.OpenFile(cfg.Path, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644)
	if err != nil {
		return nil, fmt.Errorf("capture: %w", err)
	}
	// gopacket writes the section and interface header; the capture
	// appends every later block itself.
	var header bytes.Buffer
	w, err := pcapgo.NewNgWriterInterface(&header, pcapgo.NgInterface{
		Name:                cfg.InterfaceName,
		Description:         cfg.InterfaceDescription,
		OS:                  runtime.GOOS,
		LinkType:            layers.LinkTypeEthernet,
		TimestampResolution: 9,
	}, pcapgo.NgWriterOptions{SectionInfo: pcapgo.NgSectionInfo{
		Hardware:    runtime.GOARCH,
		OS:          runtime.GOOS,
		Application: "firstboot",
		Comment:     cfg.SectionComment,
	}})
	if err == nil {
		err = w.Flush()
	}
	if err != nil {
		return nil, fmt.Errorf("capture: pcapng header: %w", err)
	}
	if _, err := c.file.Write(header.Bytes()); err != nil {
		return nil, fmt.Errorf("capture: %w", err)
	}
	c.batch = make([]byte, 0, batchBytes+ringBlockSize) // a batch ends past batchBytes by at most a packet
	go c.read()
	return c, nil
}

// read takes packets off the ring until Stop or until the interface goes
// away, then drains what the kernel still holds.
func (c *Capture) read() {
	defer close(c.done)
	// busy: blocks come less than busyGap apart, so the reader naps; it
	// stays busy while each nap finds a block.
	busy := false
	for !c.stopping.Load() {
		if c.ring.readBlock(c.packet, c.blockDone) {
			continue
		}
		// The ring ran empty: the file catches up while the reader waits.
		c.mu.Lock()
		c.flushLocked()
		c.mu.Unlock()
		if busy {
			nap(napTime)
			busy = c.ring.ready()
			continue
		}
		waitStart := time.Now()
		if err := c.ring.wait(); err != nil {
			// Stop woke it, or the socket failed: the interface went down
			// or away (the machine's tap at power-off).
			break
		}
		busy = time.Since(waitStart) < busyGap
	}
	c.drain()
}

// packet writes one packet into the batch, with the marks that are due.
func (c *Capture) packet(data []byte, at time.Time, length int) {
	c.mu.Lock()
	c.taken++
	if c.werr == nil {
		var comments []string
		if len(c.marks) > 0 {
			comments = c.dueMarks(at)
		}
		if len(data) >= directBytes {
			if len(c.spans) >= maxSpans {
				c.flushLocked()
			}
			c.batch = appendPacketHead(c.batch, at, len(data), length, comments)
			c.spans = append(c.spans, c.batch[c.spanFrom:], data)
			c.spanFrom = len(c.batch)
			c.direct += len(data)
			c.batch = appendPacketTail(c.batch, len(data), comments)
		} else {
			c.batch = appendPacket(c.batch, at, data, length, comments)
		}
		c.stats.Packets++
		if c.stats.First.IsZero() {
			c.stats.First = at
		}
		c.stats.Last = at
		if c.batchStart.IsZero() {
			c.batchStart = at
		}
		if len(c.batch)+c.direct >= batchBytes || at.Sub(c.batchStart) >= batchAge {
			c.flushLocked()
		}
	}
	c.mu.Unlock()
	if c.cfg.OnPacket != nil {
		c.cfg.OnPacket(data, at)
	}
}

// dueMarks removes and returns the marks made at or before at. The ring
// hands packets over up to blockTimeout late, so "the next packet written"
// can be one that arrived before Mark; the timestamps keep each mark on the
// first packet that came after it.
func (c *Capture) dueMarks(at time.Time) []string {
	n := 0
	for n < len(c.marks) && !c.marks[n].at.After(at) {
		n++
	}
	if n == 0 {
		return nil
	}
	texts := make([]string, n)
	for i, m := range c.marks[:n] {
		texts[i] = m.text
	}
	c.marks = c.marks[n:]
	return texts
}

// drain stops the socket taking packets, then reads the ring until every
// packet the kernel counted has come out of it (the last, partly filled
// block comes when the kernel's block timer hands it over), until
// drainTimeout, or until Stop's context ends.
func (c *Capture) drain() {
	ctx := context.Background()
	c.mu.Lock()
	if c.stopCtx != nil {
		ctx = c.stopCtx
	}
	c.mu.Unlock()
	err := c.ring.shut()
	st, serr := c.ring.statistics()
	if err = errors.Join(err, serr); err != nil {
		c.mu.Lock()
		c.ringErr = fmt.Errorf("stopping the ring: %w", err)
		c.mu.Unlock()
	} else {
		want := uint64(st.Packets - st.Drops)
		deadline := time.Now().Add(drainTimeout)
		for c.takenSoFar() < want && time.Now().Before(deadline) && ctx.Err() == nil {
			if !c.ring.readBlock(c.packet, c.blockDone) {
				time.Sleep(drainPoll)
			}
		}
	}
	c.mu.Lock()
	c.flushLocked()
	c.mu.Unlock()
}

func (c *Capture) takenSoFar() uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.taken
}

// blockDone runs before the reader hands a ring block back to the kernel:
// packet data still in it must reach the file first.
func (c *Capture) blockDone() {
	c.mu.Lock()
	if len(c.spans) > 0 {
		c.flushLocked()
	}
	c.mu.Unlock()
}

// flushLocked writes the batch to the file in one write (a writev when
// packets stay in the ring), so the file grows by whole blocks.
func (c *Capture) flushLocked() {
	c.batchStart = time.Time{}
	switch {
	case c.werr != nil:
	case len(c.spans) > 0:
		c.werr = writev(c.file, append(c.spans, c.batch[c.spanFrom:]))
	case len(c.batch) > 0:
		_, c.werr = c.file.Write(c.batch)
	}
	clear(c.spans) // no references into the ring once it has the block back
	c.spans, c.spanFrom, c.direct = c.spans[:0], 0, 0
	c.batch = c.batch[:0]
}

// writev writes bufs in order, all of them (a regular file may take part).
func writev(f *os.File, bufs [][]byte) error {
	conn, err := f.SyscallConn()
	if err != nil {
		return err
	}
	for {
		for len(bufs) > 0 && len(bufs[0]) == 0 {
			bufs = bufs[1:]
		}
		if len(bufs) == 0 {
			return nil
		}
		var n int
		var werr error
		if err := conn.Write(func(fd uintptr) bool {
			n, werr = unix.Writev(int(fd), bufs)
			return werr != unix.EAGAIN
		}); err != nil {
			return err
		}
		if werr == unix.EINTR {
			continue
		}
		if werr != nil {
			return &os.PathError{Op: "writev", Path: f.Name(), Err: werr}
		}
		if n == 0 {
			return &os.PathError{Op: "writev", Path: f.Name(), Err: io.ErrShortWrite}
		}
		for n > 0 {
			if n < len(bufs[0]) {
				bufs[0] = bufs[0][n:]
				break
			}
			n -= len(bufs[0])
			bufs = bufs[1:]
		}
	}
}

// Mark attaches comment to the first packet the kernel stamps at or after
// this moment (e.g. "step install start 2026-11-23T16:00:00Z"). Comments
// still waiting at Stop go into the final interface statistics block, so
// none is lost.
func (c *Capture) Mark(comment string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	// The wall clock alone (Round(0) drops the monotonic reading), as the
	// kernel stamps packets with it.
	c.marks = append(c.marks, mark{at: time.Now().Round(0), text: comment})
}

// AddSecrets writes a pcapng Decryption Secrets Block (secretsType e.g.
// SecretsTLSKeyLog with data in the NSS key log format) into the file at
// once: after the packets written so far, before the next one, so readers
// such as Wireshark hold the keys before the records that follow. Packets
// still in the ring (up to blockTimeout old) come after it too. Wireshark
// reads a file once, front to back: it decrypts a TLS 1.3 session only if
// the handshake secrets come before the server's first encrypted records,
// which the client logs only after receiving them, so that depends on the
// ring not having handed them over yet (TLS 1.2's secret always comes
// first). After Stop it does nothing; a write error is Stop's to report.
func (c *Capture) AddSecrets(secretsType uint32, data []byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.stopped {
		return
	}
	c.batch = append(c.batch, secretsBlock(secretsType, data)...)
	c.flushLocked()
}

// Snapshot returns the statistics so far (the kernel's counters only after
// Stop).
func (c *Capture) Snapshot() Stats {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.stats
}

// Done is closed when the reader has ended (interface gone or Stop).
func (c *Capture) Done() <-chan struct{} { return c.done }

// Stop drains what the kernel holds, writes the final interface statistics
// (with pending marks as its comments) and closes the file. It fails when a
// packet the kernel counted could not be written, or was not drained before
// ctx ended.
func (c *Capture) Stop(ctx context.Context) (Stats, error) {
	c.mu.Lock()
	if c.stopped {
		st := c.stats
		c.mu.Unlock()
		return st, errors.New("capture: already stopped")
	}
	c.stopped = true
	c.stopCtx = ctx
	c.mu.Unlock()
	c.stopping.Store(true)
	c.ring.wake()
	// The reader drains for at most drainTimeout; the ring must outlive it.
	<-c.done
	ks, kerr := c.ring.statistics()
	cerr := c.ring.close()

	c.mu.Lock()
	defer c.mu.Unlock()
	if kerr == nil {
		c.stats.Received = uint64(ks.Packets)
		c.stats.Drops = uint64(ks.Drops)
		c.stats.RingFreezes = uint64(ks.Freeze_q_cnt)
	}
	marks := make([]string, len(c.marks))
	for i, m := range c.marks {
		marks[i] = m.text
	}
	c.marks = nil
	c.batch = append(c.batch, statisticsBlock(c.start, time.Now(), c.stats, marks)...)
	c.flushLocked()
	// No fsync, as with tcpdump and dumpcap: it made the capture write the
	// whole file back itself (an eighth of its CPU at 1 Gbit/s, and Stop
	// waited for the disk). The kernel writes it back like the run's other
	// files, none of which are synced: only a host crash loses what it had
	// not yet written.
	errs := []error{c.ringErr, kerr, cerr, c.werr, c.file.Close()}
	if c.ringErr == nil && kerr == nil && c.werr == nil && c.stats.Packets+c.stats.Drops != c.stats.Received {
		errs = append(errs, fmt.Errorf("the kernel received %d packets and dropped %d, but %d were written: the rest were still in the ring when Stop gave up",
			c.stats.Received, c.stats.Drops, c.stats.Packets))
	}
	if err := errors.Join(errs...); err != nil {
		return c.stats, fmt.Errorf("capture %s: %w", c.cfg.Path, err)
	}
	return c.stats, nil
}
