package libvirt

import (
	"encoding/xml"
	"fmt"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"

	"libvirt.org/go/libvirtxml"

	"github.com/firstboot/firstboot/internal/owner"
)

// metaNS is the XML namespace of what firstboot records in the <metadata> of
// its domains and networks.
const metaNS = "https://github.com/firstboot/firstboot/xmlns/lab/1"

// labMeta is that record: the process that made the object, and the files
// that go with it (a machine's overlays, a probe's directory), removed with
// it when a later firstboot reaps it.
type labMeta struct {
	Owner struct {
		PID   int    `xml:"pid,attr"`
		Start uint64 `xml:"start,attr"`
		Boot  string `xml:"boot,attr"`
		Host  string `xml:"host,attr"`
	} `xml:"owner"`
	Files []struct {
		Path string `xml:"path,attr"`
	} `xml:"file"`
}

// metadataXML is the <metadata> content naming o as the owner. libvirt keeps
// elements of foreign namespaces as they are; the prefix is written out
// because libvirt drops elements that have none.
func metadataXML(o owner.Owner, files []string) string {
	var b strings.Builder
	attr := func(s string) string {
		var e strings.Builder
		_ = xml.EscapeText(&e, []byte(s))
		return e.String()
	}
	fmt.Fprintf(&b, `<firstboot:lab xmlns:firstboot=%q>`, metaNS)
	fmt.Fprintf(&b, `<firstboot:owner pid="%d" start="%d" boot="%s" host="%s"/>`, o.PID, o.Start, attr(o.Boot), attr(o.Host))
	for _, f := range files {
		fmt.Fprintf(&b, `<firstboot:file path="%s"/>`, attr(f))
	}
	b.WriteString(`</firstboot:lab>`)
	return b.String()
}

// parseMetadata finds firstboot's record in a <metadata> element's content.
func parseMetadata(inner string) (owner.Owner, []string, bool) {
	dec := xml.NewDecoder(strings.NewReader("<m>" + inner + "</m>"))
	for {
		tok, err := dec.Token()
		if err != nil {
			return owner.Owner{}, nil, false
		}
		se, ok := tok.(xml.StartElement)
		if !ok || se.Name.Space != metaNS || se.Name.Local != "lab" {
			continue
		}
		var m labMeta
		if dec.DecodeElement(&m, &se) != nil || m.Owner.PID <= 0 {
			return owner.Owner{}, nil, false
		}
		o := owner.Owner{PID: m.Owner.PID, Start: m.Owner.Start, Boot: m.Owner.Boot, Host: m.Owner.Host}
		var files []string
		for _, f := range m.Files {
			files = append(files, f.Path)
		}
		return o, files, true
	}
}

// ownerTag starts the description of domains made by firstboot versions
// before the metadata record (and still by this one, for those versions
// sharing the lab): "firstboot owner pid 4242".
const ownerTag = "firstboot owner pid "

// probeName matches the KVM probe's domain name, which carries its owner's
// pid (older versions recorded nothing else).
var probeName = regexp.MustCompile(`^` + Prefix + `(kvm|tcg)probe-([0-9]+)$`)

// domainOwner reads who made a firstboot domain: the metadata record, else
// what older versions left (the pid in the description, or in a probe's
// name). ok is false when nothing names an owner.
func domainOwner(d *libvirtxml.Domain) (o owner.Owner, files []string, ok bool) {
	if d.Metadata != nil {
		if o, files, ok := parseMetadata(d.Metadata.XML); ok {
			return o, files, true
		}
	}
	if rest, found := strings.CutPrefix(d.Description, ownerTag); found {
		if pid, err := strconv.Atoi(strings.Fields(rest + " ")[0]); err == nil && pid > 0 {
			return owner.Owner{PID: pid}, nil, true
		}
	}
	if m := probeName.FindStringSubmatch(d.Name); m != nil {
		pid, _ := strconv.Atoi(m[2])
		return owner.Owner{PID: pid}, nil, true
	}
	return owner.Owner{}, nil, false
}

// networkOwner reads who made a firstboot network (older versions recorded
// nobody).
func networkOwner(n *libvirtxml.Network) (owner.Owner, bool) {
	if n.Metadata == nil {
		return owner.Owner{}, false
	}
	o, _, ok := parseMetadata(n.Metadata.XML)
	return o, ok
}

// removableFile reports whether a path from a metadata record is one
// firstboot made for a machine (its names start with the prefix), so a
// damaged or foreign record can never make the reaper delete anything else.
func removableFile(p string) bool {
	return filepath.IsAbs(p) && strings.HasPrefix(filepath.Base(p), Prefix)
}
