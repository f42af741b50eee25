package libvirt

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	golibvirt "github.com/digitalocean/go-libvirt"

	"github.com/firstboot/firstboot/lab"
)

// agentCommandTimeout is how long libvirt waits for one agent reply, in
// seconds (the agent answers at once when it runs).
const agentCommandTimeout = 10

// agentNotUp reports errors that mean the agent is not (yet) listening: the
// guest has not opened the port, or opened it and does not answer.
func agentNotUp(err error) bool {
	var e golibvirt.Error
	if !errors.As(err, &e) {
		return false
	}
	switch golibvirt.ErrorNumber(e.Code) {
	case golibvirt.ErrAgentUnresponsive, golibvirt.ErrAgentUnsynced, golibvirt.ErrAgentCommandTimeout:
		return true
	}
	return false
}

// agentCommand sends one QMP command to the guest agent and decodes the
// "return" member into out (when out is not nil).
func (m *Machine) agentCommand(ctx context.Context, what string, cmd any, out any) error {
	b, err := json.Marshal(cmd)
	if err != nil {
		return err
	}
	res, err := call(ctx, what+" on "+m.name, func() (golibvirt.OptString, error) {
		return m.lab.conn.QEMUDomainAgentCommand(m.dom, string(b), agentCommandTimeout, 0)
	})
	if err != nil {
		return err
	}
	if out == nil {
		return nil
	}
	if len(res) == 0 {
		return fmt.Errorf("%s on %s: the agent sent no reply", what, m.name)
	}
	var reply struct {
		Return json.RawMessage `json:"return"`
	}
	if err := json.Unmarshal([]byte(res[0]), &reply); err != nil {
		return fmt.Errorf("%s on %s: agent reply %q: %w", what, m.name, res[0], err)
	}
	if err := json.Unmarshal(reply.Return, out); err != nil {
		return fmt.Errorf("%s on %s: agent reply %q: %w", what, m.name, res[0], err)
	}
	return nil
}

// WaitAgent waits until the guest agent answers a ping.
func (m *Machine) WaitAgent(ctx context.Context) error {
	start := time.Now()
	for {
		err := m.agentCommand(ctx, "guest-ping", map[string]string{"execute": "guest-ping"}, nil)
		if err == nil {
			return nil
		}
		if !agentNotUp(err) && ctx.Err() == nil {
			return err
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s: the guest agent did not answer within %s: does the image run qemu-guest-agent on the %s port? (last: %v)",
				m.name, time.Since(start).Round(100*time.Millisecond), GuestAgentChannel, err)
		case <-m.stopped:
			return fmt.Errorf("%s: the machine stopped while waiting for its guest agent", m.name)
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// GuestExec runs path with args in the guest through qemu-guest-agent
// (guest-exec with captured output, then guest-exec-status until it exits)
// and returns its exit status and output. It first waits for the agent, so
// it can be called while the guest still boots; ctx bounds the whole call.
func (m *Machine) GuestExec(ctx context.Context, path string, args []string) (lab.ExecResult, error) {
	var res lab.ExecResult
	if err := m.WaitAgent(ctx); err != nil {
		return res, err
	}
	if args == nil {
		args = []string{}
	}
	var started struct {
		PID int `json:"pid"`
	}
	err := m.agentCommand(ctx, "guest-exec "+path, map[string]any{
		"execute":   "guest-exec",
		"arguments": map[string]any{"path": path, "arg": args, "capture-output": true},
	}, &started)
	if err != nil {
		return res, err
	}
	wait := 50 * time.Millisecond
	for {
		var st struct {
			Exited       bool   `json:"exited"`
			ExitCode     *int   `json:"exitcode"`
			Signal       *int   `json:"signal"`
			OutData      string `json:"out-data"`
			ErrData      string `json:"err-data"`
			OutTruncated bool   `json:"out-truncated"`
			ErrTruncated bool   `json:"err-truncated"`
		}
		err := m.agentCommand(ctx, "guest-exec-status", map[string]any{
			"execute": "guest-exec-status", "arguments": map[string]int{"pid": started.PID},
		}, &st)
		if err != nil {
			return res, err
		}
		if st.Exited {
			if st.ExitCode != nil {
				res.ExitCode = *st.ExitCode
			}
			if st.Signal != nil {
				res.Signal = *st.Signal
			}
			res.Truncated = st.OutTruncated || st.ErrTruncated
			if res.Stdout, err = base64.StdEncoding.DecodeString(st.OutData); err != nil {
				return res, fmt.Errorf("guest exec %s on %s: stdout: %w", path, m.name, err)
			}
			if res.Stderr, err = base64.StdEncoding.DecodeString(st.ErrData); err != nil {
				return res, fmt.Errorf("guest exec %s on %s: stderr: %w", path, m.name, err)
			}
			return res, nil
		}
		select {
		case <-ctx.Done():
			return res, fmt.Errorf("guest exec %s on %s: still running (guest pid %d): %w", path, m.name, started.PID, context.Cause(ctx))
		case <-m.stopped:
			return res, fmt.Errorf("guest exec %s on %s: the machine stopped before the program exited", path, m.name)
		case <-time.After(wait):
		}
		wait = min(2*wait, time.Second)
	}
}

// MonitorHMP runs a human monitor command ("info qtree") in QEMU and
// returns its output, for tests and diagnostics.
func (m *Machine) MonitorHMP(ctx context.Context, cmd string) (string, error) {
	const hmp = 1 // VIR_DOMAIN_QEMU_MONITOR_COMMAND_HMP
	return call(ctx, "monitor "+cmd+" on "+m.name, func() (string, error) {
		return m.lab.conn.QEMUDomainMonitorCommand(m.dom, cmd, hmp)
	})
}
