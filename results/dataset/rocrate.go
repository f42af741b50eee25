package dataset

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"strings"
	"time"
)

// roCrate renders ro-crate-metadata.json (RO-Crate 1.1). DataCite's
// required fields map to schema.org terms on the root Dataset: creator,
// name (title), publisher, datePublished, and — under DataCite's own names,
// declared in @context — publicationYear and resourceTypeGeneral "Dataset"
// (besides @type Dataset). Each run is a Dataset (its directory) produced by a
// CreateAction whose instrument is firstboot (with its version) and whose
// object is the studied OS (name, release, build); the lab location is the
// run's locationCreated, the capture date its dateCreated.
func roCrate(opts Options, runs []RunResult, dir string, files []string) ([]byte, error) {
	type obj = map[string]any
	ref := func(id string) obj { return obj{"@id": id} }
	var graph []obj
	graph = append(graph, obj{
		"@id":        CrateFile,
		"@type":      "CreativeWork",
		"conformsTo": ref("https://w3id.org/ro/crate/1.1"),
		"about":      ref("./"),
	})
	var creators []obj
	var creatorEnts []obj
	for i, c := range opts.Creators {
		id := fmt.Sprintf("#creator-%d", i+1)
		creators = append(creators, ref(id))
		creatorEnts = append(creatorEnts, obj{"@id": id, "@type": "Person", "name": c})
	}
	year := opts.DatePublished[:4]
	root := obj{
		"@id":             "./",
		"@type":           "Dataset",
		"name":            opts.Title,
		"description":     description(opts, runs),
		"datePublished":   opts.DatePublished,
		"publicationYear": year,
		"creator":         creators,
		"publisher":       ref("#publisher"),
		// DataCite's own names for two required fields, defined in @context below.
		"resourceTypeGeneral": "Dataset",
		"keywords":            []string{"network capture", "pcapng", "operating system", "first boot", "telemetry"},
	}
	if opts.License != "" {
		root["license"] = ref(opts.License)
	}
	if opts.LabLocation != "" {
		root["locationCreated"] = ref("#lab")
	}
	var parts, about []obj
	var ents []obj
	osSeen := map[string]bool{}
	tool := "#firstboot-" + opts.Version
	for _, r := range runs {
		base := RunsDir + "/" + r.ID + "/"
		parts = append(parts, ref(base))
		m := r.Manifest
		o := m.Scenario.OS
		osID := "#os-" + slug(strings.Join([]string{o.Family, o.Product, o.Release, o.Build}, "-"))
		if !osSeen[osID] {
			osSeen[osID] = true
			about = append(about, ref(osID))
			e := obj{"@id": osID, "@type": "SoftwareApplication", "name": firstNonEmpty(o.Product, o.Family, m.Scenario.Name)}
			if o.Release != "" {
				e["softwareVersion"] = o.Release
			}
			if o.Build != "" {
				e["identifier"] = o.Build
			}
			if o.Family != "" {
				e["applicationCategory"] = o.Family
			}
			ents = append(ents, e)
		}
		var hasPart []obj
		for _, f := range files {
			if strings.HasPrefix(f, base) {
				hasPart = append(hasPart, ref(f))
			}
		}
		start := m.Capture.Start
		run := obj{
			"@id":         base,
			"@type":       "Dataset",
			"name":        "Run " + r.ID + ": scenario " + m.Scenario.Name + " on " + osLabel(m),
			"description": fmt.Sprintf("Capture, per-step captures, analysis and logs of run %s (%d packets, %d steps).", r.ID, r.Analysis.Summary.Packets, len(r.Options.Steps)),
			"about":       ref(osID),
			"hasPart":     hasPart,
		}
		if !start.IsZero() {
			run["dateCreated"] = start.UTC().Format(time.RFC3339)
		}
		if opts.LabLocation != "" {
			run["locationCreated"] = ref("#lab")
		}
		ents = append(ents, run)
		act := obj{
			"@id":        "#run-" + r.ID,
			"@type":      "CreateAction",
			"name":       "firstboot run " + r.ID,
			"instrument": ref(tool),
			"object":     ref(osID),
			"result":     ref(base),
		}
		if !start.IsZero() {
			act["startTime"] = start.UTC().Format(time.RFC3339)
		}
		if !m.Capture.End.IsZero() {
			act["endTime"] = m.Capture.End.UTC().Format(time.RFC3339)
		}
		ents = append(ents, act)
	}
	root["hasPart"] = parts
	root["about"] = about
	graph = append(graph, root)
	graph = append(graph, creatorEnts...)
	graph = append(graph, obj{"@id": "#publisher", "@type": "Organization", "name": opts.Publisher})
	if opts.LabLocation != "" {
		graph = append(graph, obj{"@id": "#lab", "@type": "Place", "name": opts.LabLocation})
	}
	if opts.License != "" {
		graph = append(graph, obj{"@id": opts.License, "@type": "CreativeWork", "name": opts.License})
	}
	graph = append(graph, obj{
		"@id": tool, "@type": "SoftwareApplication", "name": "firstboot",
		"softwareVersion": opts.Version, "url": "https://github.com/firstboot/firstboot",
	})
	graph = append(graph, ents...)
	for _, f := range files {
		if f == ReadmeFile {
			continue
		}
		st, err := os.Stat(filepath.Join(dir, filepath.FromSlash(f)))
		if err != nil {
			return nil, err
		}
		graph = append(graph, obj{
			"@id": f, "@type": "File", "name": path.Base(f),
			"contentSize": fmt.Sprint(st.Size()), "encodingFormat": mediaType(f),
		})
	}
	graph = append(graph, obj{"@id": ReadmeFile, "@type": "File", "name": ReadmeFile, "encodingFormat": "text/markdown", "about": ref("./")})
	root["hasPart"] = append(parts, ref(ReadmeFile), ref(ManifestFile))
	graph = append(graph, obj{"@id": ManifestFile, "@type": "File", "name": ManifestFile, "encodingFormat": "text/plain",
		"description": "sha256, size and path of every file of the bundle but itself, sorted by path"})
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(obj{"@context": []any{
		"https://w3id.org/ro/crate/1.1/context",
		obj{
			"publicationYear":     "http://datacite.org/schema/kernel-4#publicationYear",
			"resourceTypeGeneral": "http://datacite.org/schema/kernel-4#resourceTypeGeneral",
		},
	}, "@graph": graph}); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

func description(opts Options, runs []RunResult) string {
	if opts.Description != "" {
		return opts.Description
	}
	anon := ""
	if opts.Anonymize {
		anon = " The lab's identifiers (MAC addresses, lab IP addresses, the DHCP hostname) are replaced by pseudonyms."
	}
	return fmt.Sprintf("Network traffic of %d freshly installed operating system run(s) recorded by firstboot in an isolated lab with simulated internet services: full and per-step pcapng captures, analyses (analysis.json, Zeek-style logs), scenario and run manifests.%s", len(runs), anon)
}

func firstNonEmpty(s ...string) string {
	for _, x := range s {
		if x != "" {
			return x
		}
	}
	return ""
}

func mediaType(p string) string {
	switch strings.ToLower(path.Ext(p)) {
	case ".pcapng":
		return "application/x-pcapng"
	case ".pcap":
		return "application/vnd.tcpdump.pcap"
	case ".json":
		return "application/json"
	case ".jsonl":
		return "application/jsonl"
	case ".md":
		return "text/markdown"
	case ".html":
		return "text/html"
	case ".png":
		return "image/png"
	case ".yaml", ".yml":
		return "application/yaml"
	case ".log":
		if strings.HasSuffix(p, "console.log") || strings.HasSuffix(p, "firstboot.log") {
			return "text/plain"
		}
		return "text/tab-separated-values"
	}
	return "application/octet-stream"
}
