package analyzer

import (
	"runtime/debug"

	"github.com/firstboot/firstboot/analyzer/capfile"
	"github.com/firstboot/firstboot/analyzer/decode"
)

// Read-ahead bounds: packets per batch, and batches in circulation (what is
// read ahead stays around a megabyte).
const (
	aheadPackets = 256
	aheadBatches = 4
)

// readAhead reads and decodes packets on a goroutine of its own, a few
// batches ahead of the engine, so reading the file and decoding headers run
// beside the analysis on a second core. Each batch owns a copy of its
// packets' bytes: capfile's data is only valid until its next read.
type readAhead struct {
	full  chan *packetBatch
	empty chan *packetBatch
	stop  chan struct{}
	done  chan struct{}
}

// packetBatch is packets in capture order, decoded, with their bytes.
type packetBatch struct {
	pkts  []capfile.Packet
	dec   []decode.Packet
	kinds []decode.Kind
	ends  []int  // end of each packet's bytes in data
	data  []byte // the packets' bytes, back to back
	err   error  // what ended the input after these packets (io.EOF at the end), or nil
	// secrets is a Decryption Secrets Block that followed the packets (it
	// ends the batch, so it is taken in file order), or zero.
	secrets capfile.Packet
}

func startReadAhead(r *capfile.Reader) *readAhead {
	ra := &readAhead{
		full:  make(chan *packetBatch, aheadBatches),
		empty: make(chan *packetBatch, aheadBatches),
		stop:  make(chan struct{}),
		done:  make(chan struct{}),
	}
	for range aheadBatches {
		ra.empty <- &packetBatch{}
	}
	go ra.read(r)
	return ra
}

// read fills batches until the input ends or stop closes.
func (ra *readAhead) read(r *capfile.Reader) {
	defer close(ra.done)
	defer close(ra.full)
	// A mapped capture that shrinks faults on the lost pages: fill recovers.
	debug.SetPanicOnFault(true)
	for {
		var b *packetBatch
		select {
		case b = <-ra.empty:
		case <-ra.stop:
			return
		}
		b.fill(r)
		select {
		case ra.full <- b:
		case <-ra.stop:
			return
		}
		if b.err != nil {
			return
		}
	}
}

// fill reads up to aheadPackets packets from r into b and decodes them.
func (b *packetBatch) fill(r *capfile.Reader) {
	b.pkts, b.ends, b.data, b.err = b.pkts[:0], b.ends[:0], b.data[:0], nil
	b.secrets = capfile.Packet{}
	defer func() {
		if v := recover(); v != nil {
			if !capfile.IsFault(v) {
				panic(v)
			}
			b.pkts, b.dec, b.kinds = b.pkts[:0], b.dec[:0], b.kinds[:0]
			b.err = faultError(r.Name(), v)
		}
	}()
	for len(b.pkts) < aheadPackets {
		var p capfile.Packet
		if err := r.Next(&p); err != nil {
			if err == capfile.ErrSecrets {
				p.Data = append([]byte{}, p.Data...) // capfile reuses its buffer
				b.secrets = p
				break
			}
			b.err = err
			break
		}
		b.data = append(b.data, p.Data...)
		p.Data = nil // set below: data may still move while it grows
		b.pkts = append(b.pkts, p)
		b.ends = append(b.ends, len(b.data))
	}
	n := len(b.pkts)
	if cap(b.dec) < n {
		b.dec = make([]decode.Packet, n)
		b.kinds = make([]decode.Kind, n)
	}
	b.dec, b.kinds = b.dec[:n], b.kinds[:n]
	start := 0
	for i := range b.pkts {
		p := &b.pkts[i]
		p.Data = b.data[start:b.ends[i]:b.ends[i]]
		start = b.ends[i]
		b.kinds[i] = decode.Decode(p.LinkType, p.Data, &b.dec[i])
	}
}

// next returns the next batch, or nil after the last. The batch is the
// caller's until it hands it back with recycle.
func (ra *readAhead) next() *packetBatch { return <-ra.full }

// recycle hands a batch back for reuse.
func (ra *readAhead) recycle(b *packetBatch) { ra.empty <- b }

// close stops reading and waits for the goroutine; call it once, also when
// the analysis ends early.
func (ra *readAhead) close() {
	close(ra.stop)
	<-ra.done
}
