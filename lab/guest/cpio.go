package guest

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path"
	"strings"
)

// The initramfs is a cpio archive in the "newc" format (magic 070701), the
// only format the kernel's initramfs unpacker reads. Each entry is a 110-byte
// ASCII-hex header, the NUL-terminated name, padding to 4 bytes, the data and
// padding to 4 bytes; the archive ends with an entry named "TRAILER!!!".

const (
	cpioMagic   = "070701"
	cpioTrailer = "TRAILER!!!"
	// Mode type bits as in <sys/stat.h>; cpio stores st_mode verbatim.
	modeDir     = 0o040000
	modeRegular = 0o100000
	modeSymlink = 0o120000
	modeCharDev = 0o020000
)

// CPIOWriter writes a newc archive. Entries are written in the order given;
// the kernel creates them in that order, so parents must come before children.
type CPIOWriter struct {
	w      *bufio.Writer
	ino    uint32
	closed bool
	seen   map[string]bool
}

// NewCPIOWriter returns a writer that writes the archive to w.
func NewCPIOWriter(w io.Writer) *CPIOWriter {
	return &CPIOWriter{w: bufio.NewWriterSize(w, 1<<16), ino: 1, seen: map[string]bool{}}
}

// cleanName turns a path into the relative form the kernel expects ("bin/sh").
func cleanName(name string) (string, error) {
	n := strings.TrimPrefix(path.Clean("/"+name), "/")
	if n == "" || n == "." {
		return "", fmt.Errorf("cpio: invalid entry name %q", name)
	}
	if n == cpioTrailer {
		return "", fmt.Errorf("cpio: entry name %q is reserved", name)
	}
	return n, nil
}

func (c *CPIOWriter) header(name string, mode uint32, size int, rdevMajor, rdevMinor uint32, mtime int64) error {
	if c.closed {
		return errors.New("cpio: write after Close")
	}
	if name != cpioTrailer {
		if c.seen[name] {
			return fmt.Errorf("cpio: duplicate entry %q", name)
		}
		c.seen[name] = true
	}
	nlink := uint32(1)
	if mode&0o170000 == modeDir {
		nlink = 2
	}
	ino := c.ino
	c.ino++
	if name == cpioTrailer {
		ino, nlink = 0, 1
	}
	if size < 0 || int64(size) > 0xffffffff {
		return fmt.Errorf("cpio: entry %q: size %d does not fit in newc", name, size)
	}
	hdr := fmt.Sprintf("%s%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x",
		cpioMagic, ino, mode, 0, 0, nlink, uint32(mtime), uint32(size),
		0, 0, rdevMajor, rdevMinor, len(name)+1, 0)
	if _, err := c.w.WriteString(hdr); err != nil {
		return err
	}
	if _, err := c.w.WriteString(name + "\x00"); err != nil {
		return err
	}
	return c.pad(110 + len(name) + 1)
}

func (c *CPIOWriter) pad(n int) error {
	if r := n % 4; r != 0 {
		_, err := c.w.Write(make([]byte, 4-r))
		return err
	}
	return nil
}

// Dir adds a directory.
func (c *CPIOWriter) Dir(name string, perm fs.FileMode) error {
	n, err := cleanName(name)
	if err != nil {
		return err
	}
	return c.header(n, modeDir|uint32(perm.Perm()), 0, 0, 0, 0)
}

// File adds a regular file with the given contents.
func (c *CPIOWriter) File(name string, perm fs.FileMode, data []byte) error {
	n, err := cleanName(name)
	if err != nil {
		return err
	}
	if err := c.header(n, modeRegular|uint32(perm.Perm()), len(data), 0, 0, 0); err != nil {
		return err
	}
	if _, err := c.w.Write(data); err != nil {
		return err
	}
	return c.pad(len(data))
}

