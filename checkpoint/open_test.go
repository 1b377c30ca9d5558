package checkpoint_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/rtrain/rtrain/checkpoint"
	"github.com/rtrain/rtrain/checkpoint/s3"
	"github.com/rtrain/rtrain/internal/testutil"
)

func TestOpenBadLocation(t *testing.T) {
	tests := []struct {
		location string
		want     string
	}{
		{"", "no storage location given"},
		{"   ", "no storage location given"},
		{"s3://", "names no bucket"},
		{"s3:///x", "names no bucket"},
		{"s3://Not_A_Bucket/x", "invalid bucket name"},
		{"s3://bucket/../x", "prefix"},
		{"ftp://x", "is not supported"},
		{"gs://bucket", "is not supported"},
		{"file://host/x", "not a file URL"},
		{"~bob/x", "only ~/ is expanded"},
		{"s3:/bucket/x", `looks like a URL missing its //; use s3://`},
		{"s3:bucket", "missing its //"},
	}
	for _, tt := range tests {
		t.Run(tt.location, func(t *testing.T) {
			_, err := checkpoint.Open(context.Background(), tt.location, checkpoint.S3Options{})
			require.Error(t, err)
			t.Logf("error: %v", err)
			assert.Contains(t, err.Error(), tt.want)
			assert.NotContains(t, err.Error(), "\n", "one line")
		})
	}
}

func TestOpenLocal(t *testing.T) {
	home := t.TempDir()
	t.Setenv("HOME", home)
	ctx := context.Background()

	s, err := checkpoint.Open(ctx, checkpoint.DefaultLocation, checkpoint.S3Options{})
	require.NoError(t, err)
	assert.Equal(t, filepath.Join(home, "rtrain_results"), s.URI(""))
	assert.DirExists(t, filepath.Join(home, "rtrain_results"), "created")
	assert.Equal(t, filepath.Join(home, "rtrain_results", "run", "x"), s.URI("run/x"))

	abs := filepath.Join(t.TempDir(), "a", "b")
	s, err = checkpoint.Open(ctx, "file://"+abs, checkpoint.S3Options{})
	require.NoError(t, err)
	assert.Equal(t, abs, s.URI(""))

	t.Chdir(home)
	s, err = checkpoint.Open(ctx, "rel/dir", checkpoint.S3Options{})
	require.NoError(t, err)
	assert.Equal(t, filepath.Join(home, "rel", "dir"), s.URI(""))

	f := filepath.Join(home, "afile")
	require.NoError(t, os.WriteFile(f, nil, 0o644))
	_, err = checkpoint.Open(ctx, f, checkpoint.S3Options{})
	require.ErrorContains(t, err, "not a directory")
}

// clearAWSEnv makes the test independent of the machine's AWS setup.
func clearAWSEnv(t *testing.T) {
	for _, k := range []string{
		"AWS_ACCESS_KEY_ID", "AWS_ACCESS_KEY", "AWS_SECRET_ACCESS_KEY", "AWS_SECRET_KEY", "AWS_SESSION_TOKEN",
		"AWS_PROFILE", "AWS_REGION", "AWS_DEFAULT_REGION", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3",
	} {
		t.Setenv(k, "")
	}
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", filepath.Join(t.TempDir(), "no-credentials"))
	t.Setenv("AWS_CONFIG_FILE", filepath.Join(t.TempDir(), "no-config"))
	t.Setenv("AWS_EC2_METADATA_DISABLED", "true")
}

// setEnv sets KEY=VALUE pairs for the test.
func setEnv(t *testing.T, env []string) {
	for _, kv := range env {
		k, v, _ := strings.Cut(kv, "=")
		t.Setenv(k, v)
	}
}

// openAndUse opens location and round-trips a small checkpoint through it.
func openAndUse(t *testing.T, location string, opts checkpoint.S3Options) {
	t.Helper()
	ctx := context.Background()
	s, err := checkpoint.Open(ctx, location, opts)
	require.NoError(t, err)
	t.Cleanup(func() { s.(io.Closer).Close() })
	r := newRun(t, s, filepath.Base(t.Name()))
	want := smallTree(1)
	m, err := r.Commit(ctx, 1, writeTree(t, want), nil, 1)
	require.NoError(t, err)
	requireDownload(t, r, m, want)
}

