package scenarios

import (
	"fmt"
	"sort"
	"strings"
	"time"
)

// KeyEvent is one step of a key sequence: a chord of Linux keycodes pressed
// together then released (what libvirt's send-key does), or a pause.
type KeyEvent struct {
	Codes []uint
	Wait  time.Duration
}

// Linux input keycodes (linux/input-event-codes.h), the codeset firstboot sends.
const (
	keyEsc, keyMinus, keyEqual, keyBackspace, keyTab       = 1, 12, 13, 14, 15
	keyLeftBrace, keyRightBrace, keyEnter, keyLeftCtrl     = 26, 27, 28, 29
	keySemicolon, keyApostrophe, keyGrave, keyLeftShift    = 39, 40, 41, 42
	keyBackslash, keyComma, keyDot, keySlash, keyRightShft = 43, 51, 52, 53, 54
	keyLeftAlt, keySpace, keyCapsLock, keyRightCtrl        = 56, 57, 58, 97
	keyRightAlt, keyHome, keyUp, keyPageUp, keyLeft        = 100, 102, 103, 104, 105
	keyRight, keyEnd, keyDown, keyPageDown, keyInsert      = 106, 107, 108, 109, 110
	keyDelete, keyLeftMeta, keyRightMeta, keyMenu          = 111, 125, 126, 139
)

// letterRows are the keycodes of the letter keys, by row, starting at Q, A and Z.
var letterRows = []struct {
	letters string
	first   uint
}{{"qwertyuiop", 16}, {"asdfghjkl", 30}, {"zxcvbnm", 44}}

// plainKeys maps unshifted characters (other than letters) to keycodes.
var plainKeys = map[rune]uint{
	'1': 2, '2': 3, '3': 4, '4': 5, '5': 6, '6': 7, '7': 8, '8': 9, '9': 10, '0': 11,
	'-': keyMinus, '=': keyEqual, '[': keyLeftBrace, ']': keyRightBrace, ';': keySemicolon,
	'\'': keyApostrophe, '`': keyGrave, '\\': keyBackslash, ',': keyComma, '.': keyDot,
	'/': keySlash, ' ': keySpace, '\n': keyEnter, '\t': keyTab,
}

// shiftedKeys maps shifted characters to the character on the same key (US layout).
var shiftedKeys = map[rune]rune{
	'!': '1', '@': '2', '#': '3', '$': '4', '%': '5', '^': '6', '&': '7', '*': '8', '(': '9', ')': '0',
	'_': '-', '+': '=', '{': '[', '}': ']', ':': ';', '"': '\'', '~': '`', '|': '\\', '<': ',', '>': '.', '?': '/',
}

// specialKeys are Packer's named keys, lower-cased.
var specialKeys = map[string]uint{
	"enter": keyEnter, "return": keyEnter, "esc": keyEsc, "tab": keyTab, "bs": keyBackspace,
	"del": keyDelete, "spacebar": keySpace, "insert": keyInsert, "home": keyHome, "end": keyEnd,
	"pageup": keyPageUp, "pagedown": keyPageDown, "up": keyUp, "down": keyDown, "left": keyLeft,
	"right": keyRight, "menu": keyMenu, "capslock": keyCapsLock,
	"f1": 59, "f2": 60, "f3": 61, "f4": 62, "f5": 63, "f6": 64, "f7": 65, "f8": 66, "f9": 67, "f10": 68,
	"f11": 87, "f12": 88,
}

// modifierKeys can be pressed alone or held with On/Off suffixes.
var modifierKeys = map[string]uint{
	"leftalt": keyLeftAlt, "rightalt": keyRightAlt, "leftctrl": keyLeftCtrl, "rightctrl": keyRightCtrl,
	"leftshift": keyLeftShift, "rightshift": keyRightShft, "leftsuper": keyLeftMeta, "rightsuper": keyRightMeta,
}

func charKey(r rune) ([]uint, bool) {
	lower := r
	shift := false
	if r >= 'A' && r <= 'Z' {
		lower, shift = r-'A'+'a', true
	}
	if base, ok := shiftedKeys[r]; ok {
		lower, shift = base, true
	}
	var code uint
	found := false
	for _, row := range letterRows {
		if i := strings.IndexRune(row.letters, lower); i >= 0 {
			code, found = row.first+uint(i), true
		}
	}
	if !found {
		code, found = plainKeys[lower]
	}
	if !found {
		return nil, false
	}
	if shift {
		return []uint{keyLeftShift, code}, true
	}
	return []uint{code}, true
}

