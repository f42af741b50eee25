package libvirt

import (
	"context"
	"encoding/json"
	"fmt"
	"image"
	"image/png"
	"os"
	"path/filepath"
	"time"

	"github.com/firstboot/firstboot/lab"
)

// absMax is the top of QEMU's absolute axes: 0..absMax spans the screen.
const absMax = 0x7fff

// screenSizeTTL is how long a screenshot's size is trusted for pointer
// scaling; a guest changes resolution rarely (a login, a settings change),
// and scenario actions that click what they read take a screenshot first.
const screenSizeTTL = 5 * time.Second

// Pointer sends the events through QEMU's input-send-event (libvirt's QEMU
// monitor passthrough). Absolute positions go to the USB tablet every
// machine with a screen has; each button change is its own command, so it
// reaches the guest as its own HID report.
func (m *Machine) Pointer(ctx context.Context, events []lab.PointerEvent) error {
	if m.video == "none" {
		return fmt.Errorf("pointer on %s: the machine has no screen (video: none)", m.name)
	}
	var size image.Point
	for _, ev := range events {
		if ev.Kind == lab.PointerMove && size == (image.Point{}) {
			s, err := m.screenSize(ctx)
			if err != nil {
				return fmt.Errorf("pointer on %s: %w", m.name, err)
			}
			size = s
		}
		var qevs []map[string]any
		switch ev.Kind {
		case lab.PointerPause:
			t := time.NewTimer(ev.Wait)
			select {
			case <-ctx.Done():
				t.Stop()
				return context.Cause(ctx)
			case <-t.C:
			}
			continue
		case lab.PointerMove:
			if ev.X < 0 || ev.Y < 0 || ev.X >= size.X || ev.Y >= size.Y {
				return fmt.Errorf("pointer on %s: %d,%d is outside the %dx%d screen", m.name, ev.X, ev.Y, size.X, size.Y)
			}
			qevs = append(qevs, absEvent("x", ev.X, size.X), absEvent("y", ev.Y, size.Y))
		case lab.PointerDown, lab.PointerUp:
			if err := lab.CheckButton(ev.Button); err != nil {
				return fmt.Errorf("pointer on %s: %w", m.name, err)
			}
			qevs = append(qevs, btnEvent(ev.Button, ev.Kind == lab.PointerDown))
		case lab.PointerWheel:
			if err := m.wheel(ctx, ev.DX, ev.DY); err != nil {
				return err
			}
			continue
		}
		if err := m.sendInput(ctx, qevs); err != nil {
			return err
		}
	}
	return nil
}

// wheel turns the wheel one notch per command (a press and a release of
// QEMU's wheel buttons each).
func (m *Machine) wheel(ctx context.Context, dx, dy int) error {
	notch := func(button string, n int) error {
		if n < 0 {
			n = -n
		}
		for i := 0; i < n; i++ {
			for _, down := range []bool{true, false} {
				if err := m.sendInput(ctx, []map[string]any{btnEvent(button, down)}); err != nil {
					return err
				}
			}
		}
		return nil
	}
	up, left := "wheel-down", "wheel-right"
	if dy < 0 {
		up = "wheel-up"
	}
	if dx < 0 {
		left = "wheel-left"
	}
	if err := notch(up, dy); err != nil {
		return err
	}
	return notch(left, dx)
}

func absEvent(axis string, v, size int) map[string]any {
	scaled := 0
	if size > 1 {
		scaled = v * absMax / (size - 1)
	}
	return map[string]any{"type": "abs", "data": map[string]any{"axis": axis, "value": scaled}}
}

func btnEvent(button string, down bool) map[string]any {
	return map[string]any{"type": "btn", "data": map[string]any{"down": down, "button": button}}
}

func (m *Machine) sendInput(ctx context.Context, events []map[string]any) error {
	cmd, err := json.Marshal(map[string]any{"execute": "input-send-event", "arguments": map[string]any{"events": events}})
	if err != nil {
		return err
	}
	return m.qmp(ctx, "input-send-event", string(cmd))
}

// qmp runs one QMP command through libvirt's monitor passthrough and turns
// a QMP error reply into an error.
func (m *Machine) qmp(ctx context.Context, what, cmd string) error {
	out, err := call(ctx, what+" "+m.name, func() (string, error) {
		return m.lab.conn.QEMUDomainMonitorCommand(m.dom, cmd, 0)
	})
	if err != nil {
		return err
	}
	var resp struct {
		Error *struct{ Desc string } `json:"error"`
	}
	if json.Unmarshal([]byte(out), &resp) == nil && resp.Error != nil {
		return fmt.Errorf("%s %s: %s", what, m.name, resp.Error.Desc)
	}
	return nil
}

// screenSize is the screen's size in pixels: the last screenshot's when it
// is recent, otherwise a new screendump's.
func (m *Machine) screenSize(ctx context.Context) (image.Point, error) {
	m.sizeMu.Lock()
	size, at := m.size, m.sizeAt
	m.sizeMu.Unlock()
	if size != (image.Point{}) && time.Since(at) < screenSizeTTL {
		return size, nil
	}
	f, err := os.CreateTemp(m.runDir, ".screen-size-*.png")
	if err != nil {
		return image.Point{}, err
	}
	f.Close()
	defer os.Remove(f.Name())
	if err := m.Screenshot(ctx, f.Name()); err != nil {
		return image.Point{}, err
	}
	m.sizeMu.Lock()
	defer m.sizeMu.Unlock()
	return m.size, nil
}

// noteScreenSize records the size of a screenshot QEMU just wrote.
func (m *Machine) noteScreenSize(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	cfg, err := png.DecodeConfig(f)
	if err != nil {
		return fmt.Errorf("screendump %s: %s: %w", m.name, filepath.Base(path), err)
	}
	m.sizeMu.Lock()
	m.size, m.sizeAt = image.Pt(cfg.Width, cfg.Height), time.Now()
	m.sizeMu.Unlock()
	return nil
}
