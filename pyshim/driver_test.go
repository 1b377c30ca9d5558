package pyshim

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/rtrain/rtrain/internal/pyenv"
	"github.com/rtrain/rtrain/internal/testutil"
)

// A driver runs as a user runs one: `python driver.py` with the wheel
// installed in a fresh venv, from the driver's directory, with a home of
// its own (results, the shim's cache).

// driver copies testdata/drivers/name into a new directory and returns a
// command that runs it there.
func driver(t *testing.T, ctx context.Context, name string, env ...string) *exec.Cmd {
	t.Helper()
	py := pyenv.Venv(t)
	dir := t.TempDir()
	src, err := os.ReadFile(filepath.Join("testdata", "drivers", name))
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(dir, name), src, 0o644))
	cmd := exec.CommandContext(ctx, py.Python, name)
	cmd.Dir = dir
	cmd.Env = append(py.Env(), append([]string{"HOME=" + t.TempDir()}, env...)...)
	return cmd
}

// lastJSON runs cmd and decodes the last line of its stdout into v; it
// returns stdout and stderr together for messages.
func lastJSON(t *testing.T, cmd *exec.Cmd, v any) string {
	t.Helper()
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	all := stdout.String() + stderr.String()
	require.NoError(t, err, all)
	lines := strings.Split(strings.TrimSpace(stdout.String()), "\n")
	require.NoError(t, json.Unmarshal([]byte(lines[len(lines)-1]), v), all)
	return all
}

type trainOut struct {
	Metrics    map[string]any `json:"metrics"`
	Epochs     []int          `json:"epochs"`
	Checkpoint string         `json:"checkpoint"`
	SavedEpoch int            `json:"saved_epoch"`
	Path       string         `json:"path"`
	Best       int            `json:"best"`
	Returned   map[string]int `json:"returned"`
}

func TestDriverFitsAndResumesByName(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 4*time.Minute)
	defer cancel()
	storage := t.TempDir()

	var first trainOut
	out := lastJSON(t, driver(t, ctx, "train.py", "EPOCHS=3", "STORAGE="+storage), &first)
	assert.Equal(t, []int{0, 1, 2}, first.Epochs, out)
	assert.Equal(t, 2.0, first.Metrics["world"], "both ranks in the all_reduce")
	assert.Equal(t, filepath.Join(storage, "drv", "checkpoint_000003"), first.Checkpoint)
	assert.Equal(t, 2, first.SavedEpoch, "the checkpoint read back through as_directory()")
	assert.Equal(t, filepath.Join(storage, "drv"), first.Path)
	assert.Equal(t, 3, first.Best)
	assert.Equal(t, map[string]int{"rank": 0, "last": 2}, first.Returned, "rank 0's return value")
	assert.Contains(t, out, "[rank 1] epoch 2 done", "workers' logs stream with rank prefixes")
	assert.FileExists(t, filepath.Join(storage, "drv", "result.json"))

	// The same name and storage: the run goes on from its latest
	// checkpoint, and says so.
	var second trainOut
	out = lastJSON(t, driver(t, ctx, "train.py", "EPOCHS=5", "STORAGE="+storage), &second)
	assert.Equal(t, []int{3, 4}, second.Epochs, out)
	assert.Contains(t, out, "from "+filepath.Join(storage, "drv", "checkpoint_000003"))
	assert.Equal(t, filepath.Join(storage, "drv", "checkpoint_000005"), second.Checkpoint)
	assert.Equal(t, 4, second.SavedEpoch)
}

func TestDriverRaisesTheRootCause(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	var got struct {
		Message  string            `json:"message"`
		Failures map[string]string `json:"failures"`
	}
	out := lastJSON(t, driver(t, ctx, "fails.py"), &got)
	first, _, _ := strings.Cut(got.Message, "\n")
	assert.Equal(t, "rank 1 failed (exit code 1): ValueError: bad batch on rank 1", first, out)
	assert.Contains(t, got.Message, `raise ValueError("bad batch on rank 1")`, "the end of its traceback")
	assert.Equal(t, "ValueError: bad batch on rank 1", got.Failures["1"])
}

func TestDriverRefusesBadInput(t *testing.T) {
	tests := []struct {
		name     string
		wantType string
		want     []string
	}{
		{"no_workers", "ValueError", []string{"num_workers=0", "at least 1 worker"}},
		{"gpu", "ValueError", []string{"asked 2 GPUs, this node has 0"}},
		{"two_args", "ValueError", []string{"should take in 0 or 1 required arguments, but it accepts 2"}},
		{"storage", "ValueError", []string{"gs://", "s3://BUCKET/PREFIX"}},
		{"unpicklable", "TypeError", []string{"uses_lock", "global variable 'lock'", "lock", "inside the train function"}},
		{"address", "RuntimeError", []string{"127.0.0.1:1", "cannot reach it"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
			defer cancel()
			var got struct {
				Type    *string `json:"type"`
				Message string  `json:"message"`
			}
			marker := testutil.Marker(t)
			out := lastJSON(t, driver(t, ctx, "bad.py", "CASE="+tt.name, marker), &got)
			require.NotNil(t, got.Type, "fit() returned: %s", out)
			assert.Equal(t, tt.wantType, *got.Type, got.Message)
			assert.NotContains(t, got.Message, "\n", "one line")
			for _, w := range tt.want {
				assert.Contains(t, got.Message, w)
			}
			assert.NotContains(t, out, "starting", "no worker started")
			testutil.NoProcesses(t, marker, 5*time.Second)
		})
	}
}

