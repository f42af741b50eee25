package analyzer

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"os"
	"path/filepath"
)

// tlsRows remembers which rows of a streamed TSV http.log are decrypted
// requests, once there is one: their header was written before any was
// known, so addColumn adds the tls column when the log is complete. A
// capture without secrets never gets here (rows stays nil).
type tlsRows struct {
	any  bool
	n    int
	rows []bool
}

func (t *tlsRows) add(tls bool) {
	if tls && !t.any {
		t.any, t.rows = true, make([]bool, t.n, t.n+64)
	}
	if t.any {
		t.rows = append(t.rows, tls)
	}
	t.n++
}

// addColumn rewrites the complete TSV log f with the tls column (see
// httpColsTLS) into a new file beside it, removes f and returns the new
// file, open.
func (t *tlsRows) addColumn(f *os.File) (*os.File, error) {
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return f, err
	}
	out, err := os.CreateTemp(filepath.Dir(f.Name()), ".http.log.*")
	if err != nil {
		return f, err
	}
	r := bufio.NewReaderSize(f, 256<<10)
	w := bufio.NewWriterSize(out, 256<<10)
	row := 0
	for {
		line, err := r.ReadBytes('\n')
		if len(line) > 0 {
			body := bytes.TrimSuffix(line, []byte{'\n'})
			switch {
			case bytes.HasPrefix(body, []byte("#fields\t")):
				fmt.Fprintf(w, "%s\ttls\n", body)
			case bytes.HasPrefix(body, []byte("#types\t")):
				fmt.Fprintf(w, "%s\tbool\n", body)
			case len(body) > 0 && body[0] == '#':
				w.Write(line)
			default:
				v := "F"
				if row < len(t.rows) && t.rows[row] {
					v = "T"
				}
				row++
				fmt.Fprintf(w, "%s\t%s\n", body, v)
			}
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			out.Close()
			os.Remove(out.Name())
			return f, err
		}
	}
	if err := w.Flush(); err != nil {
		out.Close()
		os.Remove(out.Name())
		return f, err
	}
	f.Close()
	os.Remove(f.Name())
	return out, nil
}
