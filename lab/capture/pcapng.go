package capture

import (
	"encoding/binary"
	"time"
)

// The pcapng blocks the capture encodes itself, after the section and
// interface header gopacket writes: packets go straight into the batch (one
// append each, no intermediate writer), gopacket's writer drops the
// comments of an Interface Statistics Block and has no Decryption Secrets
// Block. Little-endian, like the header.
const (
	blockISB = 0x00000005
	blockEPB = 0x00000006
	blockDSB = 0x0000000A

	// SecretsTLSKeyLog is the Decryption Secrets Block type for TLS key
	// logs in the NSS format ("TLSK").
	SecretsTLSKeyLog = 0x544c534b
)

// block frames body (already a multiple of 4 bytes) as a pcapng block.
func block(typ uint32, body []byte) []byte {
	total := 4 + 4 + len(body) + 4
	b := make([]byte, 0, total)
	b = binary.LittleEndian.AppendUint32(b, typ)
	b = binary.LittleEndian.AppendUint32(b, uint32(total))
	b = append(b, body...)
	return binary.LittleEndian.AppendUint32(b, uint32(total))
}

// pad4 rounds n up to a multiple of 4, as pcapng aligns every field.
func pad4(n int) int { return (n + 3) &^ 3 }

// appendPadded appends v and zeros up to a multiple of 4 bytes.
func appendPadded[T []byte | string](b []byte, v T) []byte {
	b = append(b, v...)
	var zeros [3]byte
	return append(b, zeros[:pad4(len(v))-len(v)]...)
}

// appendOption appends one pcapng option (code, length, padded value).
func appendOption[T []byte | string](b []byte, code uint16, v T) []byte {
	b = binary.LittleEndian.AppendUint16(b, code)
	b = binary.LittleEndian.AppendUint16(b, uint16(len(v)))
	return appendPadded(b, v)
}

// comment cuts c to the longest an option can hold.
func comment(c string) string { return c[:min(len(c), 0xffff)] }

// appendPacket appends an Enhanced Packet Block for interface 0: data as
// captured, length as on the wire, and comments (step marks) as options.
func appendPacket(b []byte, at time.Time, data []byte, length int, comments []string) []byte {
	b = appendPacketHead(b, at, len(data), length, comments)
	b = append(b, data...)
	return appendPacketTail(b, len(data), comments)
}

// appendPacketHead appends an Enhanced Packet Block up to its packet data,
// which appendPacketTail expects to follow (in the batch or, written
// straight from the ring, beside it).
func appendPacketHead(b []byte, at time.Time, captured, length int, comments []string) []byte {
	b = binary.LittleEndian.AppendUint32(b, blockEPB)
	b = binary.LittleEndian.AppendUint32(b, packetBlockLen(captured, comments))
	b = binary.LittleEndian.AppendUint32(b, 0) // interface id
	b = appendTimestamp(b, at)
	b = binary.LittleEndian.AppendUint32(b, uint32(captured))
	return binary.LittleEndian.AppendUint32(b, uint32(length))
}

// appendPacketTail appends the rest of the block after captured bytes of
// data: padding, options and the repeated total length.
func appendPacketTail(b []byte, captured int, comments []string) []byte {
	var zeros [3]byte
	b = append(b, zeros[:pad4(captured)-captured]...)
	if len(comments) > 0 {
		for _, c := range comments {
			b = appendOption(b, 1, comment(c)) // opt_comment
		}
		b = appendOption(b, 0, "")
	}
	return binary.LittleEndian.AppendUint32(b, packetBlockLen(captured, comments))
}

// packetBlockLen is an Enhanced Packet Block's total length.
func packetBlockLen(captured int, comments []string) uint32 {
	opts := 0
	if len(comments) > 0 {
		for _, c := range comments {
			opts += 4 + pad4(len(comment(c)))
		}
		opts += 4 // opt_endofopt
	}
	return uint32(28 + pad4(captured) + opts + 4)
}

// appendTimestamp appends a timestamp in nanoseconds (the interface's
// if_tsresol 9), high word first as pcapng stores it.
func appendTimestamp(b []byte, t time.Time) []byte {
	n := uint64(t.UnixNano())
	b = binary.LittleEndian.AppendUint32(b, uint32(n>>32))
	return binary.LittleEndian.AppendUint32(b, uint32(n))
}

// statisticsBlock is the Interface Statistics Block for interface 0 that
// ends the file: the kernel's counters, the packets written, and the marks
// no packet followed as its comments.
func statisticsBlock(start, end time.Time, st Stats, comments []string) []byte {
	u64 := func(v uint64) []byte { return binary.LittleEndian.AppendUint64(nil, v) }
	body := binary.LittleEndian.AppendUint32(nil, 0) // interface id
	body = appendTimestamp(body, end)
	for _, c := range comments {
		body = appendOption(body, 1, comment(c)) // opt_comment
	}
	body = appendOption(body, 2, appendTimestamp(nil, start)) // isb_starttime
	body = appendOption(body, 3, appendTimestamp(nil, end))   // isb_endtime
	body = appendOption(body, 4, u64(st.Received))            // isb_ifrecv
	body = appendOption(body, 5, u64(st.Drops))               // isb_ifdrop
	body = appendOption(body, 8, u64(st.Packets))             // isb_usrdeliv
	body = appendOption(body, 0, "")                          // opt_endofopt
	return block(blockISB, body)
}

// secretsBlock is a Decryption Secrets Block carrying data.
func secretsBlock(secretsType uint32, data []byte) []byte {
	body := binary.LittleEndian.AppendUint32(nil, secretsType)
	body = binary.LittleEndian.AppendUint32(body, uint32(len(data)))
	return block(blockDSB, appendPadded(body, data))
}
