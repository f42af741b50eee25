// Package tlskeys keeps the TLS secrets of a run: the NSS key log lines the
// lab's TLS endpoints (the simulated-internet responders, the intercepting
// proxy) write go to the run's tls-keys.log and, as they come, to the
// capture as Decryption Secrets Blocks. When the capture is done,
// IntoCapture puts every secret in one block ahead of the first packet:
// tshark reads a capture in one pass and needs a session's secret before
// that session's first protected record, which for TLS 1.2 was already
// captured when the server learned the secret (the client's Finished
// travels with its key exchange).
package tlskeys

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
)

// SecretsType is the pcapng Decryption Secrets Block type of an NSS key log ("TLSK").
const SecretsType = 0x544c534b

// Log is a key log: an io.Writer for crypto/tls's Config.KeyLogWriter
// (one line per Write), safe for concurrent sessions.
type Log struct {
	mu   sync.Mutex
	f    *os.File
	sink func(line []byte)
	err  error
}

// Create starts a key log in the file at path (mode 0600: the secrets open
// every session of the run).
func Create(path string) (*Log, error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_TRUNC|os.O_APPEND, 0o600)
	if err != nil {
		return nil, fmt.Errorf("tls key log: %w", err)
	}
	return &Log{f: f}, nil
}

// SetSink also hands every later line to sink (the capture's
// AddSecrets), on the writing session's goroutine; nil stops that.
func (l *Log) SetSink(sink func(line []byte)) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.sink = sink
}

// Write appends one key log line. A failing file write is remembered
// (Close returns it) but not returned: crypto/tls would fail the
// handshake, and the guest's traffic matters more than the secrets.
func (l *Log) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.f != nil {
		if _, err := l.f.Write(p); err != nil && l.err == nil {
			l.err = fmt.Errorf("tls key log %s: %w", l.f.Name(), err)
		}
	}
	if l.sink != nil {
		l.sink(p)
	}
	return len(p), nil
}

// Contents returns the key log written so far (whole lines).
func (l *Log) Contents() ([]byte, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.f == nil {
		return nil, errors.New("tls key log: closed")
	}
	b, err := os.ReadFile(l.f.Name())
	if err != nil {
		return nil, fmt.Errorf("tls key log: %w", err)
	}
	return b, nil
}

// Close closes the file; the error is the first write's or close's.
func (l *Log) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.f == nil {
		return l.err
	}
	err := l.f.Close()
	l.f = nil
	return errors.Join(l.err, err)
}

// pcapng block types.
const (
	blockSHB = 0x0A0D0D0A
	blockIDB = 1
	blockDSB = 10
)

// IntoCapture rewrites the pcapng capture at path so that keyLog (the
// run's whole key log) is one Decryption Secrets Block ahead of the first
// packet, and the NSS key log blocks the capture wrote as sessions went
// (their lines are all in keyLog) are gone. With an empty keyLog it leaves
// the file alone. The file is replaced atomically: a crash leaves the old
// one.
func IntoCapture(path string, keyLog []byte) error {
	if len(bytes.TrimSpace(keyLog)) == 0 {
		return nil
	}
	in, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("tls secrets into %s: %w", path, err)
	}
	defer in.Close()
	st, err := in.Stat()
	if err != nil {
		return fmt.Errorf("tls secrets into %s: %w", path, err)
	}
	out, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return fmt.Errorf("tls secrets into %s: %w", path, err)
	}
	tmp := out.Name()
	defer os.Remove(tmp) // after the rename, nothing to remove
	if err := rewrite(bufio.NewReaderSize(in, 1<<20), out, keyLog); err != nil {
		out.Close()
		return fmt.Errorf("tls secrets into %s: %w", path, err)
	}
	if err := out.Chmod(st.Mode().Perm()); err != nil {
		out.Close()
		return err
	}
	if err := out.Sync(); err != nil {
		out.Close()
		return fmt.Errorf("tls secrets into %s: %w", path, err)
	}
	if err := out.Close(); err != nil {
		return fmt.Errorf("tls secrets into %s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("tls secrets into %s: %w", path, err)
	}
	return nil
}

// rewrite copies the blocks of r to w: the key log block goes right before
// the first block that is not a section header or interface description,
// and the file's own key log blocks are left out.
func rewrite(r *bufio.Reader, w io.Writer, keyLog []byte) error {
	bw := bufio.NewWriterSize(w, 1<<20)
	var order binary.ByteOrder = binary.LittleEndian
	placed := false
	var block []byte
	for off := int64(0); ; {
		var hdr [12]byte
		n, err := io.ReadFull(r, hdr[:])
		if n == 0 && err == io.EOF {
			break
		}
		if err != nil {
			return fmt.Errorf("block header at byte %d: %w (a damaged capture)", off, err)
		}
		typ := binary.LittleEndian.Uint32(hdr[:])
		if typ == blockSHB {
			switch binary.LittleEndian.Uint32(hdr[8:]) {
			case 0x1A2B3C4D:
				order = binary.LittleEndian
			case 0x4D3C2B1A:
				order = binary.BigEndian
			default:
				return fmt.Errorf("section header at byte %d: bad byte-order magic", off)
			}
		} else {
			typ = order.Uint32(hdr[:])
		}
		size := order.Uint32(hdr[4:])
		if size < 12 || size%4 != 0 || size > 1<<28 {
			return fmt.Errorf("block at byte %d: bad length %d", off, size)
		}
		if cap(block) < int(size) {
			block = make([]byte, size)
		}
		block = block[:size]
		copy(block, hdr[:])
		if _, err := io.ReadFull(r, block[12:]); err != nil {
			return fmt.Errorf("block at byte %d: %w (a damaged capture)", off, err)
		}
		off += int64(size)
		if typ == blockDSB && len(block) >= 20 && order.Uint32(block[8:]) == SecretsType {
			continue // its lines are in keyLog
		}
		if !placed && typ != blockSHB && typ != blockIDB {
			bw.Write(dsb(order, keyLog))
			placed = true
		}
		bw.Write(block)
	}
	if !placed {
		bw.Write(dsb(order, keyLog)) // a capture without packets
	}
	return bw.Flush()
}

// dsb encodes a Decryption Secrets Block holding an NSS key log.
func dsb(order binary.ByteOrder, keyLog []byte) []byte {
	size := 12 + 8 + (len(keyLog)+3)&^3
	b := make([]byte, size)
	order.PutUint32(b, blockDSB)
	order.PutUint32(b[4:], uint32(size))
	order.PutUint32(b[8:], SecretsType)
	order.PutUint32(b[12:], uint32(len(keyLog)))
	copy(b[16:], keyLog)
	order.PutUint32(b[size-4:], uint32(size))
	return b
}