// Symlink adds a symbolic link name pointing at target.
func (c *CPIOWriter) Symlink(name, target string) error {
	n, err := cleanName(name)
	if err != nil {
		return err
	}
	if target == "" {
		return fmt.Errorf("cpio: symlink %q: empty target", name)
	}
	if err := c.header(n, modeSymlink|0o777, len(target), 0, 0, 0); err != nil {
		return err
	}
	if _, err := c.w.WriteString(target); err != nil {
		return err
	}
	return c.pad(len(target))
}

// CharDev adds a character device node (the kernel needs /dev/console in the
// initramfs to give init its standard streams).
func (c *CPIOWriter) CharDev(name string, perm fs.FileMode, major, minor uint32) error {
	n, err := cleanName(name)
	if err != nil {
		return err
	}
	return c.header(n, modeCharDev|uint32(perm.Perm()), 0, major, minor, 0)
}

// Close writes the trailer and flushes; it does not close the underlying writer.
func (c *CPIOWriter) Close() error {
	if c.closed {
		return nil
	}
	if err := c.header(cpioTrailer, 0, 0, 0, 0, 0); err != nil {
		return err
	}
	c.closed = true
	return c.w.Flush()
}

// CPIOEntry is one entry read back from a newc archive.
type CPIOEntry struct {
	Name                 string
	Mode                 uint32
	Data                 []byte
	RdevMajor, RdevMinor uint32
}

// ReadCPIO parses a newc archive up to its trailer. It is used by tests and by
// Load to check an image; it never panics on malformed input.
func ReadCPIO(r io.Reader) ([]CPIOEntry, error) {
	br := bufio.NewReader(r)
	var out []CPIOEntry
	var off int64
	read := func(n int64) ([]byte, error) {
		if n < 0 || n > 1<<31 {
			return nil, fmt.Errorf("cpio: bad length %d at offset %d", n, off)
		}
		b := make([]byte, 0, min(n, 1<<20))
		lr := io.LimitReader(br, n)
		buf, err := io.ReadAll(lr)
		b = append(b, buf...)
		if err == nil && int64(len(b)) != n {
			err = io.ErrUnexpectedEOF
		}
		off += int64(len(b))
		return b, err
	}
	skipPad := func() error {
		if r := off % 4; r != 0 {
			_, err := read(4 - r)
			return err
		}
		return nil
	}
	for {
		hdr, err := read(110)
		if err != nil {
			return out, fmt.Errorf("cpio: reading header at offset %d: %w", off, err)
		}
		if string(hdr[:6]) != cpioMagic {
			return out, fmt.Errorf("cpio: bad magic %q at offset %d", hdr[:6], off-110)
		}
		var f [13]uint32
		for i := range f {
			var v uint32
			for _, ch := range hdr[6+8*i : 14+8*i] {
				var d byte
				switch {
				case ch >= '0' && ch <= '9':
					d = ch - '0'
				case ch >= 'a' && ch <= 'f':
					d = ch - 'a' + 10
				case ch >= 'A' && ch <= 'F':
					d = ch - 'A' + 10
				default:
					return out, fmt.Errorf("cpio: bad hex digit %q in header at offset %d", ch, off-110)
				}
				v = v<<4 | uint32(d)
			}
			f[i] = v
		}
		mode, size, rmaj, rmin, namesize := f[1], f[6], f[9], f[10], f[11]
		if namesize == 0 {
			return out, fmt.Errorf("cpio: zero name size at offset %d", off-110)
		}
		nameb, err := read(int64(namesize))
		if err != nil {
			return out, fmt.Errorf("cpio: reading name: %w", err)
		}
		name := strings.TrimRight(string(nameb), "\x00")
		if err := skipPad(); err != nil {
			return out, err
		}
		if name == cpioTrailer {
			return out, nil
		}
		data, err := read(int64(size))
		if err != nil {
			return out, fmt.Errorf("cpio: reading data of %q: %w", name, err)
		}
		if err := skipPad(); err != nil {
			return out, err
		}
		out = append(out, CPIOEntry{Name: name, Mode: mode, Data: data, RdevMajor: rmaj, RdevMinor: rmin})
	}
}
