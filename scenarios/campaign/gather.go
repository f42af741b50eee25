package campaign

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/riverqueue/river/rivertype"

	"github.com/firstboot/firstboot/results/publish"
)

// PublishRun uploads a run directory to base/rel with firstboot publish's
// resumable, verified upload, and returns each file's sha256.
func PublishRun(ctx context.Context, dir, base, rel string) (map[string]string, error) {
	res, err := publish.Publish(ctx, dir, publish.Options{To: strings.TrimRight(base, "/") + "/" + filepath.ToSlash(rel)})
	if err != nil {
		return nil, err
	}
	out := map[string]string{}
	for _, f := range res.Files {
		out[f.Path] = f.SHA256
	}
	return out, nil
}

// gathered are the files of a published run the campaign's report and
// export read; the rest (the capture, logs) stays in the store.
var gathered = []string{"manifest.json", "analysis.json", "report.md", "report.html", "scenario.yaml"}

// Gather fetches, into the execution's runs directory, what the report
// needs of each finished run that a worker published rather than wrote to
// a shared directory, verified against the sha256 the worker recorded. Runs
// already present are left alone.
func Gather(ctx context.Context, a CampaignArgs, rows []*rivertype.JobRow) error {
	for _, r := range rows {
		if r.State != rivertype.JobStateCompleted {
			continue
		}
		var out Outcome
		if json.Unmarshal(r.Output(), &out) != nil || out.Published == "" || out.RunID == "" {
			continue
		}
		dir := filepath.Join(a.Dir(), "runs", filepath.Base(out.Dir))
		if _, err := os.Stat(filepath.Join(dir, "analysis.json")); err == nil {
			continue
		}
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return err
		}
		for _, f := range gathered {
			sum, ok := out.Files[f]
			if !ok {
				continue
			}
			u := strings.TrimRight(out.Published, "/") + "/" + filepath.ToSlash(out.Dir) + "/" + f
			if _, err := publish.Fetch(ctx, u, sum, filepath.Join(dir, f), publish.Retry{}, nil); err != nil {
				return fmt.Errorf("gathering run %s from %s: %w", out.RunID, out.Published, err)
			}
		}
	}
	return nil
}
