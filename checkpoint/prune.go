package checkpoint

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"sort"
)

// Retention says which checkpoints Prune keeps.
type Retention struct {
	// Keep is how many committed checkpoints to keep. Zero keeps all.
	Keep int
	// Score names the metric that ranks checkpoints. Empty ranks by
	// recency: the highest indices are kept. Checkpoints without the
	// metric, or with a value that is not a finite number, rank last.
	Score string
	// Order is "max" (a higher score is better) or "min". Empty means
	// "max". It matters only with Score.
	Order string
}

// Prune deletes the committed checkpoints that p does not keep, and the
// partial (manifest-less) directories whose index is below the latest
// committed one: those are leftovers of failed attempts, while a partial
// directory above it may be a Commit in progress. The latest committed
// checkpoint is never deleted, whatever its score, since it is the one a
// resumed run starts from; so Keep: 1 with a Score may keep two.
//
// Each checkpoint's manifest is deleted before its files, so a Prune that
// fails half-way leaves a partial directory, never a listed checkpoint
// with missing files. It returns the indices it deleted, committed and
// partial, in ascending order, also when it fails part-way. A Run that took
// its lease (Lock) deletes nothing without it.
func (r *Run) Prune(ctx context.Context, p Retention) (deleted []int, err error) {
	if err := r.LockErr(); err != nil {
		return nil, fmt.Errorf("checkpoint: prune %s: %w", r.URI(), err)
	}
	if p.Keep < 0 {
		return nil, fmt.Errorf("checkpoint: prune: negative Keep %d", p.Keep)
	}
	better, err := ranking(p)
	if err != nil {
		return nil, err
	}
	dirs, err := r.scan(ctx)
	if err != nil {
		return nil, err
	}
	committed, err := r.readManifests(ctx, dirs)
	if err != nil {
		return nil, err
	}
	if len(committed) == 0 {
		return nil, nil // nothing to rank against; partial dirs may be in progress
	}
	latest := committed[len(committed)-1].Index

	var drop []int
	if p.Keep > 0 && len(committed) > p.Keep {
		ranked := append([]Manifest(nil), committed...)
		sort.SliceStable(ranked, func(i, j int) bool { return better(ranked[i], ranked[j]) })
		for _, m := range ranked[p.Keep:] {
			if m.Index != latest {
				drop = append(drop, m.Index)
			}
		}
	}
	isCommitted := make(map[int]bool, len(committed))
	for _, m := range committed {
		isCommitted[m.Index] = true
	}
	for i := range dirs {
		if !isCommitted[i] && i < latest {
			drop = append(drop, i)
		}
	}
	sort.Ints(drop)

	for _, i := range drop {
		if err := r.LockErr(); err != nil {
			return deleted, fmt.Errorf("checkpoint: prune %s: %w", r.URI(), err)
		}
		if err := r.deleteDir(ctx, dirs[i]); err != nil {
			return deleted, err
		}
		r.log().Debug("pruned checkpoint", "uri", r.storage.URI(r.dirKey(i)), "committed", isCommitted[i])
		deleted = append(deleted, i)
	}
	return deleted, nil
}

// deleteDir removes a checkpoint directory, its manifest first.
func (r *Run) deleteDir(ctx context.Context, d *dirState) error {
	mkey := r.manifestKey(d.index)
	if err := r.storage.Delete(ctx, mkey); err != nil {
		return fmt.Errorf("checkpoint: prune %s: %w", r.storage.URI(r.dirKey(d.index)), err)
	}
	var rest []string
	for _, k := range d.keys {
		if k != mkey {
			rest = append(rest, k)
		}
	}
	if err := r.storage.Delete(ctx, rest...); err != nil {
		return fmt.Errorf("checkpoint: prune %s: %w", r.storage.URI(r.dirKey(d.index)), err)
	}
	return nil
}

// ranking returns the order Prune keeps checkpoints in: better(a, b)
// says whether a is kept before b.
func ranking(p Retention) (better func(a, b Manifest) bool, err error) {
	newer := func(a, b Manifest) bool { return a.Index > b.Index }
	if p.Score == "" {
		return newer, nil
	}
	var higher bool
	switch p.Order {
	case "", "max":
		higher = true
	case "min":
		higher = false
	default:
		return nil, fmt.Errorf("checkpoint: prune: order %q: want \"max\" or \"min\"", p.Order)
	}
	return func(a, b Manifest) bool {
		sa, oka := score(a, p.Score)
		sb, okb := score(b, p.Score)
		switch {
		case oka != okb:
			return oka
		case !oka || sa == sb:
			return newer(a, b)
		case higher:
			return sa > sb
		default:
			return sa < sb
		}
	}, nil
}

// score is the metric's value in m, if it is a finite number.
func score(m Manifest, metric string) (float64, bool) { return MetricNumber(m.Metrics[metric]) }

// MetricNumber is a reported metric's value as a float, for the numbers
// JSON and Python make (json.Number too); ok is false for anything else
// (strings, booleans, NaN, infinities). Checkpoints are ranked by it, and
// a sweep judges its trials by it.
func MetricNumber(v any) (float64, bool) {
	var f float64
	switch n := v.(type) {
	case json.Number:
		var err error
		if f, err = n.Float64(); err != nil {
			return 0, false
		}
	case float64:
		f = n
	case float32:
		f = float64(n)
	case int:
		f = float64(n)
	case int64:
		f = float64(n)
	default:
		return 0, false
	}
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return 0, false
	}
	return f, true
}

// Best returns the checkpoints of ms that have p.Score as a finite number,
// best first as p.Order says (ties: the newer first). Without a Score it
// returns nil: there is nothing to rank by.
func Best(ms []Manifest, p Retention) ([]Manifest, error) {
	if p.Score == "" {
		return nil, nil
	}
	better, err := ranking(p)
	if err != nil {
		return nil, err
	}
	var scored []Manifest
	for _, m := range ms {
		if _, ok := score(m, p.Score); ok {
			scored = append(scored, m)
		}
	}
	sort.SliceStable(scored, func(i, j int) bool { return better(scored[i], scored[j]) })
	return scored, nil
}

// Score is m's value of metric, if it is a finite number.
func Score(m Manifest, metric string) (float64, bool) { return score(m, metric) }

// Delete removes checkpoint index, committed or partial: its manifest
// first, so it stops being a checkpoint before any file goes. A missing
// index is ErrNotFound. A Run that took its lease (Lock) deletes nothing
// without it.
func (r *Run) Delete(ctx context.Context, index int) error {
	if err := r.LockErr(); err != nil {
		return fmt.Errorf("checkpoint: delete %s: %w", r.storage.URI(r.dirKey(index)), err)
	}
	dirs, err := r.scan(ctx)
	if err != nil {
		return err
	}
	d := dirs[index]
	if d == nil {
		return fmt.Errorf("checkpoint: %s: %w", r.storage.URI(r.dirKey(index)), ErrNotFound)
	}
	return r.deleteDir(ctx, d)
}
