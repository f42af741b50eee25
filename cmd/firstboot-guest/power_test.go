package main

import (
	"context"
	"encoding/binary"
	"os"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// inputEvent encodes a struct input_event as linux/input.h lays it out on
// 64-bit Linux: tv_sec and tv_usec (8 bytes each), type, code, value.
func inputEvent(typ, code uint16, value int32) []byte {
	b := make([]byte, 24)
	binary.NativeEndian.PutUint64(b[0:], 1700000000)
	binary.NativeEndian.PutUint64(b[8:], 123456)
	binary.NativeEndian.PutUint16(b[16:], typ)
	binary.NativeEndian.PutUint16(b[18:], code)
	binary.NativeEndian.PutUint32(b[20:], uint32(value))
	return b
}

// Codes from linux/input-event-codes.h.
const (
	testEvSyn   = 0x00
	testEvKey   = 0x01
	testKeyA    = 30
	testKeyPow  = 116
	testKeySlp  = 142
	testSynRept = 0
)

func TestPowerKeyPressed(t *testing.T) {
	for _, tc := range []struct {
		name string
		ev   []byte
		want bool
	}{
		{"power press", inputEvent(testEvKey, testKeyPow, 1), true},
		{"power release", inputEvent(testEvKey, testKeyPow, 0), false},
		{"power autorepeat", inputEvent(testEvKey, testKeyPow, 2), false},
		{"other key", inputEvent(testEvKey, testKeyA, 1), false},
		{"sleep key", inputEvent(testEvKey, testKeySlp, 1), false},
		{"sync report", inputEvent(testEvSyn, testSynRept, 0), false},
		{"code 116 of another type", inputEvent(0x04, testKeyPow, 1), false},
		{"short record", inputEvent(testEvKey, testKeyPow, 1)[:23], false},
		{"empty", nil, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := powerKeyPressed(tc.ev); got != tc.want {
				t.Errorf("powerKeyPressed = %v, want %v", got, tc.want)
			}
		})
	}
}

// fakeInput makes dir/name a FIFO and returns a function that writes events
// into it (opening it waits for the watcher to open the other end).
func fakeInput(t *testing.T, dir, name string) func(evs ...[]byte) {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := unix.Mkfifo(p, 0o600); err != nil {
		t.Fatal(err)
	}
	opened := make(chan *os.File, 1)
	go func() {
		f, err := os.OpenFile(p, os.O_WRONLY, 0)
		if err != nil {
			t.Error(err)
			close(opened)
			return
		}
		opened <- f
	}()
	var w *os.File
	t.Cleanup(func() {
		if w != nil {
			w.Close()
		}
	})
	return func(evs ...[]byte) {
		t.Helper()
		if w == nil {
			select {
			case w = <-opened:
			case <-time.After(10 * time.Second):
				t.Fatalf("the watcher never opened %s", p)
			}
			if w == nil {
				t.FailNow()
			}
		}
		for _, ev := range evs {
			// Split writes: the reader must reassemble whole records.
			if _, err := w.Write(ev[:10]); err != nil {
				t.Fatal(err)
			}
			if _, err := w.Write(ev[10:]); err != nil {
				t.Fatal(err)
			}
		}
	}
}

func TestWatchPowerButton(t *testing.T) {
	dir := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	pressed := make(chan string, 4)
	done := make(chan struct{})
	kbd := fakeInput(t, dir, "event0")
	// Deferred calls run before t.Cleanup closes the FIFO writers, so no
	// reader sees EOF and reopens a FIFO that nobody will write again.
	defer func() { cancel(); <-done }()
	go func() {
		defer close(done)
		watchPowerButton(ctx, dir, 50*time.Millisecond, func(dev string) { pressed <- dev })
	}()

	// A keyboard typing, and the power key released without a press.
	kbd(inputEvent(testEvKey, testKeyA, 1), inputEvent(testEvSyn, testSynRept, 0),
		inputEvent(testEvKey, testKeyA, 0), inputEvent(testEvKey, testKeyPow, 0))
	select {
	case dev := <-pressed:
		t.Fatalf("press reported from %s without a KEY_POWER press", dev)
	case <-time.After(200 * time.Millisecond):
	}

	// The power button device appears after the watcher started (the rescan
	// finds it) and reports a press, as the ACPI button driver does.
	btn := fakeInput(t, dir, "event1")
	btn(inputEvent(testEvKey, testKeyPow, 1), inputEvent(testEvSyn, testSynRept, 0),
		inputEvent(testEvKey, testKeyPow, 0), inputEvent(testEvSyn, testSynRept, 0))
	select {
	case dev := <-pressed:
		if dev != filepath.Join(dir, "event1") {
			t.Errorf("press reported from %s, want event1", dev)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no press reported")
	}

	// onPress runs once however many presses follow.
	kbd(inputEvent(testEvKey, testKeyPow, 1))
	select {
	case dev := <-pressed:
		t.Errorf("second press reported from %s", dev)
	case <-time.After(200 * time.Millisecond):
	}
}
