package checkpoint_test

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/rtrain/rtrain/checkpoint"
	"github.com/rtrain/rtrain/checkpoint/file"
	"github.com/rtrain/rtrain/checkpoint/s3"
	"github.com/rtrain/rtrain/internal/testutil"
)

// Environment of the child process TestCommitKilled starts: where to
// commit what.
const (
	childLocationEnv = "RTRAIN_TEST_COMMIT_LOCATION"
	childDirEnv      = "RTRAIN_TEST_COMMIT_DIR"
)

// commitChild runs in a re-executed test binary: it commits a directory
// as checkpoint 2 of "run", says "stored" once the first file is stored,
// and then stalls that upload (the others go on) until it is killed.
func commitChild(location, dir string) {
	ctx := context.Background()
	s, err := checkpoint.Open(ctx, location, checkpoint.S3Options{})
	if err != nil {
		fmt.Println("open:", err)
		os.Exit(2)
	}
	var once sync.Once
	h := &hookStorage{Storage: s, afterPut: func(string) {
		once.Do(func() { fmt.Println("stored") })
		select {}
	}}
	r, err := checkpoint.NewRun(h, "run")
	if err != nil {
		fmt.Println("run:", err)
		os.Exit(2)
	}
	_, err = r.Commit(ctx, 2, dir, nil, 1)
	fmt.Println("commit returned:", err)
	os.Exit(2)
}

// A process killed with SIGKILL in the middle of a commit leaves no
// checkpoint, the earlier one intact, and an index that can be
// committed again.
func TestCommitKilled(t *testing.T) {
	type backend struct {
		location string
		env      []string
		storage  checkpoint.Storage
	}
	backends := map[string]func(t *testing.T) backend{
		"file": func(t *testing.T) backend {
			dir := t.TempDir()
			s, err := file.New(dir)
			require.NoError(t, err)
			return backend{location: dir, storage: s}
		},
		"s3": func(t *testing.T) backend {
			srv := testutil.MinIO(t)
			ctx := context.Background()
			s, err := s3.New(ctx, srv.Bucket, "kill", s3.Options{
				Endpoint: srv.Endpoint, Region: "us-east-1", AccessKey: srv.AccessKey, SecretKey: srv.SecretKey,
			})
			require.NoError(t, err)
			t.Cleanup(func() { s.Close() })
			return backend{
				location: "s3://" + srv.Bucket + "/kill",
				env:      append(srv.Env(), "AWS_EC2_METADATA_DISABLED=true"),
				storage:  s,
			}
		},
	}
	for name, setup := range backends {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			b := setup(t)
			ctx := context.Background()
			r := newRun(t, b.storage, "run")
			first := smallTree(1)
			_, err := r.Commit(ctx, 1, writeTree(t, first), nil, 1)
			require.NoError(t, err)

			second := tree{}
			for i := range 32 {
				second[fmt.Sprintf("shard_%02d.bin", i)] = randomBytes(uint64(i), 256<<10)
			}
			dir := writeTree(t, second)
			cmd := exec.Command(os.Args[0], "-test.run=^$")
			cmd.Env = append(append(os.Environ(), b.env...), childLocationEnv+"="+b.location, childDirEnv+"="+dir)
			stdout, err := cmd.StdoutPipe()
			require.NoError(t, err)
			cmd.Stderr = os.Stderr
			require.NoError(t, cmd.Start())
			t.Cleanup(func() {
				_ = cmd.Process.Kill()
				_ = cmd.Wait()
			})
			lines := make(chan string, 1)
			go func() {
				sc := bufio.NewScanner(stdout)
				for sc.Scan() {
					lines <- sc.Text()
				}
				close(lines)
			}()
			select {
			case line := <-lines:
				require.Equal(t, "stored", line)
			case <-time.After(60 * time.Second):
				t.Fatal("child stored nothing in 60s")
			}
			require.NoError(t, cmd.Process.Kill())
			_ = cmd.Wait()
			for range lines {
			}

			list, err := r.List(ctx)
			require.NoError(t, err)
			require.Equal(t, []int{1}, indices(list), "checkpoints after the kill")
			requireDownload(t, r, list[0], first)
			partial, err := b.storage.List(ctx, "run/checkpoint_000002/")
			require.NoError(t, err)
			require.NotEmpty(t, partial, "the kill struck after a file was stored")
			next, err := r.NextIndex(ctx)
			require.NoError(t, err)
			require.Equal(t, 3, next)

			m, err := r.Commit(ctx, 2, dir, nil, 1)
			require.NoError(t, err)
			requireDownload(t, r, m, second)
		})
	}
}
