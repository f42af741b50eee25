package zeeklog

import (
	"math/bits"
	"slices"
)

// AppendInt appends v in decimal, as strconv.AppendInt(b, v, 10) does. It
// writes the digits where they belong: strconv formats into a scratch buffer
// and copies it, and on a capture with a record for every few packets that
// copy was 4% of the analysis.
func AppendInt(b []byte, v int64) []byte {
	u := uint64(v)
	if v < 0 {
		b = append(b, '-')
		u = -u
	}
	if u < 10 {
		return append(b, byte('0'+u))
	}
	n := decimalLen(u)
	b = slices.Grow(b, n)
	d := b[len(b) : len(b)+n]
	i := n
	for u >= 100 {
		q := u / 100
		r := (u - q*100) * 2
		u = q
		i -= 2
		d[i], d[i+1] = twoDigits[r], twoDigits[r+1]
	}
	if u >= 10 {
		d[0], d[1] = twoDigits[2*u], twoDigits[2*u+1]
	} else {
		d[0] = byte('0' + u)
	}
	return b[:len(b)+n]
}

const twoDigits = "00010203040506070809" +
	"10111213141516171819" +
	"20212223242526272829" +
	"30313233343536373839" +
	"40414243444546474849" +
	"50515253545556575859" +
	"60616263646566676869" +
	"70717273747576777879" +
	"80818283848586878889" +
	"90919293949596979899"

var powersOf10 = [...]uint64{1, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10,
	1e11, 1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19}

// decimalLen is the number of decimal digits of u (u > 0): 1233/4096
// approximates log10(2), so t is the digit count or one less.
func decimalLen(u uint64) int {
	t := bits.Len64(u) * 1233 >> 12
	if u >= powersOf10[t] {
		t++
	}
	return t
}
