package osimage_test

import (
	"bufio"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net"
	"testing"
	"time"
)

// qgaExec runs /bin/sh -c script in the guest through qemu-guest-agent on
// QEMU's end of the org.qemu.guest_agent.0 port (a unix socket): guest-sync
// to skip stale replies, then guest-exec and guest-exec-status.
func qgaExec(t *testing.T, sock, script string, timeout time.Duration) (code int, stdout string, err error) {
	t.Helper()
	conn, err := net.Dial("unix", sock)
	if err != nil {
		return 0, "", err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(timeout))
	r := bufio.NewReader(conn)
	call := func(cmd string, args any, ret any) error {
		b, _ := json.Marshal(map[string]any{"execute": cmd, "arguments": args})
		if _, err := conn.Write(append(b, '\n')); err != nil {
			return err
		}
		line, err := r.ReadBytes('\n')
		if err != nil {
			return fmt.Errorf("%s: %w", cmd, err)
		}
		var reply struct {
			Return json.RawMessage        `json:"return"`
			Error  *struct{ Desc string } `json:"error"`
		}
		if err := json.Unmarshal(line, &reply); err != nil {
			return fmt.Errorf("%s: reply %q: %w", cmd, line, err)
		}
		if reply.Error != nil {
			return fmt.Errorf("%s: %s", cmd, reply.Error.Desc)
		}
		return json.Unmarshal(reply.Return, ret)
	}
	id := time.Now().UnixNano() % 1e9
	var got int64
	if err := call("guest-sync", map[string]any{"id": id}, &got); err != nil {
		return 0, "", err
	}
	for got != id { // a reply left over from an earlier client
		line, err := r.ReadBytes('\n')
		if err != nil {
			return 0, "", fmt.Errorf("guest-sync: %w", err)
		}
		var reply struct{ Return int64 }
		_ = json.Unmarshal(line, &reply)
		got = reply.Return
	}
	var started struct{ PID int }
	if err := call("guest-exec", map[string]any{"path": "/bin/sh", "arg": []string{"-c", script}, "capture-output": true}, &started); err != nil {
		return 0, "", err
	}
	for {
		var st struct {
			Exited   bool
			ExitCode int    `json:"exitcode"`
			OutData  string `json:"out-data"`
		}
		if err := call("guest-exec-status", map[string]any{"pid": started.PID}, &st); err != nil {
			return 0, "", err
		}
		if st.Exited {
			out, _ := base64.StdEncoding.DecodeString(st.OutData)
			return st.ExitCode, string(out), nil
		}
		time.Sleep(200 * time.Millisecond)
	}
}
