package guest

import (
	"bytes"
	"debug/elf"
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"github.com/therootcompany/xz"
)

// The x86 boot protocol (Documentation/arch/x86/boot.rst) puts a setup header
// in the bzImage's first sector. From protocol 2.08 on, payload_offset (0x248)
// and payload_length (0x24c) locate the compressed vmlinux relative to the
// start of the protected-mode code, which follows the (setup_sects+1) sectors
// of real-mode setup. Debian 6.1 compresses with xz (with the x86 BCJ filter,
// which is why a full xz decoder is needed), and the kernel's build appends
// the 4-byte uncompressed size after the xz stream.

var (
	xzMagic   = []byte{0xfd, '7', 'z', 'X', 'Z', 0x00}
	gzipMagic = []byte{0x1f, 0x8b}
	zstdMagic = []byte{0x28, 0xb5, 0x2f, 0xfd}
)

// xenElfnotePhys32Entry is XEN_ELFNOTE_PHYS32_ENTRY: the PVH entry point that
// lets QEMU boot the ELF directly, skipping the real-mode setup and the
// in-guest decompression (slow under TCG).
const xenElfnotePhys32Entry = 18

// ExtractVmlinux returns the uncompressed ELF kernel inside a bzImage.
func ExtractVmlinux(bz []byte) ([]byte, error) {
	if len(bz) < 0x250 || string(bz[0x202:0x206]) != "HdrS" {
		return nil, errors.New("kernel: not a bzImage (no HdrS setup header)")
	}
	proto := binary.LittleEndian.Uint16(bz[0x206:])
	if proto < 0x208 {
		return nil, fmt.Errorf("kernel: boot protocol %#x has no payload fields (need 2.08+)", proto)
	}
	setupSects := int(bz[0x1f1])
	if setupSects == 0 {
		setupSects = 4
	}
	start := (setupSects + 1) * 512
	off := int(binary.LittleEndian.Uint32(bz[0x248:]))
	n := int(binary.LittleEndian.Uint32(bz[0x24c:]))
	if off < 0 || n <= 0 || start+off+n > len(bz) || start+off+n < start {
		return nil, fmt.Errorf("kernel: payload offset %d length %d outside the %d-byte image", off, n, len(bz))
	}
	payload := bz[start+off : start+off+n]
	switch {
	case bytes.HasPrefix(payload, xzMagic):
		// Drop the appended size; the xz reader would see it as bad padding.
		if len(payload) > 4 {
			payload = payload[:len(payload)-4]
		}
		r, err := xz.NewReader(bytes.NewReader(payload), 0)
		if err != nil {
			return nil, fmt.Errorf("kernel: opening xz payload: %w", err)
		}
		out, err := io.ReadAll(r)
		if err != nil {
			return nil, fmt.Errorf("kernel: decompressing xz payload: %w", err)
		}
		if err := checkPVH(out); err != nil {
			return nil, err
		}
		return out, nil
	case bytes.HasPrefix(payload, gzipMagic), bytes.HasPrefix(payload, zstdMagic):
		return nil, errors.New("kernel: payload is gzip or zstd; only xz (Debian's choice) is implemented")
	default:
		return nil, fmt.Errorf("kernel: unknown payload compression (first bytes % x)", payload[:min(8, len(payload))])
	}
}

// checkPVH verifies that vmlinux is an ELF with a PVH entry note, without
// which QEMU cannot boot it directly.
func checkPVH(vmlinux []byte) error {
	f, err := elf.NewFile(bytes.NewReader(vmlinux))
	if err != nil {
		return fmt.Errorf("kernel: decompressed payload is not ELF: %w", err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type != elf.PT_NOTE {
			continue
		}
		data, err := io.ReadAll(p.Open())
		if err != nil {
			return fmt.Errorf("kernel: reading ELF notes: %w", err)
		}
		for len(data) >= 12 {
			nsz := int(binary.LittleEndian.Uint32(data[0:]))
			dsz := int(binary.LittleEndian.Uint32(data[4:]))
			typ := binary.LittleEndian.Uint32(data[8:])
			a := 12 + (nsz+3)&^3
			b := a + (dsz+3)&^3
			if nsz < 0 || dsz < 0 || a > len(data) || b > len(data) || a < 12 {
				break
			}
			if string(bytes.TrimRight(data[12:12+nsz], "\x00")) == "Xen" && typ == xenElfnotePhys32Entry {
				return nil
			}
			data = data[b:]
		}
	}
	return errors.New("kernel: vmlinux has no PVH entry note (XEN_ELFNOTE_PHYS32_ENTRY); boot the bzImage instead")
}