func TestDriverKilledStopsItsWorkers(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	marker := testutil.Marker(t)
	cmd := driver(t, ctx, "sleeps.py", marker)
	stdout, err := cmd.StdoutPipe()
	require.NoError(t, err)
	cmd.Stderr = cmd.Stdout
	require.NoError(t, cmd.Start())
	sc := bufio.NewScanner(stdout)
	up := false
	for sc.Scan() {
		if strings.Contains(sc.Text(), "up=1") {
			up = true
			break
		}
	}
	require.True(t, up, "the workers never reported")
	go func() { _, _ = io.Copy(io.Discard, stdout) }()
	require.NoError(t, cmd.Process.Signal(syscall.SIGKILL))
	_ = cmd.Wait()
	// rtrain fit gets SIGTERM when its driver dies and stops the workers
	// within their grace.
	testutil.NoProcesses(t, marker, 15*time.Second)
}

func TestDriverStoresInS3(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 4*time.Minute)
	defer cancel()
	srv := testutil.MinIO(t)
	bucket := srv.Bucket
	env := srv.Env()

	var got trainOut
	out := lastJSON(t, driver(t, ctx, "train.py", append(env, "EPOCHS=2", "STORAGE=s3://"+bucket+"/runs")...), &got)
	assert.Equal(t, "s3://"+bucket+"/runs/drv/checkpoint_000002", got.Checkpoint, out)
	assert.Equal(t, 1, got.SavedEpoch, "downloaded from S3 through as_directory()")
	assert.Equal(t, "s3://"+bucket+"/runs/drv", got.Path)
}

// The porting rule: a Ray Train program runs after the one mechanical
// rewrite, its --smoke-test path's ray.init(num_cpus=3) included.
func TestRayProgramRunsAfterThePortingRule(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	py := pyenv.Venv(t)
	examples := filepath.Join(testutil.RepoRoot(t), "examples", "ray")
	ray, err := os.Open(filepath.Join(examples, "linear.py"))
	require.NoError(t, err)
	defer ray.Close()
	port := exec.CommandContext(ctx, filepath.Join(examples, "port.sh"))
	port.Stdin = ray
	ported, err := port.Output()
	require.NoError(t, err)
	require.NotContains(t, string(ported), "import ray")

	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "linear.py"), ported, 0o644))
	cmd := exec.CommandContext(ctx, py.Python, "linear.py", "--smoke-test", "--storage-path", filepath.Join(dir, "runs"))
	cmd.Dir = dir
	cmd.Env = append(py.Env(), "HOME="+t.TempDir())
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "%s", out)
	assert.Contains(t, string(out), "{'epoch': 2, 'loss': ", "result.metrics printed")
	assert.Contains(t, string(out), "2 workers, 3 reports")
}

// Ctrl-C in the driver stops every worker and raises KeyboardInterrupt; a
// second one exits at once, the workers' reapers stopping them.
func TestDriverCtrlC(t *testing.T) {
	for _, presses := range []int{1, 2} {
		t.Run(fmt.Sprintf("%d", presses), func(t *testing.T) {
			ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
			defer cancel()
			marker := testutil.Marker(t)
			cmd := driver(t, ctx, "sleeps.py", marker)
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			stdout, err := cmd.StdoutPipe()
			require.NoError(t, err)
			require.NoError(t, cmd.Start())
			sc := bufio.NewScanner(stdout)
			for sc.Scan() && !strings.Contains(sc.Text(), "up=1") {
			}
			go func() { _, _ = io.Copy(io.Discard, stdout) }()
			for range presses {
				require.NoError(t, cmd.Process.Signal(os.Interrupt))
				time.Sleep(100 * time.Millisecond)
			}
			err = cmd.Wait()
			require.NoError(t, ctx.Err(), "the driver hung after Ctrl-C:\n%s", stderr.String())
			var exit *exec.ExitError
			require.ErrorAs(t, err, &exit)
			assert.Contains(t, stderr.String(), "KeyboardInterrupt")
			assert.Contains(t, stderr.String(), "Ctrl-C again to exit at once")
			testutil.NoProcesses(t, marker, 15*time.Second)
		})
	}
}

// A function that captures a large object runs, with a warning that says
// how large and what to do instead.
func TestDriverWarnsOfALargeCapture(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	var got struct {
		Type *string `json:"type"`
	}
	out := lastJSON(t, driver(t, ctx, "bad.py", "CASE=large"), &got)
	assert.Nil(t, got.Type, out)
	assert.Contains(t, out, "uses_table and its config are 12.0 MiB serialized")
	assert.Contains(t, out, "global variable 'table' (12.0 MiB)")
	assert.Contains(t, out, "Load large data inside the train function")
}