func TestOpenS3Credentials(t *testing.T) {
	srv := testutil.MinIO(t)
	location := "s3://" + srv.Bucket + "/prefix"

	t.Run("environment", func(t *testing.T) {
		clearAWSEnv(t)
		setEnv(t, srv.Env())
		openAndUse(t, location, checkpoint.S3Options{})
	})
	t.Run("AWS_ENDPOINT_URL_S3 wins over AWS_ENDPOINT_URL", func(t *testing.T) {
		clearAWSEnv(t)
		setEnv(t, srv.Env())
		t.Setenv("AWS_ENDPOINT_URL_S3", srv.Endpoint)
		t.Setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:1")
		openAndUse(t, location, checkpoint.S3Options{})
	})
	t.Run("options win over the environment", func(t *testing.T) {
		clearAWSEnv(t)
		t.Setenv("AWS_ACCESS_KEY_ID", "wrong")
		t.Setenv("AWS_SECRET_ACCESS_KEY", "wrong-secret")
		t.Setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:1")
		openAndUse(t, location, checkpoint.S3Options{
			Endpoint: srv.Endpoint, Region: "us-east-1", AccessKey: srv.AccessKey, SecretKey: srv.SecretKey,
		})
	})

	credFile := filepath.Join(t.TempDir(), "credentials")
	require.NoError(t, os.WriteFile(credFile, []byte(
		"[default]\naws_access_key_id = nobody\naws_secret_access_key = nothing-at-all\n\n"+
			"[rtrain]\naws_access_key_id = "+srv.AccessKey+"\naws_secret_access_key = "+srv.SecretKey+"\n"), 0o600))
	t.Run("profile from AWS_PROFILE", func(t *testing.T) {
		clearAWSEnv(t)
		t.Setenv("AWS_SHARED_CREDENTIALS_FILE", credFile)
		t.Setenv("AWS_PROFILE", "rtrain")
		t.Setenv("AWS_ENDPOINT_URL", srv.Endpoint)
		openAndUse(t, location, checkpoint.S3Options{})
	})
	t.Run("profile option wins over AWS_PROFILE and keys in the environment", func(t *testing.T) {
		clearAWSEnv(t)
		t.Setenv("AWS_SHARED_CREDENTIALS_FILE", credFile)
		t.Setenv("AWS_PROFILE", "default")
		t.Setenv("AWS_ACCESS_KEY_ID", "wrong")
		t.Setenv("AWS_SECRET_ACCESS_KEY", "wrong-secret")
		openAndUse(t, location, checkpoint.S3Options{Endpoint: srv.Endpoint, Profile: "rtrain"})
	})
}

