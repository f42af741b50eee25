package report

import (
	"bytes"
	_ "embed"
	"encoding/base64"
	"fmt"
	"html/template"
)

//go:embed report.html.tmpl
var htmlSource string

// The template is parsed per call (cheap next to rendering), so the package
// keeps no mutable state.
func parseHTML() (*template.Template, error) {
	return template.New("report").Funcs(template.FuncMap{
		"clean": clean,
		"check": check,
		// pngURI embeds a screenshot; only bytes that start like a PNG get here
		// (build checks), so the data: URI can be trusted as an image source.
		"pngURI": func(data []byte) template.URL {
			return template.URL("data:image/png;base64," + base64.StdEncoding.EncodeToString(data))
		},
	}).Parse(htmlSource)
}

// HTML renders the report as one self-contained HTML page: inline CSS, an
// inline SVG timeline, screenshots as data: URIs, and a Content-Security-Policy
// that forbids the page to load anything from anywhere.
func HTML(in *Input) ([]byte, error) {
	p, err := build(in)
	if err != nil {
		return nil, err
	}
	t, err := parseHTML()
	if err != nil {
		return nil, fmt.Errorf("report: HTML template: %w", err)
	}
	var buf bytes.Buffer
	if err := t.Execute(&buf, p); err != nil {
		return nil, fmt.Errorf("report: rendering HTML: %w", err)
	}
	return buf.Bytes(), nil
}
