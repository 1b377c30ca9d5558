package s3

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/minio/minio-go/v7"

	"github.com/rtrain/rtrain/checkpoint/storage"
)

var _ storage.Locker = (*Storage)(nil)

// lockTries bounds how often Lock goes round when the lock object changes
// between its requests: each time another holder took or released it.
const lockTries = 5

// Lock implements storage.Locker with a lease object at key: the holder
// as JSON, with the time it lapses. It is created with If-None-Match: *,
// so of two writers that try at once exactly one succeeds; renewed, and a
// lapsed one taken over, with If-Match on the ETag last seen, so a lease
// changes hands only from the version that was read. S3 (since 2024),
// MinIO and most compatible servers honour both conditions; a server
// that ignores them makes the lock advisory at best.
func (s *Storage) Lock(ctx context.Context, key string, h storage.Holder, ttl time.Duration) (storage.Lock, error) {
	if err := s.checkKey(key); err != nil {
		return nil, err
	}
	if ttl <= 0 {
		return nil, fmt.Errorf("s3: lock %s: ttl %s: want a positive duration", s.URI(key), ttl)
	}
	h.Since = time.Now()
	l := &s3Lock{s: s, key: key, ttl: ttl, holder: h}
	var last storage.Holder
	for range lockTries {
		err := l.put(ctx, "")
		if err == nil {
			return l, nil
		}
		if !conflict(err) {
			return nil, err
		}
		cur, etag, err := s.readLease(ctx, key)
		switch {
		case errors.Is(err, storage.ErrNotFound):
			continue // released just now
		case err != nil:
			return nil, err
		case cur.Same(h):
			// A create that the server applied and whose answer was lost
			// came back as a conflict when minio-go sent it again.
			l.etag, l.holder = etag, cur
			return l, nil
		case h.Successor && h.ID != "" && cur.ID == h.ID:
			// Taken over from its last holder, the same job, below.
		case time.Now().Before(cur.Expires):
			return nil, &storage.LockedError{URI: s.URI(key), Holder: cur}
		}
		// Lapsed: its holder is gone or cut off. Take it over from that
		// very version, so that of two takers only one wins.
		last = cur
		err = l.put(ctx, etag)
		if err == nil {
			return l, nil
		}
		if !conflict(err) && !errors.Is(err, storage.ErrNotFound) {
			return nil, err
		}
	}
	return nil, &storage.LockedError{URI: s.URI(key), Holder: last}
}

// readLease reads the lease object at key and its ETag. An object that is
// not a lease (written by hand, torn by a server without atomic puts) is
// a lease that has lapsed: nobody renews it.
func (s *Storage) readLease(ctx context.Context, key string) (storage.Holder, string, error) {
	obj, err := s.client.GetObject(ctx, s.bucket, s.object(key), minio.GetObjectOptions{})
	if err != nil {
		return storage.Holder{}, "", s.convert("get", key, err)
	}
	defer obj.Close()
	info, err := obj.Stat()
	if err != nil {
		return storage.Holder{}, "", s.convert("get", key, err)
	}
	data, err := io.ReadAll(obj)
	if err != nil {
		return storage.Holder{}, "", s.convert("get", key, err)
	}
	var h storage.Holder
	if err := json.Unmarshal(data, &h); err != nil || h.Expires.IsZero() {
		h = storage.Holder{Expires: time.Unix(1, 0)}
	}
	return h, info.ETag, nil
}

// conflict reports whether err is a failed If-Match or If-None-Match, or
// S3's 409 for two conditional writes of one key at once.
func conflict(err error) bool {
	var resp minio.ErrorResponse
	return errors.As(err, &resp) && (resp.StatusCode == http.StatusPreconditionFailed ||
		resp.Code == minio.PreconditionFailed || resp.Code == "ConditionalRequestConflict")
}

type s3Lock struct {
	s   *Storage
	key string
	ttl time.Duration

	// Renew and Unlock are called one at a time (package checkpoint's
	// lease does), so these need no lock.
	holder storage.Holder
	etag   string // of the lease object as last written
}

// put writes the lease with a fresh expiry: a create when ifMatch is
// empty, else a replacement of that version only. The expiry is set
// before the request goes, so it never runs later than the holder
// believes.
func (l *s3Lock) put(ctx context.Context, ifMatch string) error {
	h := l.holder
	h.Expires = time.Now().Add(l.ttl)
	data, err := json.Marshal(h)
	if err != nil {
		return fmt.Errorf("s3: lock %s: %w", l.s.URI(l.key), err)
	}
	opts := minio.PutObjectOptions{ContentType: "application/json"}
	if ifMatch == "" {
		opts.SetMatchETagExcept("*")
	} else {
		opts.SetMatchETag(ifMatch)
	}
	info, err := l.s.client.PutObject(ctx, l.s.bucket, l.s.object(l.key), bytes.NewReader(data), int64(len(data)), opts)
	if err != nil {
		if conflict(err) {
			return err // raw, for the caller to tell apart
		}
		return l.s.convert("lock", l.key, err)
	}
	l.holder, l.etag = h, info.ETag
	return nil
}

// Renew implements storage.Lock.
func (l *s3Lock) Renew(ctx context.Context) error {
	err := l.put(ctx, l.etag)
	if err == nil {
		return nil
	}
	if !conflict(err) && !errors.Is(err, storage.ErrNotFound) {
		return err
	}
	cur, etag, rerr := l.s.readLease(ctx, l.key)
	switch {
	case rerr == nil && cur.Same(l.holder):
		// Our renewal landed, its answer was lost and minio-go's second
		// try found the version it had made.
		l.holder, l.etag = cur, etag
		return nil
	case rerr == nil:
		return fmt.Errorf("s3: lock %s is now held by %s: %w", l.s.URI(l.key), cur, storage.ErrLockLost)
	case errors.Is(rerr, storage.ErrNotFound):
		return fmt.Errorf("s3: lock %s was removed: %w", l.s.URI(l.key), storage.ErrLockLost)
	default:
		return rerr
	}
}

// Expires implements storage.Lock.
func (l *s3Lock) Expires() time.Time { return l.holder.Expires }

// Unlock implements storage.Lock. S3 has no conditional delete that every
// server honours, so it checks the lease is still this one first: one
// taken over stays with its new holder. (Between the check and the delete
// it can change hands only if it lapsed, which a holder that renews and
// then unlocks does not let happen.)
func (l *s3Lock) Unlock(ctx context.Context) error {
	cur, _, err := l.s.readLease(ctx, l.key)
	switch {
	case errors.Is(err, storage.ErrNotFound):
		return nil
	case err != nil:
		return err
	case !cur.Same(l.holder):
		return nil
	}
	if err := l.s.client.RemoveObject(ctx, l.s.bucket, l.s.object(l.key), minio.RemoveObjectOptions{}); err != nil {
		return l.s.convert("unlock", l.key, err)
	}
	return nil
}
