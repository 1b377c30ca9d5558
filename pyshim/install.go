package pyshim

import (
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
)

// The subpackages are named level by level: a pattern naming a directory
// would also embed the __pycache__ that running the tests leaves there.
//
//go:embed rtrain/*.py rtrain/tune/*.py rtrain/tune/*/*.py rtrain/tune/*/*/*.py sitecustomize.py
var files embed.FS

// version identifies the embedded sources; Install's directory is named by it
// so a new rtrain never runs an old shim left on disk. It covers every
// embedded file, whatever the patterns above name.
var version = func() string {
	h := sha256.New()
	var names []string
	_ = fs.WalkDir(files, ".", func(path string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			names = append(names, path)
		}
		return err
	})
	sort.Strings(names)
	for _, n := range names {
		b, _ := files.ReadFile(n)
		fmt.Fprintf(h, "%s\x00%d\x00", n, len(b))
		h.Write(b)
	}
	return hex.EncodeToString(h.Sum(nil))[:16]
}()

// Install makes the package available under cacheDir and returns the
// directory to put on PYTHONPATH. It writes only when this version is not
// there yet, and atomically (a temporary directory renamed into place), so
// concurrent jobs never see a half-written package.
func Install(cacheDir string) (string, error) {
	dir := filepath.Join(cacheDir, "pyshim-"+version)
	if _, err := os.Stat(filepath.Join(dir, "rtrain", "__init__.py")); err == nil {
		return dir, nil
	}
	if err := os.MkdirAll(cacheDir, 0o755); err != nil {
		return "", fmt.Errorf("pyshim: install: %w", err)
	}
	tmp, err := os.MkdirTemp(cacheDir, ".pyshim-")
	if err != nil {
		return "", fmt.Errorf("pyshim: install: %w", err)
	}
	defer os.RemoveAll(tmp)
	if err := os.CopyFS(tmp, files); err != nil {
		return "", fmt.Errorf("pyshim: install: %w", err)
	}
	if err := os.Chmod(tmp, 0o755); err != nil {
		return "", fmt.Errorf("pyshim: install: %w", err)
	}
	if err := os.Rename(tmp, dir); err != nil {
		// Another job installed the same version first: use that one.
		if _, statErr := os.Stat(filepath.Join(dir, "rtrain", "__init__.py")); statErr == nil {
			return dir, nil
		}
		return "", fmt.Errorf("pyshim: install: %w", err)
	}
	return dir, nil
}

// CacheDir is where Install puts the package by default: the user's cache
// directory, else the system's temporary one.
func CacheDir() string {
	if d, err := os.UserCacheDir(); err == nil {
		return filepath.Join(d, "rtrain")
	}
	return filepath.Join(os.TempDir(), "rtrain-cache")
}
