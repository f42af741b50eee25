// Package capture records one interface inside a network namespace to a
// pcapng file: AF_PACKET with kernel timestamps (host clock), packets handed
// over immediately, the file flushed after every packet so a crash leaves a
// readable capture.
package capture

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"runtime"
	"sync"
	"time"

	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"
	"golang.org/x/sys/unix"

	"github.com/firstboot/firstboot/lab/netns"
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
	// slow OnPacket delays reading (the kernel queues, then drops).
	OnPacket func(data []byte, at time.Time)
}

// Stats summarise a finished capture.
type Stats struct {
	Packets uint64 // packets written
	// Received and Drops are the kernel's PACKET_STATISTICS for the socket.
	Received    uint64
	Drops       uint64
	First, Last time.Time // packet timestamps; zero when no packet
}

// Capture is a running capture.
type Capture struct {
	cfg    Config
	handle *pcapgo.EthernetHandle
	file   *os.File
	start  time.Time

	mu      sync.Mutex
	w       *pcapgo.NgWriter
	marks   []string // comments waiting for the next packet
	stats   Stats
	kstats  unix.TpacketStats
	werr    error
	stopped bool

	done chan struct{}
}

// Start opens the packet socket inside the namespace and begins writing.
// Packets already queued on the interface before Start are not seen.
func Start(ctx context.Context, cfg Config) (_ *Capture, err error) {
	if cfg.Iface == "" || cfg.Path == "" {
		return nil, errors.New("capture: Iface and Path are required")
	}
	if cfg.InterfaceName == "" {
		cfg.InterfaceName = cfg.Iface
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	var h *pcapgo.EthernetHandle
	open := func() error {
		var err error
		// The socket is bound to the namespace it is created in; reading it
		// later from any thread still sees that namespace's interface.
		h, err = pcapgo.NewEthernetHandle(cfg.Iface)
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
	c := &Capture{cfg: cfg, handle: h, start: time.Now(), done: make(chan struct{})}
	defer func() {
		if err != nil {
			h.Close()
			if c.file != nil {
				c.file.Close()
			}
		}
	}()
	// The kernel's counters run from socket creation; reset them so Drops
	// counts only this capture.
	if _, err := h.Stats(); err != nil {
		return nil, fmt.Errorf("capture %s: packet statistics: %w", cfg.Iface, err)
	}
	c.file, err = os.OpenFile(cfg.Path, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644)
	if err != nil {
		return nil, fmt.Errorf("capture: %w", err)
	}
	opts := pcapgo.NgWriterOptions{SectionInfo: pcapgo.NgSectionInfo{
		Hardware:    runtime.GOARCH,
		OS:          runtime.GOOS,
		Application: "firstboot",
		Comment:     cfg.SectionComment,
	}}
	c.w, err = pcapgo.NewNgWriterInterface(c.file, pcapgo.NgInterface{
		Name:                cfg.InterfaceName,
		Description:         cfg.InterfaceDescription,
		OS:                  runtime.GOOS,
		LinkType:            layers.LinkTypeEthernet,
		TimestampResolution: 9,
	}, opts)
	if err != nil {
		return nil, fmt.Errorf("capture: pcapng header: %w", err)
	}
	if err := c.w.Flush(); err != nil {
		return nil, fmt.Errorf("capture: %w", err)
	}
	go c.loop()
	return c, nil
}

// loop reads until the socket errors (interface gone, deadline at Stop).
func (c *Capture) loop() {
	defer close(c.done)
	for {
		data, ci, err := c.handle.ZeroCopyReadPacketData()
		if err != nil {
			return
		}
		ci.InterfaceIndex = 0
		c.mu.Lock()
		opts := pcapgo.NgPacketOptions{Comments: c.marks}
		c.marks = nil
		if c.werr == nil {
			c.werr = c.w.WritePacketWithOptions(ci, data, opts)
			if c.werr == nil {
				// Flush every packet: a crash still leaves a readable file.
				c.werr = c.w.Flush()
			}
			if c.werr == nil {
				c.stats.Packets++
				if c.stats.First.IsZero() {
					c.stats.First = ci.Timestamp
				}
				c.stats.Last = ci.Timestamp
			}
		}
		c.mu.Unlock()
		if c.cfg.OnPacket != nil {
			c.cfg.OnPacket(data, ci.Timestamp)
		}
	}
}

// Mark attaches comment to the next packet written (e.g. "step install start
// 2026-11-23T16:00:00Z"). Comments still waiting at Stop go into the final
// interface statistics block, so none is lost.
func (c *Capture) Mark(comment string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.marks = append(c.marks, comment)
}

// Snapshot returns the statistics so far (Drops and Received only at Stop).
func (c *Capture) Snapshot() Stats {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.stats
}

// Done is closed when the reader has ended (interface gone or Stop).
func (c *Capture) Done() <-chan struct{} { return c.done }

// drainWindow is how long Stop lets the reader take packets the kernel has
// already queued before it closes the socket.
const drainWindow = 200 * time.Millisecond

// Stop drains what the kernel has queued, writes the final interface
// statistics (with pending marks as its comment) and closes the file.
func (c *Capture) Stop(ctx context.Context) (Stats, error) {
	c.mu.Lock()
	if c.stopped {
		st := c.stats
		c.mu.Unlock()
		return st, errors.New("capture: already stopped")
	}
	c.stopped = true
	c.mu.Unlock()

	var errs []error
	// The reader takes packets off the socket as they come; give it a moment
	// for what the kernel queued before Stop, then close the socket, which
	// ends the blocked read.
	select {
	case <-c.done: // interface already gone
	case <-time.After(drainWindow):
	case <-ctx.Done():
	}
	ks, err := c.handle.Stats()
	if err == nil {
		c.kstats.Packets += ks.Packets
		c.kstats.Drops += ks.Drops
	}
	errs = append(errs, c.handle.Close())
	<-c.done

	c.mu.Lock()
	defer c.mu.Unlock()
	c.stats.Received = uint64(c.kstats.Packets)
	c.stats.Drops = uint64(c.kstats.Drops)
	errs = append(errs, c.werr)
	if c.werr == nil {
		errs = append(errs, c.w.Flush())
		errs = append(errs, writeISB(c.file, c.start, time.Now(), c.stats.Received, c.stats.Drops, c.marks))
		c.marks = nil
	}
	errs = append(errs, c.file.Sync(), c.file.Close())
	if err := errors.Join(errs...); err != nil {
		return c.stats, fmt.Errorf("capture %s: %w", c.cfg.Path, err)
	}
	return c.stats, nil
}

// writeISB writes a pcapng Interface Statistics Block for interface 0 by
// hand: gopacket's writer drops the ISB comment, which carries marks that
// no packet followed.
func writeISB(f *os.File, start, end time.Time, recv, drop uint64, comments []string) error {
	var opts []byte
	opt := func(code uint16, v []byte) {
		var h [4]byte
		binary.LittleEndian.PutUint16(h[0:], code)
		binary.LittleEndian.PutUint16(h[2:], uint16(len(v)))
		opts = append(opts, h[:]...)
		opts = append(opts, v...)
		for len(opts)%4 != 0 {
			opts = append(opts, 0)
		}
	}
	ts := func(t time.Time) []byte {
		n := uint64(t.UnixNano())
		var b [8]byte
		binary.LittleEndian.PutUint32(b[0:], uint32(n>>32))
		binary.LittleEndian.PutUint32(b[4:], uint32(n))
		return b[:]
	}
	u64 := func(v uint64) []byte {
		var b [8]byte
		binary.LittleEndian.PutUint64(b[:], v)
		return b[:]
	}
	for _, c := range comments {
		if len(c) > 0xffff {
			c = c[:0xffff]
		}
		opt(1, []byte(c)) // opt_comment
	}
	opt(2, ts(start)) // isb_starttime
	opt(3, ts(end))   // isb_endtime
	opt(4, u64(recv)) // isb_ifrecv
	opt(5, u64(drop)) // isb_ifdrop
	opt(0, nil)       // opt_endofopt

	total := 4 + 4 + 4 + 8 + len(opts) + 4
	b := make([]byte, 0, total)
	b = binary.LittleEndian.AppendUint32(b, 5) // Interface Statistics Block
	b = binary.LittleEndian.AppendUint32(b, uint32(total))
	b = binary.LittleEndian.AppendUint32(b, 0) // interface id
	b = append(b, ts(end)...)
	b = append(b, opts...)
	b = binary.LittleEndian.AppendUint32(b, uint32(total))
	_, err := f.Write(b)
	return err
}
