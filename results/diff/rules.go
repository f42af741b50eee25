package diff

import (
	"bufio"
	"fmt"
	"io"
	"net/netip"
	"regexp"
	"strings"
)

// Rule rewrites the volatile part of a destination name (a numbered CDN
// node, a hash-like label) so that names that differ only there compare equal.
type Rule struct {
	Pattern     *regexp.Regexp
	Replacement string
	// Line is the rule's line in its file (0 for built-in rules).
	Line int
}

// DefaultRules is the built-in rule list, in the format ParseRules reads
// (`firstboot diff --show-rules` prints it). Rules apply in order, each to the
// result of the one before, to lower-case names; IP addresses are left alone,
// but the local network's unicast addresses compare as LocalNetwork.
const DefaultRules = `# firstboot diff normalisation rules: one rule per line,
#   REGEXP <whitespace> REPLACEMENT
# Go RE2 syntax; $1, ${name} refer to groups. Rules apply in order to the
# lower-case destination name; bare IP addresses are never rewritten (private,
# loopback and link-local ones all compare as "(local network)").

# Google video caches: r3---sn-abc123.googlevideo.com
^r[0-9]+---sn-[a-z0-9-]+\.googlevideo\.com$          r#---sn-#.googlevideo.com
# CloudFront distributions: d1a2b3c4d5e6f7.cloudfront.net
^d[0-9a-z]{8,}\.cloudfront\.net$                     d#.cloudfront.net
# Akamai: e1234.a.akamaiedge.net, a1234.dscb.akamai.net, a1234.g2.akamai.net
^e[0-9]+\.([a-z]+\.)?akamaiedge\.net$                e#.${1}akamaiedge.net
^a[0-9]+\.([a-z]+)[0-9]*\.akamai\.net$               a#.${1}.akamai.net
# AWS load balancers: name-1234567890.eu-west-1.elb.amazonaws.com
^([a-z0-9-]+)-[0-9]+\.([a-z0-9-]+)\.elb\.amazonaws\.com$   ${1}-#.${2}.elb.amazonaws.com
# A first label that is only digits: 7.tlu.dl.delivery.mp.microsoft.com
^[0-9]+\.                                            #.
# Numbered hosts: gspe21-ssl.ls.apple.com, clients4.google.com, ocsp2.apple.com, p45-caldav.icloud.com
^([a-z][a-z-]*?)[0-9]+([a-z-]*)\.                    ${1}#${2}.
`

// LocalNetwork is the name private, loopback and link-local unicast
// addresses are compared under.
const LocalNetwork = "(local network)"

// ParseRules reads rules in the DefaultRules format; name is used in errors.
func ParseRules(r io.Reader, name string) ([]Rule, error) {
	var out []Rule
	sc := bufio.NewScanner(r)
	for line := 1; sc.Scan(); line++ {
		text := strings.TrimSpace(sc.Text())
		if text == "" || strings.HasPrefix(text, "#") {
			continue
		}
		fields := strings.Fields(text)
		if len(fields) != 2 {
			return nil, fmt.Errorf("%s:%d: want REGEXP REPLACEMENT (two fields, no spaces inside), got %d field(s)", name, line, len(fields))
		}
		re, err := regexp.Compile(fields[0])
		if err != nil {
			return nil, fmt.Errorf("%s:%d: %w", name, line, err)
		}
		out = append(out, Rule{Pattern: re, Replacement: fields[1], Line: line})
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return out, nil
}

// MustDefaultRules returns the parsed built-in rules.
func MustDefaultRules() []Rule {
	rs, err := ParseRules(strings.NewReader(DefaultRules), "default rules")
	if err != nil {
		panic(err) // the constant above is wrong: a programming error caught by tests
	}
	return rs
}

// Normalize applies the rules to a destination name.
func Normalize(rules []Rule, name string) string {
	name = strings.ToLower(strings.TrimSuffix(name, "."))
	if a, err := netip.ParseAddr(name); err == nil {
		// The local network's unicast addresses (the router and resolver, the
		// machine itself) differ from lab to lab and run to run: compare them
		// as one. Multicast and broadcast addresses mean the same everywhere.
		if a = a.Unmap(); a.IsPrivate() || a.IsLoopback() || a.IsLinkLocalUnicast() {
			return LocalNetwork
		}
		return name
	}
	for _, r := range rules {
		name = r.Pattern.ReplaceAllString(name, r.Replacement)
	}
	return name
}
