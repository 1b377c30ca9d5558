package checkpoint_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/rtrain/rtrain/checkpoint"
	"github.com/rtrain/rtrain/checkpoint/file"
	"github.com/rtrain/rtrain/checkpoint/s3"
	"github.com/rtrain/rtrain/internal/testutil"
)

// requireLocked fails unless err is a refusal naming the holder with id.
func requireLocked(t *testing.T, err error, id string, pid int) *checkpoint.LockedError {
	t.Helper()
	require.ErrorIs(t, err, checkpoint.ErrLocked)
	var lerr *checkpoint.LockedError
	require.True(t, errors.As(err, &lerr), "want a LockedError, got %v", err)
	assert.Equal(t, id, lerr.Holder.ID, "holder's id")
	assert.Equal(t, pid, lerr.Holder.PID, "holder's pid")
	host, _ := os.Hostname()
	assert.Equal(t, host, lerr.Holder.Host, "holder's host")
	assert.Contains(t, err.Error(), "job "+id)
	assert.NotContains(t, err.Error(), "\n")
	return lerr
}

// One writer at a time: a second is refused while the first holds the
// run's lease, and gets it once the first lets go.
func TestRunLease(t *testing.T) {
	eachStorage(t, func(t *testing.T, s checkpoint.Storage) {
		ctx := context.Background()
		first := newRun(t, s, "shared")
		require.NoError(t, first.Lock(ctx, checkpoint.LeaseOptions{ID: "first"}))
		second := newRun(t, s, "shared")
		requireLocked(t, second.Lock(ctx, checkpoint.LeaseOptions{ID: "second"}), "first", os.Getpid())
		require.Error(t, first.Lock(ctx, checkpoint.LeaseOptions{}), "a Run takes its lease once")

		// The holder writes as usual, and the lease is no checkpoint and
		// makes no run.
		_, err := first.Commit(ctx, 1, writeTree(t, smallTree(1)), nil, 1)
		require.NoError(t, err)
		require.NoError(t, first.LockErr())
		ms, err := first.List(ctx)
		require.NoError(t, err)
		assert.Equal(t, []int{1}, indices(ms))
		idle := newRun(t, s, "idle")
		require.NoError(t, idle.Lock(ctx, checkpoint.LeaseOptions{ID: "idle"}), "another run's lease is its own")
		runs, err := checkpoint.Runs(ctx, s)
		require.NoError(t, err)
		assert.Equal(t, []string{"shared"}, runs)
		require.NoError(t, idle.Unlock(ctx))

		// Released: the next writer gets it, and now the first is refused.
		require.NoError(t, first.Unlock(ctx))
		require.NoError(t, first.Unlock(ctx), "a second Unlock does nothing")
		require.NoError(t, second.Lock(ctx, checkpoint.LeaseOptions{ID: "second"}))
		requireLocked(t, first.Lock(ctx, checkpoint.LeaseOptions{ID: "first"}), "second", os.Getpid())
		require.NoError(t, second.Unlock(ctx))

		// A Storage that cannot lock (a wrapper) gets no lease, and says
		// so in the log rather than failing.
		plain := newRun(t, &hookStorage{Storage: s}, "shared")
		require.NoError(t, plain.Lock(ctx, checkpoint.LeaseOptions{}))
		require.NoError(t, plain.LockErr())
		require.NoError(t, plain.Unlock(ctx))

		// Nothing is left behind: a run that never stored anything leaves
		// no trace.
		objs, err := s.List(ctx, "idle/")
		require.NoError(t, err)
		assert.Empty(t, objs)
		objs, err = s.List(ctx, "shared/"+checkpoint.LeaseName)
		require.NoError(t, err)
		assert.Empty(t, objs)
	})
}

