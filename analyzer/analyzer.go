// Package analyzer turns a pcap or pcapng capture into the facts of
// analysis.json (results/schema) and Zeek-compatible logs.
//
// It reads packets in capture order in one pass, keeps state only for live
// flows, drives every timeout by packet time (never the wall clock), and flushes
// everything at the end of the input. The same capture and options always give
// the same output bytes.
package analyzer

import (
	"context"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"time"

	"github.com/firstboot/firstboot/analyzer/capfile"
	"github.com/firstboot/firstboot/analyzer/decode"
	"github.com/firstboot/firstboot/results/schema"
)

// Step is one scenario step: records that start in [Start, End) belong to it.
// A zero End means "until the next step starts", or for the last step, until
// the end of the capture.
type Step struct {
	Name  string
	Start time.Time
	End   time.Time
}

// Options tune an analysis.
type Options struct {
	// FirstParty lists the vendor's domains; a destination is first party when its
	// name equals or is a subdomain of one of them.
	FirstParty []string
	// Steps are the scenario's steps in time order (may be empty).
	Steps []Step
	// StreamBytes bounds the TCP bytes buffered per direction for protocol
	// parsing (default 16 KiB); bytes beyond it are counted, not stored.
	StreamBytes int
	// TLSKeyLog is an NSS key log (SSLKEYLOGFILE) whose secrets decrypt
	// TLS and QUIC connections, besides the capture's own Decryption
	// Secrets Blocks; nil for none. Malformed lines are skipped: check the
	// text with tlsdecrypt.Keys.Add first to report them.
	TLSKeyLog []byte
}

// AnalyzeFile analyses the capture at path.
func AnalyzeFile(ctx context.Context, path string, opts Options) (*schema.Analysis, error) {
	r, err := capfile.OpenMapped(path)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	return Analyze(ctx, r, filepath.Base(path), opts)
}

// Analyze analyses the packets of an open capture; name is the file name
// reported in Input. The result holds every record in memory: for large
// captures, AnalyzeFileTo writes them out as it goes instead.
func Analyze(ctx context.Context, r *capfile.Reader, name string, opts Options) (*schema.Analysis, error) {
	var m memSink
	a, err := run(ctx, r, name, opts, &m, multiCore())
	if err != nil {
		return nil, err
	}
	m.fill(a)
	return a, nil
}

// run runs the engine over r, handing finished records to out. With ahead,
// packets are read and decoded on a goroutine of their own.
func run(ctx context.Context, r *capfile.Reader, name string, opts Options, out recordSink, ahead bool) (*schema.Analysis, error) {
	if err := checkLinkType(r); err != nil {
		return nil, err
	}
	steps, err := newStepper(opts.Steps)
	if err != nil {
		return nil, err
	}
	e := newEngine(opts, steps, out)
	r.WantSecrets()
	if ahead {
		err = e.readAhead(ctx, r, name)
	} else {
		err = e.read(ctx, r, name)
	}
	if err != nil {
		return nil, err
	}
	a := e.finish()
	a.Input = schema.Input{File: name, Format: r.Format(), Gzip: r.Gzip(), Interfaces: len(r.LinkTypes())}
	seen := map[string]bool{}
	a.Input.LinkTypes = []string{}
	for _, lt := range r.LinkTypes() {
		if n := decode.LinkName(lt); !seen[n] {
			seen[n] = true
			a.Input.LinkTypes = append(a.Input.LinkTypes, n)
		}
	}
	return a, nil
}

// read feeds the engine every packet of r.
func (e *engine) read(ctx context.Context, r *capfile.Reader, name string) (err error) {
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer recoverFault(name, &err)
	var p capfile.Packet
	for n := 0; ; n++ {
		if n&0xffff == 0 {
			if err := ctx.Err(); err != nil {
				return fmt.Errorf("analyzing %s: %w", name, err)
			}
		}
		if err := r.Next(&p); err != nil {
			if err == capfile.ErrSecrets {
				e.secretsBlock(&p) // decrypt.go
				continue
			}
			return e.endOfInput(name, err)
		}
		e.packet(&p)
	}
}

// readAhead is read with the reading and decoding on another goroutine.
func (e *engine) readAhead(ctx context.Context, r *capfile.Reader, name string) error {
	ra := startReadAhead(r)
	defer ra.close()
	for {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("analyzing %s: %w", name, err)
		}
		b := ra.next()
		for i := range b.pkts {
			e.decoded(&b.pkts[i], &b.dec[i], b.kinds[i])
		}
		if b.secrets.Secrets != 0 {
			e.secretsBlock(&b.secrets) // it ended the batch: in file order
		}
		err := b.err
		ra.recycle(b)
		if err != nil {
			return e.endOfInput(name, err)
		}
	}
}

// recoverFault, deferred where packets of a mapped capture are read, turns
// the fault of a file that shrank meanwhile (capfile.OpenMapped) into an
// error; any other panic goes on.
func recoverFault(name string, err *error) {
	if v := recover(); v != nil {
		if !capfile.IsFault(v) {
			panic(v)
		}
		*err = faultError(name, v)
	}
}

func faultError(name string, v any) error {
	return fmt.Errorf("reading %s: the file shrank while it was read (%v): analyse a copy that nothing writes to", name, v)
}

// endOfInput turns the error that ended reading into the analysis' outcome:
// the end of the file or damage inside it (a warning: the packets before it
// count) end the analysis normally, anything else fails it.
func (e *engine) endOfInput(name string, err error) error {
	switch {
	case err == io.EOF:
		return nil
	case errors.Is(err, capfile.ErrDamaged):
		e.warn.CaptureDamage = append(e.warn.CaptureDamage, err.Error())
		return nil
	}
	return fmt.Errorf("reading %s: %w", name, err)
}

// multiCore reports whether work can go to goroutines beside the engine:
// with one core, handing it over would only cost.
func multiCore() bool { return runtime.GOMAXPROCS(0) > 1 }

// checkLinkType refuses a classic pcap whose only link type is unsupported.
func checkLinkType(r *capfile.Reader) error {
	if r.Format() == "pcap" {
		if lt := r.LinkTypes()[0]; !decode.Supported(lt) {
			return &capfile.Error{File: r.Name(), Offset: 20, Gzip: r.Gzip(),
				Msg: fmt.Sprintf("unsupported link type %d (%s); supported: Ethernet, 802.1Q, Linux SLL/SLL2, raw IP, NULL/LOOP, PPP, NFLOG", lt, decode.LinkName(lt))}
		}
	}
	return nil
}
