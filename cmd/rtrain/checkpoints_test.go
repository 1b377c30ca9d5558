package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/rtrain/rtrain/internal/testutil"
)

// withS3 points c at srv through the environment, as a user would.
func (c *cli) withS3(srv *testutil.MinIOServer) *cli {
	c.cmd.Env = append(c.cmd.Env, "AWS_ENDPOINT_URL_S3="+srv.Endpoint, "AWS_ACCESS_KEY_ID="+srv.AccessKey,
		"AWS_SECRET_ACCESS_KEY="+srv.SecretKey, "AWS_REGION=us-east-1")
	return c
}

// The checkpoint life cycle from the command line, on S3: a run stores a
// checkpoint per epoch, a second run is refused the same name, --resume
// continues it, and `rtrain checkpoints` lists, shows, downloads and
// deletes what was stored.
func TestCheckpointsOnS3FromTheCommandLine(t *testing.T) {
	srv := testutil.MinIO(t)
	store := "s3://" + srv.Bucket + "/runs"
	run := store + "/demo"
	fit := func(extra ...string) *cli {
		args := append([]string{"fit", "--workers", "2", "--storage", store, "--name", "demo"}, extra...)
		args = append(args, repo(t, "examples", "train_rtrain.py"), "--", "--epochs")
		return rtrain(t, args...).withS3(srv)
	}

	c := fit()
	c.cmd.Args = append(c.cmd.Args, "2")
	require.Equal(t, 0, c.run(t), c.stderr.String())
	assert.Contains(t, c.stdout.String(), "[checkpoint] "+run+"/checkpoint_000002")
	assert.Contains(t, c.stderr.String(), "latest checkpoint: "+run+"/checkpoint_000002")

	c = fit()
	c.cmd.Args = append(c.cmd.Args, "3")
	assert.Equal(t, 2, c.run(t))
	assert.Equal(t, `rtrain: run "demo" already has checkpoints in `+run+" (latest checkpoint_000002); pass --resume to continue it, or choose another --name\n", lastLine(c.stderr.String()))

	c = fit("--resume")
	c.cmd.Args = append(c.cmd.Args, "3")
	require.Equal(t, 0, c.run(t), c.stderr.String())
	assert.Contains(t, c.stdout.String(), "[rank 0] resuming from "+run+"/checkpoint_000002 at epoch 2")
	assert.Contains(t, c.stdout.String(), "[report] epoch=2 ")
	assert.NotContains(t, c.stdout.String(), "[report] epoch=1 ")

	c = rtrain(t, "checkpoints", "ls", run).withS3(srv)
	require.Equal(t, 0, c.run(t), c.stderr.String())
	for _, want := range []string{"checkpoint_000001", "checkpoint_000002", "checkpoint_000003", "epoch=2"} {
		assert.Contains(t, c.stdout.String(), want)
	}

	c = rtrain(t, "checkpoints", "show", run+"/checkpoint_000003").withS3(srv)
	require.Equal(t, 0, c.run(t), c.stderr.String())
	assert.Contains(t, c.stdout.String(), `"sha256"`)

	dir := t.TempDir()
	c = rtrain(t, "checkpoints", "download", run+"/checkpoint_000003", dir).withS3(srv)
	require.Equal(t, 0, c.run(t), c.stderr.String())
	for _, f := range []string{"model.pt", "optim.pt", "meta.json"} {
		_, err := os.Stat(filepath.Join(dir, f))
		assert.NoError(t, err)
	}

	c = rtrain(t, "checkpoints", "rm", run+"/checkpoint_000001").withS3(srv)
	require.Equal(t, 0, c.run(t), c.stderr.String())
	c = rtrain(t, "checkpoints", "ls", run).withS3(srv)
	require.Equal(t, 0, c.run(t))
	assert.NotContains(t, c.stdout.String(), "checkpoint_000001")

	c = rtrain(t, "checkpoints", "show", run+"/checkpoint_000001").withS3(srv)
	assert.Equal(t, 1, c.run(t))
	assert.Equal(t, 1, strings.Count(c.stderr.String(), "\n"), "one line: %s", c.stderr.String())
}

func lastLine(s string) string {
	lines := strings.SplitAfter(strings.TrimSuffix(s, "\n"), "\n")
	return lines[len(lines)-1] + "\n"
}
