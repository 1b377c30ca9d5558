// Package s3 is the checkpoint storage backend for Amazon S3 and
// S3-compatible stores (MinIO, Ceph, R2, GCS's XML API), built on minio-go.
//
// Endpoint, region and credentials are found the way the AWS tools find
// them, and Options overrides each: AWS_ENDPOINT_URL_S3, then
// AWS_ENDPOINT_URL (an http:// endpoint is used without TLS); AWS_REGION,
// then AWS_DEFAULT_REGION; AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and
// AWS_SESSION_TOKEN, then the profile AWS_PROFILE (or "default") of
// AWS_SHARED_CREDENTIALS_FILE (or ~/.aws/credentials), then an EC2/ECS/EKS
// role unless AWS_EC2_METADATA_DISABLED=true. Custom endpoints are
// addressed path-style (http://host/bucket/key), which every S3-compatible
// server understands.
package s3

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
	"github.com/minio/minio-go/v7/pkg/s3utils"
	"golang.org/x/sync/errgroup"

	"github.com/rtrain/rtrain/checkpoint/storage"
)

const (
	// defaultEndpoint is AWS's global S3 endpoint; minio-go moves to the
	// bucket's regional endpoint by itself.
	defaultEndpoint = "https://s3.amazonaws.com"
	// partSize is the multipart part size for uploads and the range size
	// for downloads. Files up to one part go in a single request.
	partSize = 16 << 20
	// partThreads is how many parts of one file move at once.
	partThreads = 4
	// tempPrefix names partial downloads, like file.TempPrefix.
	tempPrefix = ".rtrain-tmp-"
)

// ErrBucketNotFound is returned (wrapped) when the bucket does not exist.
var ErrBucketNotFound = errors.New("bucket not found")

// ErrCredentials is returned (wrapped) when the server refuses the
// credentials, or grants them no access.
var ErrCredentials = errors.New("credentials refused")

// Options override what the environment says. Every zero value means
// "as the environment says"; see the package comment for the order.
type Options struct {
	// Endpoint is the server URL, e.g. "http://127.0.0.1:9000". A bare
	// host ("minio.lan:9000") means https.
	Endpoint string
	// Region is the bucket's region. Empty with no AWS_REGION: asked of
	// the server.
	Region string
	// AccessKey, SecretKey and SessionToken are static credentials; when
	// AccessKey is set, no other source is consulted.
	AccessKey, SecretKey, SessionToken string
	// Profile is the shared-credentials profile. When set, it is tried
	// before the AWS_* credential variables rather than after them.
	Profile string
	// MaxRetries bounds the retries of one failed request. Zero means
	// minio-go's default (10, with backoff up to a second between).
	MaxRetries int
}

var _ storage.Storage = (*Storage)(nil)

// Storage keeps objects under a prefix of one bucket.
type Storage struct {
	client    *minio.Client
	transport *http.Transport
	bucket    string
	prefix    string // no leading or trailing slash; may be empty
	endpoint  string // for messages, e.g. "http://127.0.0.1:9000"
	secure    bool   // https
	opts      Options
}

