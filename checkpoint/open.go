package checkpoint

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"

	"github.com/rtrain/rtrain/checkpoint/file"
	"github.com/rtrain/rtrain/checkpoint/s3"
	"github.com/rtrain/rtrain/checkpoint/storage"
)

// DefaultLocation is where checkpoints go when the user names no storage.
const DefaultLocation = "~/rtrain_results"

// Storage is the backend interface; see package checkpoint/storage.
type Storage = storage.Storage

// Object is one stored object: a key and its size.
type Object = storage.Object

// S3Options override the environment's S3 settings (endpoint, region,
// credentials); see package checkpoint/s3.
type S3Options = s3.Options

var (
	// ErrNotFound is returned (wrapped) for a missing object or checkpoint.
	ErrNotFound = storage.ErrNotFound
	// ErrBucketNotFound is returned (wrapped) by Open when the S3 bucket
	// does not exist.
	ErrBucketNotFound = s3.ErrBucketNotFound
	// ErrCredentials is returned (wrapped) by Open when the S3 server
	// refuses the credentials.
	ErrCredentials = s3.ErrCredentials
	// ErrExists is returned (wrapped) by Commit for an index that is
	// already committed.
	ErrExists = errors.New("checkpoint already exists")
	// ErrCorrupt is returned (wrapped) by Download when a stored file does
	// not match its manifest entry.
	ErrCorrupt = errors.New("stored file does not match the manifest")
)

// S3CredentialSource says where the S3 credentials of opts and the
// environment come from, without the network; "" when no local source has
// any. See s3.CredentialSource.
func S3CredentialSource(opts S3Options) string { return s3.CredentialSource(opts) }

const locationHelp = "use s3://BUCKET/PREFIX or a local directory"

// urlScheme is what can stand before "://" in a storage URL.
var urlScheme = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9+.-]*$`)

// Open returns the Storage a location names: "s3://bucket/prefix" (the
// prefix may be empty) or a local directory, absolute, relative or
// starting with "~/", which is created if missing. For S3 it checks at
// once that the bucket exists and the credentials work. The returned
// Storage may hold network connections; when it implements io.Closer,
// close it when done.
func Open(ctx context.Context, location string, opts S3Options) (Storage, error) {
	if strings.TrimSpace(location) == "" {
		return nil, fmt.Errorf("checkpoint: no storage location given; %s", locationHelp)
	}
	scheme, rest, isURL := strings.Cut(location, "://")
	if !isURL {
		// "s3:/bucket" or "s3:bucket" is a mistyped URL, never a local
		// directory named "s3:": a run would quietly stay on this disk.
		if name, _, ok := strings.Cut(location, ":"); ok && urlScheme.MatchString(name) && !strings.Contains(name, "/") {
			return nil, fmt.Errorf("checkpoint: storage %q looks like a URL missing its //; use %s://... (s3://BUCKET/PREFIX), or ./%s for a local directory", location, name, location)
		}
		return openLocal(location)
	}
	switch strings.ToLower(scheme) {
	case "s3":
		bucket, prefix, _ := strings.Cut(rest, "/")
		if bucket == "" {
			return nil, fmt.Errorf("checkpoint: storage %q names no bucket; use s3://BUCKET/PREFIX", location)
		}
		s, err := s3.New(ctx, bucket, prefix, opts)
		if err != nil {
			return nil, err // already one line naming bucket and endpoint
		}
		return s, nil
	case "file":
		u, err := url.Parse(location)
		if err != nil || (u.Host != "" && u.Host != "localhost") || u.Path == "" {
			return nil, fmt.Errorf("checkpoint: storage %q is not a file URL; use file:///ABSOLUTE/PATH or just the path", location)
		}
		return openLocal(u.Path)
	default:
		return nil, fmt.Errorf("checkpoint: storage %q is not supported; %s", location, locationHelp)
	}
}

func openLocal(path string) (Storage, error) {
	if path == "~" || strings.HasPrefix(path, "~/") {
		home, err := os.UserHomeDir()
		if err != nil {
			return nil, fmt.Errorf("checkpoint: storage %q: cannot find the home directory (%w); give an absolute path", path, err)
		}
		path = filepath.Join(home, path[1:])
	} else if strings.HasPrefix(path, "~") {
		return nil, fmt.Errorf("checkpoint: storage %q: only ~/ is expanded, not ~user; give an absolute path", path)
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("checkpoint: storage %q: %w", path, err)
	}
	s, err := file.New(abs)
	if err != nil {
		return nil, err
	}
	return s, nil
}
