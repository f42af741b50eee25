package main

import (
	"bufio"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// inputDir is where devtmpfs creates the evdev nodes (event0, event1, ...).
const inputDir = "/dev/input"

// Linux input protocol (linux/input.h, linux/input-event-codes.h).
const (
	// inputEventSize is sizeof(struct input_event) on 64-bit Linux: a struct
	// timeval (two 8-byte longs), __u16 type, __u16 code, __s32 value.
	inputEventSize = 24
	evKey          = 0x01
	keyPower       = 116
)

// powerKeyPressed reports whether one input_event record is a press (value
// 1, not a release 0 or autorepeat 2) of KEY_POWER. The ACPI button driver
// reports the power button that way, as a keyboard's power key does.
func powerKeyPressed(ev []byte) bool {
	if len(ev) < inputEventSize {
		return false
	}
	typ := binary.NativeEndian.Uint16(ev[16:])
	code := binary.NativeEndian.Uint16(ev[18:])
	value := int32(binary.NativeEndian.Uint32(ev[20:]))
	return typ == evKey && code == keyPower && value == 1
}

// watchPowerButton reads every dir/event* input device and calls onPress
// once, with the device's path, at the first KEY_POWER press. Like logind it
// listens to every input device, so a keyboard's power key counts too. dir is
// rescanned every rescan for devices that appear later. It returns when ctx
// ends.
func watchPowerButton(ctx context.Context, dir string, rescan time.Duration, onPress func(dev string)) {
	var once sync.Once
	press := func(dev string) { once.Do(func() { onPress(dev) }) }
	var mu sync.Mutex
	reading := map[string]bool{}
	tick := time.NewTicker(rescan)
	defer tick.Stop()
	for {
		paths, _ := filepath.Glob(filepath.Join(dir, "event*"))
		for _, p := range paths {
			mu.Lock()
			busy := reading[p]
			reading[p] = true
			mu.Unlock()
			if busy {
				continue
			}
			go func() {
				readPowerKey(ctx, p, press)
				// The device is gone or unreadable; a later scan retries it.
				mu.Lock()
				delete(reading, p)
				mu.Unlock()
			}()
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// readPowerKey reads input_event records from one device until it fails,
// ends or ctx ends.
func readPowerKey(ctx context.Context, path string, press func(dev string)) {
	f, err := os.Open(path)
	if err != nil {
		return
	}
	// Closing the file is what unblocks a pending Read when ctx ends.
	stop := context.AfterFunc(ctx, func() { f.Close() })
	defer func() {
		if stop() {
			f.Close()
		}
	}()
	r := bufio.NewReaderSize(f, 64*inputEventSize)
	ev := make([]byte, inputEventSize)
	for {
		if _, err := io.ReadFull(r, ev); err != nil {
			return
		}
		if powerKeyPressed(ev) {
			press(path)
		}
	}
}

// powerOff is the guest's answer to the ACPI power button: say so on the
// console, flush, and power off through ACPI as an OS's shutdown would.
func powerOff(con *console, reason string) {
	con.mark("poweroff", reason)
	unix.Sync()
	if err := unix.Reboot(unix.LINUX_REBOOT_CMD_POWER_OFF); err != nil {
		con.mark("error", fmt.Sprintf("- poweroff %s: %v", reason, err))
	}
}