// New connects to bucket and checks, with one list request, that the
// bucket exists and the credentials are accepted: a mistake shows at
// startup, not after the first epoch. prefix may be empty.
func New(ctx context.Context, bucket, prefix string, opts Options) (*Storage, error) {
	if err := s3utils.CheckValidBucketNameStrict(bucket); err != nil {
		return nil, fmt.Errorf("s3: invalid bucket name %q: %w", bucket, err)
	}
	prefix = strings.Trim(prefix, "/")
	if prefix != "" {
		if err := storage.CheckKey(prefix); err != nil {
			return nil, fmt.Errorf("s3: prefix: %w", err)
		}
	}
	endpoint := firstNonEmpty(opts.Endpoint, os.Getenv("AWS_ENDPOINT_URL_S3"), os.Getenv("AWS_ENDPOINT_URL"))
	custom := endpoint != ""
	if !custom {
		endpoint = defaultEndpoint
	}
	u, err := parseEndpoint(endpoint)
	if err != nil {
		return nil, err
	}
	if opts.AccessKey != "" && opts.SecretKey == "" {
		return nil, errors.New("s3: an access key was given without a secret key; give both")
	}
	secure := u.Scheme == "https"
	tr, err := minio.DefaultTransport(secure)
	if err != nil {
		return nil, fmt.Errorf("s3: transport: %w", err)
	}
	// Up to partThreads connections for each file the caller moves at once.
	tr.MaxIdleConnsPerHost = 64
	lookup := minio.BucketLookupAuto
	if custom {
		lookup = minio.BucketLookupPath
	}
	client, err := minio.New(u.Host, &minio.Options{
		Creds:        credentialsFor(opts),
		Secure:       secure,
		Transport:    tr,
		Region:       firstNonEmpty(opts.Region, os.Getenv("AWS_REGION"), os.Getenv("AWS_DEFAULT_REGION")),
		BucketLookup: lookup,
		MaxRetries:   opts.MaxRetries,
		// Over plain http, uploads carry a CRC32C trailer instead of a
		// SHA-256 signature of the payload; see PutFile.
		TrailingHeaders: !secure,
	})
	if err != nil {
		return nil, fmt.Errorf("s3: client for %s: %w", u.Redacted(), err)
	}
	s := &Storage{
		client:    client,
		transport: tr,
		bucket:    bucket,
		prefix:    prefix,
		endpoint:  u.Scheme + "://" + u.Host,
		secure:    secure,
		opts:      opts,
	}
	if err := s.check(ctx); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

// Close releases the idle network connections; a later call would open
// new ones.
func (s *Storage) Close() error {
	s.transport.CloseIdleConnections()
	return nil
}

func parseEndpoint(endpoint string) (*url.URL, error) {
	if !strings.Contains(endpoint, "://") {
		endpoint = "https://" + endpoint
	}
	u, err := url.Parse(endpoint)
	if err != nil {
		return nil, fmt.Errorf("s3: endpoint %q is not a URL; want e.g. https://s3.example.com or http://127.0.0.1:9000", endpoint)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return nil, fmt.Errorf("s3: endpoint %q: scheme must be http or https", endpoint)
	}
	if u.Host == "" {
		return nil, fmt.Errorf("s3: endpoint %q names no host", endpoint)
	}
	if strings.Trim(u.Path, "/") != "" {
		return nil, fmt.Errorf("s3: endpoint %q has a path; S3 endpoints are a scheme and host only, the bucket goes in the storage location", endpoint)
	}
	return u, nil
}

// credentialsFor builds the credential chain; the first source with a key
// wins, as in the AWS SDKs.
func credentialsFor(opts Options) *credentials.Credentials {
	if opts.AccessKey != "" {
		return credentials.NewStaticV4(opts.AccessKey, opts.SecretKey, opts.SessionToken)
	}
	env := &credentials.EnvAWS{}
	file := &credentials.FileAWSCredentials{Profile: opts.Profile}
	// The instance metadata service does not exist off AWS; a short
	// timeout keeps a machine without any credentials from waiting on it.
	chain := []credentials.Provider{env, file}
	if opts.Profile != "" {
		chain = []credentials.Provider{file, env}
	}
	if !strings.EqualFold(os.Getenv("AWS_EC2_METADATA_DISABLED"), "true") {
		chain = append(chain, &credentials.IAM{Client: &http.Client{Timeout: 2 * time.Second}})
	}
	return credentials.NewChainCredentials(chain)
}

// credentialSource says, for an error message, which access key was used
// and where it came from, and what to check. It re-reads only the cheap
// sources; empty key means none of them had credentials.
func (s *Storage) credentialSource() (key, from, check string) {
	if s.opts.AccessKey != "" {
		return s.opts.AccessKey, "given as an option", "check the access and secret key options"
	}
	fromEnv := func() (string, string, string) {
		v, _ := (&credentials.EnvAWS{}).Retrieve()
		return v.AccessKeyID, "from AWS_ACCESS_KEY_ID", "check AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"
	}
	fromFile := func() (string, string, string) {
		v, _ := (&credentials.FileAWSCredentials{Profile: s.opts.Profile}).Retrieve()
		p := firstNonEmpty(s.opts.Profile, os.Getenv("AWS_PROFILE"), "default")
		return v.AccessKeyID, fmt.Sprintf("from profile %q of the AWS credentials file", p), "check that profile"
	}
	order := []func() (string, string, string){fromEnv, fromFile}
	if s.opts.Profile != "" {
		order = []func() (string, string, string){fromFile, fromEnv}
	}
	for _, f := range order {
		if key, from, check := f(); key != "" {
			return key, from, check
		}
	}
	return "", "", ""
}

// check lists at most one key to learn early whether the bucket exists
// and the credentials work.
func (s *Storage) check(ctx context.Context) error {
	for obj := range s.client.ListObjectsIter(ctx, s.bucket, minio.ListObjectsOptions{Prefix: s.object(""), MaxKeys: 1}) {
		if obj.Err != nil {
			var uerr *url.Error
			if errors.As(obj.Err, &uerr) && ctx.Err() == nil {
				return &userError{
					msg:  fmt.Sprintf("s3: cannot reach %s (%v); check the endpoint (AWS_ENDPOINT_URL_S3, AWS_ENDPOINT_URL or the endpoint option)", s.endpoint, uerr.Err),
					errs: []error{obj.Err},
				}
			}
			return s.convert("check", "", obj.Err)
		}
		break
	}
	return nil
}

// object is the S3 object name of key.
func (s *Storage) object(key string) string {
	switch {
	case s.prefix == "":
		return key
	case key == "":
		return s.prefix + "/"
	default:
		return s.prefix + "/" + key
	}
}

// URI implements storage.Storage.
func (s *Storage) URI(key string) string {
	return "s3://" + s.bucket + "/" + s.object(key)
}

// convert turns minio-go's errors into ours: the ones a user can fix
// become one line saying what to do, missing keys wrap
// storage.ErrNotFound, and the original error stays in the chain.
func (s *Storage) convert(op, key string, err error) error {
	var resp minio.ErrorResponse
	if !errors.As(err, &resp) {
		return fmt.Errorf("s3: %s %s at %s: %w", op, s.URI(key), s.endpoint, err)
	}
	switch resp.Code {
	case minio.NoSuchKey:
		return fmt.Errorf("s3: %s %s: %w (%w)", op, s.URI(key), storage.ErrNotFound, err)
	case minio.NoSuchBucket:
		return &userError{
			msg:  fmt.Sprintf("s3: bucket %q does not exist at %s; create it or check --storage", s.bucket, s.endpoint),
			errs: []error{ErrBucketNotFound, err},
		}
	case minio.InvalidAccessKeyID, minio.SignatureDoesNotMatch, minio.AccessDenied,
		"InvalidToken", "ExpiredToken", "InvalidClientTokenId", "AllAccessDisabled":
		var msg string
		if key, from, check := s.credentialSource(); key != "" {
			msg = fmt.Sprintf("s3: %s refused access key %q (%s) for bucket %q (%s); %s, and that the key may use the bucket",
				s.endpoint, key, from, s.bucket, resp.Code, check)
		} else {
			msg = fmt.Sprintf("s3: %s refused access to bucket %q (%s) and no credentials were found; set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_PROFILE",
				s.endpoint, s.bucket, resp.Code)
		}
		return &userError{msg: msg, errs: []error{ErrCredentials, err}}
	}
	return fmt.Errorf("s3: %s %s at %s: %w", op, s.URI(key), s.endpoint, err)
}

// userError is a failure a user can fix: Error is the one line that says
// how, and Unwrap keeps the sentinel and the cause for errors.Is/As.
type userError struct {
	msg  string
	errs []error
}

func (e *userError) Error() string   { return e.msg }
func (e *userError) Unwrap() []error { return e.errs }

func (s *Storage) checkKey(key string) error {
	if err := storage.CheckKey(key); err != nil {
		return fmt.Errorf("s3: %w", err)
	}
	return nil
}

// PutFile implements storage.Storage. Files larger than one part are sent
// as a multipart upload, partThreads parts at a time; S3 makes the object
// visible only when the upload completes.
//
// Over plain http every request (each part, or the whole of a small file)
// ends with a CRC32C of its payload in a trailer, which the server checks:
// a part damaged on the way is rejected, rather than showing only at
// Download, perhaps after Prune removed the checkpoints before it. That is
// what current AWS SDKs send by default, and S3 and MinIO check it; a
// server that accepts the trailer without checking it leaves such damage
// to Download's SHA-256 check. It replaces minio-go's default for plain
// http, a SHA-256 of every payload chunk signed with the secret key, which
// the client and the server each computed over every byte on top of the
// SHA-256 that Commit computes for the manifest: about a fifth of the
// upload rate on a 2-core machine with the server on it. Unlike the
// signature, a CRC does not stop a deliberate change on the way; Download
// still catches it, and a network that needs more than that needs https.
// Over https, TLS does the job and payloads carry neither.
func (s *Storage) PutFile(ctx context.Context, key, localPath string) error {
	if err := s.checkKey(key); err != nil {
		return err
	}
	_, err := s.client.FPutObject(ctx, s.bucket, s.object(key), localPath, minio.PutObjectOptions{
		ContentType:          "application/octet-stream",
		PartSize:             partSize,
		NumThreads:           partThreads,
		DisableContentSha256: !s.secure,
	})
	if err != nil {
		if errors.Is(err, os.ErrNotExist) || errors.Is(err, os.ErrPermission) {
			return fmt.Errorf("s3: put %s: %w", s.URI(key), err)
		}
		return s.convert("put", key, err)
	}
	return nil
}

// PutBytes implements storage.Storage.
func (s *Storage) PutBytes(ctx context.Context, key string, data []byte) error {
	if err := s.checkKey(key); err != nil {
		return err
	}
	_, err := s.client.PutObject(ctx, s.bucket, s.object(key), bytes.NewReader(data), int64(len(data)), minio.PutObjectOptions{
		ContentType: "application/octet-stream",
	})
	if err != nil {
		return s.convert("put", key, err)
	}
	return nil
}

// GetBytes implements storage.Storage.
func (s *Storage) GetBytes(ctx context.Context, key string) ([]byte, error) {
	if err := s.checkKey(key); err != nil {
		return nil, err
	}
	obj, err := s.client.GetObject(ctx, s.bucket, s.object(key), minio.GetObjectOptions{})
	if err != nil {
		return nil, s.convert("get", key, err)
	}
	defer obj.Close()
	b, err := io.ReadAll(obj)
	if err != nil {
		return nil, s.convert("get", key, err)
	}
	return b, nil
}

// GetFile implements storage.Storage. Large objects are fetched as
// partThreads parallel byte ranges, each pinned to the ETag seen first so
// that an object replaced meanwhile fails instead of mixing versions.
func (s *Storage) GetFile(ctx context.Context, key, localPath string) (err error) {
	if err := s.checkKey(key); err != nil {
		return err
	}
	info, err := s.client.StatObject(ctx, s.bucket, s.object(key), minio.StatObjectOptions{})
	if err != nil {
		return s.convert("get", key, err)
	}
	dir := filepath.Dir(localPath)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("s3: get %s: %w", s.URI(key), err)
	}
	tmp, err := os.CreateTemp(dir, tempPrefix+"*")
	if err != nil {
		return fmt.Errorf("s3: get %s: %w", s.URI(key), err)
	}
	defer func() {
		if err != nil {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()

	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(partThreads)
	for off := int64(0); off < info.Size; off += partSize {
		n := min(partSize, info.Size-off)
		g.Go(func() error { return s.getRange(gctx, key, info.ETag, tmp, off, n) })
	}
	if err := g.Wait(); err != nil {
		return err
	}
	if err := tmp.Chmod(0o644); err != nil {
		return fmt.Errorf("s3: get %s: %w", s.URI(key), err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("s3: get %s: %w", s.URI(key), err)
	}
	if err := os.Rename(tmp.Name(), localPath); err != nil {
		return fmt.Errorf("s3: get %s: %w", s.URI(key), err)
	}
	return nil
}

// getRange copies n bytes at off of the object into f at the same offset.
func (s *Storage) getRange(ctx context.Context, key, etag string, f *os.File, off, n int64) error {
	var opts minio.GetObjectOptions
	if err := opts.SetRange(off, off+n-1); err != nil {
		return fmt.Errorf("s3: get %s: %w", s.URI(key), err)
	}
	if err := opts.SetMatchETag(etag); err != nil {
		return fmt.Errorf("s3: get %s: %w", s.URI(key), err)
	}
	obj, err := s.client.GetObject(ctx, s.bucket, s.object(key), opts)
	if err != nil {
		return s.convert("get", key, err)
	}
	defer obj.Close()
	buf := make([]byte, 1<<20)
	got, err := io.CopyBuffer(io.NewOffsetWriter(f, off), io.LimitReader(obj, n), buf)
	if err != nil {
		return s.convert("get", key, err)
	}
	if got != n {
		return fmt.Errorf("s3: get %s: got %d bytes at offset %d, want %d", s.URI(key), got, off, n)
	}
	return nil
}

// Stat implements storage.Storage.
func (s *Storage) Stat(ctx context.Context, key string) (storage.Object, error) {
	if err := s.checkKey(key); err != nil {
		return storage.Object{}, err
	}
	info, err := s.client.StatObject(ctx, s.bucket, s.object(key), minio.StatObjectOptions{})
	if err != nil {
		return storage.Object{}, s.convert("stat", key, err)
	}
	return storage.Object{Key: key, Size: info.Size}, nil
}

// List implements storage.Storage.
func (s *Storage) List(ctx context.Context, prefix string) ([]storage.Object, error) {
	full := s.object(prefix)
	var objs []storage.Object
	for obj := range s.client.ListObjectsIter(ctx, s.bucket, minio.ListObjectsOptions{Prefix: full, Recursive: true}) {
		if obj.Err != nil {
			return nil, s.convert("list", prefix, obj.Err)
		}
		if strings.HasSuffix(obj.Key, "/") {
			continue // a "directory" marker some tools create
		}
		key := obj.Key
		if s.prefix != "" {
			key = strings.TrimPrefix(key, s.prefix+"/")
		}
		objs = append(objs, storage.Object{Key: key, Size: obj.Size})
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	return objs, nil
}

// Delete implements storage.Storage, in batches of up to 1000 keys.
func (s *Storage) Delete(ctx context.Context, keys ...string) error {
	if len(keys) == 0 {
		return nil
	}
	for _, key := range keys {
		if err := s.checkKey(key); err != nil {
			return err
		}
	}
	objects := func(yield func(minio.ObjectInfo) bool) {
		for _, key := range keys {
			if !yield(minio.ObjectInfo{Key: s.object(key)}) {
				return
			}
		}
	}
	results, err := s.client.RemoveObjectsWithIter(ctx, s.bucket, objects, minio.RemoveObjectsOptions{})
	if err != nil {
		return s.convert("delete", "", err)
	}
	for r := range results {
		if r.Err != nil {
			key := strings.TrimPrefix(r.ObjectName, s.prefix+"/")
			return s.convert("delete", key, r.Err)
		}
	}
	// The iterator stops silently on a cancelled context.
	return ctx.Err()
}

func firstNonEmpty(v ...string) string {
	for _, s := range v {
		if s != "" {
			return s
		}
	}
	return ""
}