// Of many writers that try at once, exactly one gets the lease.
func TestRunLeaseRace(t *testing.T) {
	eachStorage(t, func(t *testing.T, s checkpoint.Storage) {
		ctx := context.Background()
		const writers = 8
		runs := make([]*checkpoint.Run, writers)
		errs := make([]error, writers)
		var wg sync.WaitGroup
		start := make(chan struct{})
		for i := range runs {
			runs[i] = newRun(t, s, "raced")
			wg.Go(func() {
				<-start
				errs[i] = runs[i].Lock(ctx, checkpoint.LeaseOptions{ID: strconv.Itoa(i)})
			})
		}
		close(start)
		wg.Wait()
		won := 0
		for i, err := range errs {
			if err == nil {
				won++
				require.NoError(t, runs[i].Unlock(ctx))
				continue
			}
			require.ErrorIs(t, err, checkpoint.ErrLocked, "writer %d", i)
		}
		assert.Equal(t, 1, won, "writers that got the lease")
	})
}

// A lease taken away from its holder (removed by hand, or taken over after
// it lapsed) stops the holder's writes for good, and its Unlock leaves
// the lease to whoever has it now.
func TestRunLeaseLost(t *testing.T) {
	eachStorage(t, func(t *testing.T, s checkpoint.Storage) {
		ctx := context.Background()
		first := newRun(t, s, "run")
		require.NoError(t, first.Lock(ctx, checkpoint.LeaseOptions{ID: "first", TTL: 1500 * time.Millisecond}))
		_, err := first.Commit(ctx, 1, writeTree(t, smallTree(1)), nil, 1)
		require.NoError(t, err)

		require.NoError(t, s.Delete(ctx, "run/"+checkpoint.LeaseName))
		require.Eventually(t, func() bool { return errors.Is(first.LockErr(), checkpoint.ErrLockLost) },
			10*time.Second, 50*time.Millisecond, "the holder notices its lease is gone")
		_, err = first.Commit(ctx, 2, writeTree(t, smallTree(2)), nil, 1)
		require.ErrorIs(t, err, checkpoint.ErrLockLost)
		_, err = first.Prune(ctx, checkpoint.Retention{Keep: 1})
		require.ErrorIs(t, err, checkpoint.ErrLockLost)
		require.ErrorIs(t, first.Delete(ctx, 1), checkpoint.ErrLockLost)

		second := newRun(t, s, "run")
		require.NoError(t, second.Lock(ctx, checkpoint.LeaseOptions{ID: "second"}))
		require.NoError(t, first.Unlock(ctx))
		requireLocked(t, newRun(t, s, "run").Lock(ctx, checkpoint.LeaseOptions{}), "second", os.Getpid())
		require.NoError(t, second.Unlock(ctx))

		ms, err := second.List(ctx)
		require.NoError(t, err)
		assert.Equal(t, []int{1}, indices(ms), "the lost writer committed nothing more")
	})
}

// On S3 a lease that is not renewed lapses and is taken over; its old
// holder learns that it lost it and its Unlock leaves the new one alone.
func TestS3LeaseLapses(t *testing.T) {
	srv := testutil.MinIO(t)
	s := newS3Storage(t, srv, srv.Endpoint)
	ctx := context.Background()
	const ttl = time.Second
	old, err := s.Lock(ctx, "run/lease", checkpoint.Holder{ID: "old"}, ttl)
	require.NoError(t, err)
	_, err = s.Lock(ctx, "run/lease", checkpoint.Holder{ID: "new"}, ttl)
	require.ErrorIs(t, err, checkpoint.ErrLocked, "not lapsed yet")
	require.NoError(t, old.Renew(ctx), "the holder renews")

	time.Sleep(time.Until(old.Expires()) + 50*time.Millisecond)
	taken, err := s.Lock(ctx, "run/lease", checkpoint.Holder{ID: "new"}, time.Minute)
	require.NoError(t, err, "a lapsed lease is taken over")
	require.ErrorIs(t, old.Renew(ctx), checkpoint.ErrLockLost)
	require.NoError(t, old.Unlock(ctx))
	_, err = s.Lock(ctx, "run/lease", checkpoint.Holder{ID: "third"}, ttl)
	var lerr *checkpoint.LockedError
	require.True(t, errors.As(err, &lerr), "the new holder keeps it: %v", err)
	assert.Equal(t, "new", lerr.Holder.ID)
	require.NoError(t, taken.Unlock(ctx))
}

