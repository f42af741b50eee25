package analyzer

import "github.com/firstboot/firstboot/results/schema"

// Batching bounds: records per batch, and batches the engine may run ahead of
// the writer (what is in flight at once stays a few MB at most).
const (
	batchRecords    = 512
	batchesInFlight = 4
)

// asyncSink hands records to another sink on its own goroutine, so encoding
// and writing the outputs (a third of the work on a capture of many short
// flows) runs beside the analysis on a second core. Records are copied into
// batches because the engine may reuse what it handed over once the call
// returns (recordSink's contract); each kind keeps its order.
type asyncSink struct {
	next  recordSink
	cur   *recordBatch
	full  chan *recordBatch
	empty chan *recordBatch
	done  chan struct{}
}

type recordBatch struct {
	conns []schema.Conn
	dns   []schema.DNS
	tls   []schema.TLS
	http  []schema.HTTP
	ntp   []schema.NTP
	n     int
}

func newAsyncSink(next recordSink) *asyncSink {
	s := &asyncSink{
		next:  next,
		full:  make(chan *recordBatch, batchesInFlight),
		empty: make(chan *recordBatch, batchesInFlight+1),
		done:  make(chan struct{}),
	}
	for range batchesInFlight {
		s.empty <- &recordBatch{}
	}
	s.cur = &recordBatch{}
	go s.write()
	return s
}

// write runs on the sink's goroutine until close.
func (s *asyncSink) write() {
	defer close(s.done)
	for b := range s.full {
		for i := range b.conns {
			s.next.conn(&b.conns[i])
		}
		for i := range b.dns {
			s.next.dns(&b.dns[i])
		}
		for i := range b.tls {
			s.next.tls(&b.tls[i])
		}
		for i := range b.http {
			s.next.http(&b.http[i])
		}
		for i := range b.ntp {
			s.next.ntp(&b.ntp[i])
		}
		b.reset()
		s.empty <- b
	}
}

// reset empties b, dropping what its records referred to.
func (b *recordBatch) reset() {
	clear(b.conns)
	clear(b.dns)
	clear(b.tls)
	clear(b.http)
	clear(b.ntp)
	b.conns, b.dns, b.tls, b.http, b.ntp = b.conns[:0], b.dns[:0], b.tls[:0], b.http[:0], b.ntp[:0]
	b.n = 0
}

// added counts a record and sends the batch when it is full.
func (s *asyncSink) added() {
	if s.cur.n++; s.cur.n >= batchRecords {
		s.full <- s.cur
		s.cur = <-s.empty
	}
}

func (s *asyncSink) conn(c *schema.Conn) { s.cur.conns = append(s.cur.conns, *c); s.added() }
func (s *asyncSink) dns(d *schema.DNS)   { s.cur.dns = append(s.cur.dns, *d); s.added() }
func (s *asyncSink) tls(t *schema.TLS)   { s.cur.tls = append(s.cur.tls, *t); s.added() }
func (s *asyncSink) http(h *schema.HTTP) { s.cur.http = append(s.cur.http, *h); s.added() }
func (s *asyncSink) ntp(n *schema.NTP)   { s.cur.ntp = append(s.cur.ntp, *n); s.added() }

// close hands over the last records and waits until the next sink has them
// all. Call it once, also when the analysis failed, so the goroutine ends.
func (s *asyncSink) close() {
	if s.cur.n > 0 {
		s.full <- s.cur
	}
	close(s.full)
	<-s.done
}