func TestOpenS3Errors(t *testing.T) {
	srv := testutil.MinIO(t)
	ctx := context.Background()
	credFile := filepath.Join(t.TempDir(), "credentials")
	require.NoError(t, os.WriteFile(credFile, []byte("[ci]\naws_access_key_id = ci-key\naws_secret_access_key = ci-secret\n"), 0o600))
	tests := []struct {
		name     string
		location string
		env      []string
		opts     checkpoint.S3Options
		is       error
		want     []string
	}{
		{
			name:     "wrong access key",
			location: "s3://" + srv.Bucket,
			env:      []string{"AWS_ACCESS_KEY_ID=nobody", "AWS_SECRET_ACCESS_KEY=" + srv.SecretKey, "AWS_ENDPOINT_URL=" + srv.Endpoint},
			is:       checkpoint.ErrCredentials,
			want:     []string{srv.Endpoint, `refused access key "nobody" (from AWS_ACCESS_KEY_ID)`, "InvalidAccessKeyId", "check AWS_ACCESS_KEY_ID"},
		},
		{
			name:     "wrong secret key",
			location: "s3://" + srv.Bucket + "/p",
			opts:     checkpoint.S3Options{Endpoint: srv.Endpoint, AccessKey: srv.AccessKey, SecretKey: "not-the-secret"},
			is:       checkpoint.ErrCredentials,
			want:     []string{srv.Endpoint, "(given as an option)", "SignatureDoesNotMatch"},
		},
		{
			name:     "wrong profile",
			location: "s3://" + srv.Bucket,
			env:      []string{"AWS_SHARED_CREDENTIALS_FILE=" + credFile, "AWS_PROFILE=ci", "AWS_ENDPOINT_URL=" + srv.Endpoint},
			is:       checkpoint.ErrCredentials,
			want:     []string{srv.Endpoint, `refused access key "ci-key" (from profile "ci" of the AWS credentials file)`, "check that profile"},
		},
		{
			name:     "unreachable endpoint",
			location: "s3://" + srv.Bucket,
			opts:     checkpoint.S3Options{Endpoint: "http://127.0.0.1:1", AccessKey: "a", SecretKey: "b", MaxRetries: 1},
			want:     []string{"cannot reach http://127.0.0.1:1", "connection refused", "check the endpoint"},
		},
		{
			name:     "no credentials",
			location: "s3://" + srv.Bucket,
			env:      []string{"AWS_ENDPOINT_URL=" + srv.Endpoint},
			is:       checkpoint.ErrCredentials,
			want:     []string{srv.Endpoint, "no credentials were found"},
		},
		{
			name:     "missing bucket",
			location: "s3://no-such-bucket/prefix",
			env:      srv.Env(),
			is:       checkpoint.ErrBucketNotFound,
			want:     []string{`bucket "no-such-bucket" does not exist at ` + srv.Endpoint + "; create it or check --storage"},
		},
		{
			name:     "endpoint with a path",
			location: "s3://" + srv.Bucket,
			opts:     checkpoint.S3Options{Endpoint: srv.Endpoint + "/bucket"},
			want:     []string{"has a path"},
		},
		{
			name:     "access key without secret",
			location: "s3://" + srv.Bucket,
			opts:     checkpoint.S3Options{Endpoint: srv.Endpoint, AccessKey: "x"},
			want:     []string{"without a secret key"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clearAWSEnv(t)
			t.Setenv("AWS_REGION", "us-east-1")
			setEnv(t, tt.env)
			_, err := checkpoint.Open(ctx, tt.location, tt.opts)
			require.Error(t, err)
			t.Logf("error: %v", err)
			if tt.is != nil {
				require.ErrorIs(t, err, tt.is)
			}
			for _, w := range tt.want {
				assert.Contains(t, err.Error(), w)
			}
			assert.NotContains(t, err.Error(), "\n", "one line")
		})
	}
}

// An S3 outage in the middle of a commit (the server answering 503 from
// the second file on) leaves no checkpoint and the earlier one intact.
func TestCommitS3Outage(t *testing.T) {
	srv := testutil.MinIO(t)
	target, err := url.Parse(srv.Endpoint)
	require.NoError(t, err)
	var down atomic.Bool
	var puts atomic.Int32
	tr := &http.Transport{}
	t.Cleanup(tr.CloseIdleConnections)
	proxy := httputil.NewSingleHostReverseProxy(target)
	proxy.Transport = tr
	front := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if down.Load() {
			w.Header().Set("Retry-After", "0")
			http.Error(w, "<Error><Code>ServiceUnavailable</Code></Error>", http.StatusServiceUnavailable)
			return
		}
		proxy.ServeHTTP(w, req)
		if req.Method == http.MethodPut && strings.Contains(req.URL.Path, "/checkpoint_000002/") && puts.Add(1) == 1 {
			down.Store(true)
		}
	}))
	t.Cleanup(front.Close)

	ctx := context.Background()
	s, err := s3.New(ctx, srv.Bucket, "p", s3.Options{
		Endpoint: front.URL, Region: "us-east-1", AccessKey: srv.AccessKey, SecretKey: srv.SecretKey, MaxRetries: 1,
	})
	require.NoError(t, err)
	t.Cleanup(func() { s.Close() })
	r := newRun(t, s, "run")
	first := smallTree(1)
	_, err = r.Commit(ctx, 1, writeTree(t, first), nil, 1)
	require.NoError(t, err)

	start := time.Now()
	_, err = r.Commit(ctx, 2, writeTree(t, smallTree(2)), nil, 1)
	require.Error(t, err)
	t.Logf("commit failed after %v: %v", time.Since(start), err)

	down.Store(false)
	list, err := r.List(ctx)
	require.NoError(t, err)
	require.Equal(t, []int{1}, indices(list))
	requireDownload(t, r, list[0], first)
	objs, err := s.List(ctx, "run/checkpoint_000002/")
	require.NoError(t, err)
	require.NotEmpty(t, objs, "the outage struck mid-commit, after a file was stored")
}