// ParseKeys reads Packer's boot_command syntax: literal characters, <enter>,
// <tab>, <f5>, <leftCtrlOn>…<leftCtrlOff> for held modifiers, <wait>, <wait5>
// and <wait1m30s> (any Go duration; a bare number means seconds).
func ParseKeys(s string) ([]KeyEvent, error) {
	var events []KeyEvent
	var held []uint
	press := func(codes []uint) {
		chord := append(append([]uint(nil), held...), codes...)
		events = append(events, KeyEvent{Codes: chord})
	}
	for i := 0; i < len(s); {
		if s[i] == '<' {
			if end := strings.IndexByte(s[i:], '>'); end > 1 {
				name := s[i+1 : i+end]
				if ev, ok, err := parseSpecial(name, &held); err != nil {
					return nil, fmt.Errorf("at character %d: %w", i+1, err)
				} else if ok {
					if ev.Wait > 0 || ev.Codes != nil {
						if ev.Codes != nil {
							press(ev.Codes)
						} else {
							events = append(events, ev)
						}
					}
					i += end + 1
					continue
				}
			}
		}
		r := rune(s[i])
		codes, ok := charKey(r)
		if !ok {
			return nil, fmt.Errorf("at character %d: %q has no key on a US keyboard", i+1, r)
		}
		press(codes)
		i++
	}
	if len(held) > 0 {
		return nil, fmt.Errorf("modifier still held at the end: add the matching <…Off>")
	}
	return events, nil
}

// parseSpecial handles one <name>. ok is false when name is not a key name at
// all, in which case '<' is typed literally (Packer does the same).
func parseSpecial(name string, held *[]uint) (KeyEvent, bool, error) {
	lower := strings.ToLower(name)
	if rest, ok := strings.CutPrefix(lower, "wait"); ok {
		if rest == "" {
			return KeyEvent{Wait: time.Second}, true, nil
		}
		d, err := time.ParseDuration(rest)
		if err != nil {
			d, err = time.ParseDuration(rest + "s")
		}
		if err != nil || d <= 0 {
			return KeyEvent{}, false, fmt.Errorf("<%s>: not a wait; write <wait>, <wait5> or <wait1m30s>", name)
		}
		return KeyEvent{Wait: d}, true, nil
	}
	if code, ok := specialKeys[lower]; ok {
		return KeyEvent{Codes: []uint{code}}, true, nil
	}
	for mod, code := range modifierKeys {
		switch lower {
		case mod:
			return KeyEvent{Codes: []uint{code}}, true, nil
		case mod + "on":
			*held = append(*held, code)
			return KeyEvent{}, true, nil
		case mod + "off":
			for i, h := range *held {
				if h == code {
					*held = append((*held)[:i], (*held)[i+1:]...)
					return KeyEvent{}, true, nil
				}
			}
			return KeyEvent{}, false, fmt.Errorf("<%s> without a matching <%sOn>", name, name[:len(name)-3])
		}
	}
	if len(name) > 1 && !strings.ContainsAny(name, " <") {
		return KeyEvent{}, false, fmt.Errorf("unknown key <%s>%s (keys: %s)", name, suggest(lower, keyNames()), strings.Join(keyNames(), ", "))
	}
	return KeyEvent{}, false, nil
}

func keyNames() []string {
	var out []string
	for k := range specialKeys {
		out = append(out, k)
	}
	for k := range modifierKeys {
		out = append(out, k, k+"On", k+"Off")
	}
	out = append(out, "wait", "waitN")
	sort.Strings(out)
	return out
}

// TypeText turns plain text into key events. The loader rejects characters
// without a key, so none is skipped for a loaded scenario.
func TypeText(s string) []KeyEvent {
	var events []KeyEvent
	for _, r := range s {
		if codes, ok := charKey(r); ok {
			events = append(events, KeyEvent{Codes: codes})
		}
	}
	return events
}
