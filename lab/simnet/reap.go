package simnet

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/firstboot/firstboot/internal/owner"
)

// StaleRedirect is a lab network's redirect rules whose firstboot process
// ended without removing them (it was killed).
type StaleRedirect struct {
	Bridge string
	// Owner is the process that installed them; empty for rules of firstboot
	// versions that did not record it (those count as stale once their
	// bridge is gone).
	Owner string
	Rules int
}

// ReapRedirects removes from namespace netns the redirect rules whose owner
// has ended, and those of older firstboot versions (no owner) whose bridge
// no longer exists, then the TPROXY policy route if nothing needs it any
// more. Rules of live processes are never touched. The caller must make sure
// no new bridge can appear meanwhile (libvirt reuses bridge names): the lab
// holds its subnet lock.
func ReapRedirects(ctx context.Context, netns string) ([]StaleRedirect, error) {
	return staleRedirects(ctx, netns, true)
}

// FindStaleRedirects lists what ReapRedirects would remove, changing nothing.
func FindStaleRedirects(ctx context.Context, netns string) ([]StaleRedirect, error) {
	return staleRedirects(ctx, netns, false)
}

func staleRedirects(ctx context.Context, netns string, remove bool) ([]StaleRedirect, error) {
	var found []StaleRedirect
	var errs []error
	bridges := map[string]bool{} // bridge → exists, for rules without owner
	exists := func(bridge string) bool {
		e, ok := bridges[bridge]
		if !ok {
			_, err := output(ctx, netns, []string{"ip", "link", "show", "dev", bridge})
			e = err == nil
			bridges[bridge] = e
		}
		return e
	}
	removed := false
	for _, table := range []string{"nat", "mangle"} {
		out, err := output(ctx, netns, []string{"iptables", "-w", "-t", table, "-S", "PREROUTING"})
		if err != nil {
			return found, fmt.Errorf("simnet: listing %s rules in %s: %w", table, netns, err)
		}
		for _, line := range strings.Split(out, "\n") {
			args, ok := splitRule(line)
			if !ok || len(args) < 2 || args[0] != "-A" {
				continue
			}
			bridge, comment := ruleField(args, "-i"), ruleField(args, "--comment")
			var who string
			switch {
			case comment == ruleComment:
				if bridge == "" || exists(bridge) {
					continue
				}
			case strings.HasPrefix(comment, ruleComment+":"):
				o, err := owner.Parse(strings.TrimPrefix(comment, ruleComment+":"))
				if err != nil || !o.Gone() {
					continue
				}
				who = o.String()
			default:
				continue
			}
			if remove {
				del := append([]string{"iptables", "-w", "-t", table}, deleteRule(args)...)
				if err := run(ctx, netns, del); err != nil {
					errs = append(errs, err)
					continue
				}
				removed = true
			}
			found = addStale(found, bridge, who)
		}
	}
	if removed {
		errs = append(errs, removeUnusedTProxyRoute(ctx, netns))
	}
	if err := errors.Join(errs...); err != nil {
		return found, fmt.Errorf("simnet: removing stale redirect rules: %w", err)
	}
	return found, nil
}

// addStale counts one rule for its bridge and owner.
func addStale(found []StaleRedirect, bridge, who string) []StaleRedirect {
	for i := range found {
		if found[i].Bridge == bridge && found[i].Owner == who {
			found[i].Rules++
			return found
		}
	}
	return append(found, StaleRedirect{Bridge: bridge, Owner: who, Rules: 1})
}

// ruleField is the value after flag in a rule's arguments.
func ruleField(args []string, flag string) string {
	for i := 0; i+1 < len(args); i++ {
		if args[i] == flag {
			return args[i+1]
		}
	}
	return ""
}

// splitRule splits a line of `iptables -S` into arguments: words separated by
// spaces, where a double-quoted word may hold spaces and backslash escapes
// (iptables quotes every comment).
func splitRule(line string) ([]string, bool) {
	var args []string
	var cur strings.Builder
	inWord, quoted := false, false
	for i := 0; i < len(line); i++ {
		c := line[i]
		switch {
		case quoted && c == '\\' && i+1 < len(line):
			i++
			cur.WriteByte(line[i])
		case c == '"':
			quoted, inWord = !quoted, true
		case c == ' ' && !quoted:
			if inWord {
				args = append(args, cur.String())
				cur.Reset()
				inWord = false
			}
		default:
			cur.WriteByte(c)
			inWord = true
		}
	}
	if quoted {
		return nil, false
	}
	if inWord {
		args = append(args, cur.String())
	}
	return args, true
}
