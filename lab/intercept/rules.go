package intercept

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"strconv"
	"strings"
)

// ruleComment tags every rule, so they are easy to recognise in iptables-save.
const ruleComment = "firstboot-intercept"

// Rules returns the iptables argument lists (with -A) that send what a
// guest behind bridge sends to TCP port 443 of any address to the proxy
// listening on port in the lab namespace (REDIRECT: SO_ORIGINAL_DST gives
// the proxy the real destination) and, with refuseQUIC, reject its UDP 443
// (QUIC) with port-unreachable so clients fall back to TCP at once.
func Rules(bridge string, port int, refuseQUIC bool) [][]string {
	rules := [][]string{{"-t", "nat", "-A", "PREROUTING", "-i", bridge, "-p", "tcp", "--dport", "443",
		"-m", "addrtype", "!", "--dst-type", "LOCAL", "-m", "comment", "--comment", ruleComment,
		"-j", "REDIRECT", "--to-ports", strconv.Itoa(port)}}
	if refuseQUIC {
		rules = append(rules, []string{"-t", "filter", "-A", "FORWARD", "-i", bridge, "-p", "udp", "--dport", "443",
			"-m", "comment", "--comment", ruleComment, "-j", "REJECT", "--reject-with", "icmp-port-unreachable"})
	}
	return rules
}

// Install adds the rules in the namespace netns (a name for ip netns exec);
// on error the rules added so far are removed again.
func Install(ctx context.Context, netns string, rules [][]string) error {
	for i, r := range rules {
		if err := iptables(ctx, netns, r); err != nil {
			return errors.Join(err, Remove(ctx, netns, rules[:i]))
		}
	}
	return nil
}

// Remove deletes the rules (-A becomes -D); every rule is tried.
func Remove(ctx context.Context, netns string, rules [][]string) error {
	var errs []error
	for _, r := range rules {
		d := append([]string{}, r...)
		for i, a := range d {
			if a == "-A" {
				d[i] = "-D"
			}
		}
		errs = append(errs, iptables(ctx, netns, d))
	}
	return errors.Join(errs...)
}

func iptables(ctx context.Context, netns string, args []string) error {
	cmd := exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", netns, "iptables", "-w"}, args...)...)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("intercept: iptables %s in netns %s: %w: %s", strings.Join(args, " "), netns, err, strings.TrimSpace(string(out)))
	}
	return nil
}
