package osimage

import (
	"bufio"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// DefaultMirror is used when the build host's apt sources name no Debian mirror.
const DefaultMirror = "http://deb.debian.org/debian"

// HostMirror returns the Debian archive the build host's apt is configured
// with (the one mirror the build machine may reach), read from
// /etc/apt/sources.list and /etc/apt/sources.list.d/*.{list,sources}.
func HostMirror(aptDir string) string {
	var files []string
	files = append(files, filepath.Join(aptDir, "sources.list"))
	for _, pat := range []string{"*.list", "*.sources"} {
		m, _ := filepath.Glob(filepath.Join(aptDir, "sources.list.d", pat))
		sort.Strings(m)
		files = append(files, m...)
	}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		var uris []string
		if strings.HasSuffix(f, ".sources") {
			uris = deb822URIs(string(b))
		} else {
			uris = oneLineURIs(string(b))
		}
		for _, u := range uris {
			if isArchiveURI(u) {
				return strings.TrimRight(u, "/")
			}
		}
	}
	return DefaultMirror
}

// isArchiveURI accepts plain HTTP(S) Debian archives, not the security
// archive (debootstrap needs the main suite) nor third-party repositories.
func isArchiveURI(u string) bool {
	if !strings.HasPrefix(u, "http://") && !strings.HasPrefix(u, "https://") {
		return false
	}
	return strings.HasSuffix(strings.TrimRight(u, "/"), "/debian")
}

// oneLineURIs reads "deb [options] uri suite components" lines.
func oneLineURIs(s string) []string {
	var out []string
	sc := bufio.NewScanner(strings.NewReader(s))
	for sc.Scan() {
		line, _, _ := strings.Cut(sc.Text(), "#")
		fields := strings.Fields(line)
		if len(fields) < 3 || fields[0] != "deb" {
			continue
		}
		i := 1
		if strings.HasPrefix(fields[1], "[") {
			for i < len(fields) && !strings.HasSuffix(fields[i], "]") {
				i++
			}
			i++
		}
		if i < len(fields) {
			out = append(out, fields[i])
		}
	}
	return out
}

// deb822URIs reads the URIs of enabled stanzas of type deb.
func deb822URIs(s string) []string {
	var out []string
	for _, stanza := range strings.Split(strings.ReplaceAll(s, "\r\n", "\n"), "\n\n") {
		fields := map[string]string{}
		for _, line := range strings.Split(stanza, "\n") {
			if strings.HasPrefix(line, "#") {
				continue
			}
			k, v, ok := strings.Cut(line, ":")
			if !ok || strings.HasPrefix(line, " ") {
				continue
			}
			fields[strings.ToLower(strings.TrimSpace(k))] = strings.TrimSpace(v)
		}
		if strings.EqualFold(fields["enabled"], "no") {
			continue
		}
		hasDeb := false
		for _, t := range strings.Fields(fields["types"]) {
			hasDeb = hasDeb || t == "deb"
		}
		if hasDeb {
			out = append(out, strings.Fields(fields["uris"])...)
		}
	}
	return out
}
