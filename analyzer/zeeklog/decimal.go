package zeeklog

import (
	"math"
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

// AppendShortSeconds appends f as strconv.AppendFloat(b, f, 'f', -1, 64)
// does (the shortest decimal that reads back as f), for what durations and
// round trips are: 1e-6 <= f < 1e6 and the float nearest a whole number of
// nanoseconds. It reports false, appending nothing, for any other f.
//
// Such an f has a decimal of at most 15 significant digits (its
// nanoseconds), and no two decimals that short read back as the same
// float64, so none shorter can be f's shortest: the nanoseconds are it.
func AppendShortSeconds(b []byte, f float64) ([]byte, bool) {
	if !(f >= 1e-6 && f < 1e6) {
		return b, false
	}
	ns := math.Round(f * 1e9)
	if ns/1e9 != f { // ns is exact below 2^53: one correctly rounded division
		return b, false
	}
	n := int64(ns)
	return AppendNanos(AppendInt(b, n/1e9), n%1e9), true
}

// AppendNanos appends the fraction of a second ns (0 <= ns < 1e9) as a
// point and nine digits, trailing zeros dropped; nothing for 0.
func AppendNanos(b []byte, ns int64) []byte {
	if ns == 0 {
		return b
	}
	var d [10]byte
	d[0] = '.'
	for i := 9; i >= 1; i-- {
		d[i] = byte('0' + ns%10)
		ns /= 10
	}
	end := len(d)
	for d[end-1] == '0' {
		end--
	}
	return append(b, d[:end]...)
}

// appendMicros appends the fraction of a second us (0 <= us < 1e6) as a
// point and six digits.
func appendMicros(b []byte, us int64) []byte {
	return append(b, '.', byte('0'+us/100000), byte('0'+us/10000%10), byte('0'+us/1000%10),
		byte('0'+us/100%10), byte('0'+us/10%10), byte('0'+us%10))
}

// appendFixed6Fast appends f with 6 decimals, as strconv.AppendFloat(b, f,
// 'f', 6, 64) does, for 0 < f < 1e6 whose microseconds are not within a
// rounding error of a tie; it reports false, appending nothing, otherwise.
// Below 1e6, f*1e6 is within 2^-14 of its exact value, so away from ties
// rounding it rounds the exact value the same way.
func appendFixed6Fast(b []byte, f float64) ([]byte, bool) {
	if !(f > 0 && f < 1e6) {
		return b, false
	}
	t := f * 1e6
	whole := math.Floor(t)
	tie := t - whole - 0.5
	if tie > -1e-3 && tie < 1e-3 {
		return b, false
	}
	us := int64(whole)
	if tie > 0 {
		us++
	}
	return appendMicros(AppendInt(b, us/1e6), us%1e6), true
}