// Environment of the child that TestRunLeaseAfterCrash starts: it takes
// the lease of the run at this location and waits to be killed.
const leaseChildEnv = "RTRAIN_TEST_LEASE_LOCATION"

// leaseChildTTL is the child's lease TTL: short, so that the test does not
// wait long for it to lapse on S3.
const leaseChildTTL = 2 * time.Second

func leaseChild(location string) {
	ctx := context.Background()
	s, err := checkpoint.Open(ctx, location, checkpoint.S3Options{})
	if err != nil {
		fmt.Println("open:", err)
		os.Exit(2)
	}
	r, err := checkpoint.NewRun(s, "run")
	if err == nil {
		err = r.Lock(ctx, checkpoint.LeaseOptions{ID: "child", TTL: leaseChildTTL})
	}
	if err != nil {
		fmt.Println("lock:", err)
		os.Exit(2)
	}
	fmt.Println("locked")
	select {}
}

// A writer that crashed does not keep its run locked: on a directory the
// lease goes with the process, on S3 once it lapses, and a resumed job can
// take it.
func TestRunLeaseAfterCrash(t *testing.T) {
	type backend struct {
		location string
		env      []string
		storage  checkpoint.Storage
		lapses   bool
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
			s, err := s3.New(context.Background(), srv.Bucket, "crash", s3.Options{
				Endpoint: srv.Endpoint, Region: "us-east-1", AccessKey: srv.AccessKey, SecretKey: srv.SecretKey,
			})
			require.NoError(t, err)
			t.Cleanup(func() { s.Close() })
			return backend{
				location: "s3://" + srv.Bucket + "/crash",
				env:      append(srv.Env(), "AWS_EC2_METADATA_DISABLED=true"),
				storage:  s,
				lapses:   true,
			}
		},
	}
	for name, setup := range backends {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			b := setup(t)
			ctx := context.Background()
			cmd := exec.Command(os.Args[0], "-test.run=^$")
			cmd.Env = append(append(os.Environ(), b.env...), leaseChildEnv+"="+b.location)
			stdout, err := cmd.StdoutPipe()
			require.NoError(t, err)
			cmd.Stderr = os.Stderr
			require.NoError(t, cmd.Start())
			t.Cleanup(func() {
				_ = cmd.Process.Kill()
				_ = cmd.Wait()
			})
			line := make(chan string, 1)
			go func() {
				sc := bufio.NewScanner(stdout)
				sc.Scan()
				line <- sc.Text()
				for sc.Scan() {
				}
			}()
			select {
			case l := <-line:
				require.Equal(t, "locked", l)
			case <-time.After(60 * time.Second):
				t.Fatal("the child took no lease in 60s")
			}

			r := newRun(t, b.storage, "run")
			requireLocked(t, r.Lock(ctx, checkpoint.LeaseOptions{ID: "resumed"}), "child", cmd.Process.Pid)
			require.NoError(t, cmd.Process.Kill())
			_ = cmd.Wait()

			err = r.Lock(ctx, checkpoint.LeaseOptions{ID: "resumed"})
			if b.lapses {
				// Until its lease lapses nobody can tell a crashed holder
				// from one that is slow to renew.
				lerr := requireLocked(t, err, "child", cmd.Process.Pid)
				assert.WithinDuration(t, time.Now().Add(leaseChildTTL), lerr.Holder.Expires, leaseChildTTL)
				assert.Contains(t, err.Error(), "lapses at")
				time.Sleep(time.Until(lerr.Holder.Expires) + 50*time.Millisecond)
				err = r.Lock(ctx, checkpoint.LeaseOptions{ID: "resumed"})
			}
			require.NoError(t, err, "the crashed writer's lease is taken")
			_, err = r.Commit(ctx, 1, writeTree(t, smallTree(1)), nil, 1)
			require.NoError(t, err)
			require.NoError(t, r.Unlock(ctx))
		})
	}
}
