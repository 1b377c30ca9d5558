package checkpoint

import (
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math"
	"path"
	"strconv"
	"strings"
	"time"

	"github.com/rtrain/rtrain/checkpoint/storage"
)

// ManifestName is the manifest's file name inside a checkpoint directory.
// A training script's top-level file of that name is refused.
const ManifestName = ".rtrain_manifest.json"

// dirPrefix and indexWidth make "checkpoint_000042"; wider indices just
// take more digits.
const (
	dirPrefix  = "checkpoint_"
	indexWidth = 6
)

// Manifest describes one committed checkpoint. It is stored as JSON next
// to the checkpoint's files.
type Manifest struct {
	// Index is the checkpoint's number within its run.
	Index int `json:"index"`
	// Metrics are the metrics reported with the checkpoint, as JSON
	// decodes them (numbers are float64). Non-finite floats, which JSON
	// cannot hold, are stored as the strings "NaN", "+Inf" and "-Inf".
	Metrics map[string]any `json:"metrics"`
	// Time is when the checkpoint was committed, in UTC.
	Time time.Time `json:"time"`
	// WorldSize is the number of workers that trained it.
	WorldSize int `json:"world_size"`
	// Files are the checkpoint's files, sorted by path.
	Files []File `json:"files"`
	// URI is where the checkpoint's directory is, e.g.
	// "s3://bucket/prefix/run/checkpoint_000001". It is not stored.
	URI string `json:"-"`
}

// File is one file of a checkpoint.
type File struct {
	// Path is relative to the checkpoint directory, slash-separated.
	Path string `json:"path"`
	// Size is in bytes.
	Size int64 `json:"size"`
	// SHA256 is the hex SHA-256 of the content.
	SHA256 string `json:"sha256"`
}

// Size is the total size of the checkpoint's files in bytes.
func (m Manifest) Size() int64 {
	var n int64
	for _, f := range m.Files {
		n += f.Size
	}
	return n
}

// dirName is the directory name of a checkpoint index.
func dirName(index int) string {
	return fmt.Sprintf("%s%0*d", dirPrefix, indexWidth, index)
}

// parseDirName is dirName's inverse; ok is false for any other name.
func parseDirName(name string) (index int, ok bool) {
	digits, found := strings.CutPrefix(name, dirPrefix)
	if !found || len(digits) < indexWidth {
		return 0, false
	}
	for _, c := range digits {
		if c < '0' || c > '9' {
			return 0, false
		}
	}
	index, err := strconv.Atoi(digits)
	if err != nil || dirName(index) != name {
		return 0, false // e.g. "checkpoint_0000001": not a name we write
	}
	return index, true
}

// decodeManifest parses and checks a stored manifest: a manifest that
// does not describe checkpoint index, or names a path that could escape
// the download directory, does not count.
func decodeManifest(data []byte, index int) (Manifest, error) {
	var m Manifest
	if err := json.Unmarshal(data, &m); err != nil {
		return Manifest{}, fmt.Errorf("parse manifest: %w", err)
	}
	if m.Index != index {
		return Manifest{}, fmt.Errorf("manifest says index %d, its directory %s", m.Index, dirName(index))
	}
	if err := checkFiles(m.Files); err != nil {
		return Manifest{}, err
	}
	return m, nil
}

func checkFiles(files []File) error {
	seen := make(map[string]bool, len(files))
	for _, f := range files {
		if err := storage.CheckKey(f.Path); err != nil {
			return fmt.Errorf("manifest file: %w", err)
		}
		if f.Path == ManifestName {
			return fmt.Errorf("manifest lists itself")
		}
		if seen[f.Path] {
			return fmt.Errorf("manifest lists %s twice", f.Path)
		}
		seen[f.Path] = true
		if f.Size < 0 {
			return fmt.Errorf("manifest file %s: negative size", f.Path)
		}
		if b, err := hex.DecodeString(f.SHA256); err != nil || len(b) != 32 {
			return fmt.Errorf("manifest file %s: bad sha256 %q", f.Path, f.SHA256)
		}
	}
	return nil
}

// jsonMetrics copies metrics into something encoding/json accepts:
// non-finite floats become strings, and it fails early (before any upload)
// on values JSON cannot hold.
func jsonMetrics(metrics map[string]any) (map[string]any, error) {
	out := make(map[string]any, len(metrics))
	for k, v := range metrics {
		out[k] = finite(v)
	}
	if _, err := json.Marshal(out); err != nil {
		return nil, fmt.Errorf("metrics are not JSON: %w", err)
	}
	return out, nil
}

func finite(v any) any {
	var f float64
	switch x := v.(type) {
	case float64:
		f = x
	case float32:
		f = float64(x)
	case map[string]any:
		out := make(map[string]any, len(x))
		for k, e := range x {
			out[k] = finite(e)
		}
		return out
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = finite(e)
		}
		return out
	default:
		return v
	}
	switch {
	case math.IsNaN(f):
		return "NaN"
	case math.IsInf(f, 1):
		return "+Inf"
	case math.IsInf(f, -1):
		return "-Inf"
	}
	return v
}

// joinKey joins key elements with slashes.
func joinKey(elem ...string) string { return path.Join(elem...) }
