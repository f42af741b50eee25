package report

import (
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

func orDash(s string) string {
	if s == "" {
		return "—"
	}
	return s
}

// utc formats an absolute time with milliseconds.
func utc(t time.Time) string {
	if t.IsZero() {
		return "—"
	}
	return t.UTC().Format("2006-01-02 15:04:05.000 UTC")
}

// offset formats t as seconds after origin ("+12.345 s").
func offset(t, origin time.Time) string {
	if t.IsZero() || origin.IsZero() {
		return "—"
	}
	d := t.Sub(origin).Seconds()
	sign := "+"
	if d < 0 {
		sign, d = "−", -d
	}
	return sign + strconv.FormatFloat(d, 'f', 3, 64) + " s"
}

func seconds(s float64) string { return strconv.FormatFloat(s, 'f', 3, 64) + " s" }

// commas groups digits by thousands: 1234567 → "1,234,567".
func commas(n int64) string {
	s := strconv.FormatInt(n, 10)
	neg := strings.HasPrefix(s, "-")
	if neg {
		s = s[1:]
	}
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	if neg {
		return "-" + b.String()
	}
	return b.String()
}

func bytesHuman(n int64) string {
	switch {
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}

// clean makes a string from the traffic safe to display as text: control
// characters, invalid UTF-8 and the bidirectional overrides that can make a
// name read as another (Trojan Source) are shown as escapes instead.
func clean(s string) string {
	ok := true
	for _, r := range s {
		if !displayable(r) {
			ok = false
			break
		}
	}
	if ok && utf8.ValidString(s) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size <= 1:
			fmt.Fprintf(&b, `\x%02x`, s[i])
		case !displayable(r):
			if r < 0x80 {
				fmt.Fprintf(&b, `\x%02x`, r)
			} else {
				fmt.Fprintf(&b, `\u%04x`, r)
			}
		default:
			b.WriteRune(r)
		}
		i += size
	}
	return b.String()
}

func displayable(r rune) bool {
	if r == utf8.RuneError {
		return false
	}
	if unicode.Is(unicode.Bidi_Control, r) || r == '\u200b' || r == '\ufeff' {
		return false
	}
	return r == ' ' || unicode.IsPrint(r)
}
