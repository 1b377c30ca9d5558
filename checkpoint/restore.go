package checkpoint

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

// Restored is the checkpoint Restore downloaded.
type Restored struct {
	// Manifest is the checkpoint downloaded.
	Manifest Manifest
	// Dir is where its files are.
	Dir string
	// Skipped are the newer checkpoints passed over because they are
	// damaged, newest first.
	Skipped []Damaged
}

// Damaged is a committed checkpoint whose stored files do not match its
// manifest, or are missing.
type Damaged struct {
	Manifest Manifest
	// Err says what is wrong; it wraps ErrCorrupt or ErrNotFound.
	Err error
}

// Restore downloads checkpoint m to start a run from, into
// dst/checkpoint_NNNNNN (replaced whole). When m turns out damaged (a file
// that does not match its manifest, or is missing) it tries the committed
// checkpoints before m, newest first, and downloads the first intact one:
// a run resumes from an older checkpoint rather than not at all. Partial
// checkpoints are never candidates, and nothing stored is changed or
// deleted: a damaged checkpoint stays for a person to look at. Any other
// failure (storage unreachable, ctx) ends the search, since it says
// nothing about the checkpoint. With no intact checkpoint at all the
// error wraps ErrCorrupt.
func (r *Run) Restore(ctx context.Context, m Manifest, dst string) (*Restored, error) {
	res := &Restored{}
	candidates := []Manifest{m}
	listed := false
	for i := 0; i < len(candidates); i++ {
		c := candidates[i]
		dir := filepath.Join(dst, dirName(c.Index))
		if err := os.RemoveAll(dir); err != nil {
			return nil, fmt.Errorf("checkpoint: restore %s: %w", r.URI(), err)
		}
		err := r.Download(ctx, c, dir)
		if err == nil {
			res.Manifest, res.Dir = c, dir
			return res, nil
		}
		// What a damaged checkpoint left must not mix with the next.
		_ = os.RemoveAll(dir)
		if ctx.Err() != nil || !(errors.Is(err, ErrCorrupt) || errors.Is(err, ErrNotFound)) {
			return nil, err
		}
		r.log().Debug("checkpoint is damaged; trying the one before", "uri", c.URI, "err", err)
		res.Skipped = append(res.Skipped, Damaged{Manifest: c, Err: err})
		if !listed {
			ms, err := r.List(ctx)
			if err != nil {
				return nil, err
			}
			for j := len(ms) - 1; j >= 0; j-- {
				if ms[j].Index < m.Index {
					candidates = append(candidates, ms[j])
				}
			}
			listed = true
		}
	}
	return nil, fmt.Errorf("checkpoint: restore %s: every committed checkpoint up to %s is damaged (%w); the newest: %w",
		r.URI(), dirName(m.Index), ErrCorrupt, res.Skipped[0].Err)
}
