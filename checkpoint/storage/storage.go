// Package storage is the contract between package checkpoint and its
// backends (checkpoint/file, checkpoint/s3): a flat store of objects under
// slash-separated keys. It lives apart from checkpoint so that checkpoint
// can open either backend while the backends implement its interface
// without an import cycle; checkpoint re-exports these names.
package storage

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
)

// ErrNotFound is returned (wrapped) when a key has no object.
var ErrNotFound = errors.New("not found")

// Object is one stored object.
type Object struct {
	// Key is relative to the storage root, slash-separated.
	Key string
	// Size is in bytes.
	Size int64
}

// Storage is a backend. Keys are slash-separated and relative to the
// storage root (see CheckKey). Every write is atomic per object: a reader
// sees the old object, the new one or none, never a torn one. Nothing is
// atomic across objects; package checkpoint builds that from a manifest
// written last.
type Storage interface {
	// PutFile stores the content of the local file at localPath under key.
	// It returns only once the object is durable.
	PutFile(ctx context.Context, key, localPath string) error
	// GetFile writes the object at key to localPath, creating its parent
	// directories. localPath is replaced whole: a failed download leaves
	// no partial file under that name.
	GetFile(ctx context.Context, key, localPath string) error
	// PutBytes stores data under key; for small objects such as manifests.
	PutBytes(ctx context.Context, key string, data []byte) error
	// GetBytes returns the object at key; for small objects.
	GetBytes(ctx context.Context, key string) ([]byte, error)
	// Stat describes the object at key.
	Stat(ctx context.Context, key string) (Object, error)
	// List returns every object whose key starts with prefix, sorted by
	// key. The prefix is a plain string prefix, as in S3: "run/ck" matches
	// "run/ckpt/a". An empty prefix lists everything.
	List(ctx context.Context, prefix string) ([]Object, error)
	// Delete removes the objects; a key that has none is not an error.
	Delete(ctx context.Context, keys ...string) error
	// URI says where key is, for people: "s3://bucket/prefix/key" or
	// "/abs/root/key". The empty key names the storage root.
	URI(key string) string
}

// CheckKey reports whether key is a valid object key: slash-separated,
// relative, without empty, "." or ".." elements, so that no key can name a
// path outside the storage root on any backend.
func CheckKey(key string) error {
	if key == "" || key == "." || !fs.ValidPath(key) {
		return fmt.Errorf("invalid key %q: want a relative slash-separated path without empty, \".\" or \"..\" elements", key)
	}
	return nil
}
