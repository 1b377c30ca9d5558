package main

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"regexp"
	"strings"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
	"github.com/stretchr/testify/require"

	"github.com/rtrain/rtrain/internal/minioserver"
	"github.com/rtrain/rtrain/internal/testutil"
)

// makeBucketEnv, when set, has the test binary make the bucket it names
// on the S3 server that AWS_ENDPOINT_URL points at, then exit: a test runs
// it inside the network namespace of a MinIO server nothing else reaches.
const makeBucketEnv = "RTRAIN_TEST_MAKE_BUCKET"

// makeBucketHere makes bucket, retrying while the server starts up, and
// returns the process's exit code.
func makeBucketHere(bucket string) int {
	u, err := url.Parse(os.Getenv("AWS_ENDPOINT_URL"))
	if err == nil {
		var s3 *minio.Client
		s3, err = minio.New(u.Host, &minio.Options{Creds: credentials.NewEnvAWS(), BucketLookup: minio.BucketLookupPath, Region: "us-east-1"})
		for deadline := time.Now().Add(30 * time.Second); err == nil; time.Sleep(100 * time.Millisecond) {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			err = s3.MakeBucket(ctx, bucket, minio.MakeBucketOptions{})
			cancel()
			if err == nil || time.Now().After(deadline) {
				break
			}
			err = nil
		}
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "make bucket:", err)
		return 1
	}
	return 0
}

// withS3 runs MinIO on the head's host, makes a bucket there and gives
// every process of the cluster the server's credentials, as a cluster
// whose nodes share an S3 store; it returns the bucket's URI. Call it
// before start.
func (c *testCluster) withS3() string {
	c.t.Helper()
	srv := testutil.MinIOWith(c.t, minioserver.Options{Host: c.head.Addr(), Command: c.head.Command})
	c.extraEnv = append(c.extraEnv, srv.Env()...)
	bucket := "rtrain-" + regexp.MustCompile(`[^a-z0-9]+`).ReplaceAllString(strings.ToLower(c.head.Name()), "-")
	mk := c.head.Enter(context.Background(), os.Args[0])
	mk.Env = append(os.Environ(), makeBucketEnv+"="+bucket)
	mk.Env = append(mk.Env, srv.Env()...)
	out, err := mk.CombinedOutput()
	require.NoError(c.t, err, "%s\n%s", out, srv.Log())
	return "s3://" + bucket
}
