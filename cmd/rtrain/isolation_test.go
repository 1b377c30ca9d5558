package main

import (
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/rtrain/rtrain/internal/testutil"
)

func TestParseBytes(t *testing.T) {
	for in, want := range map[string]int64{
		"300M": 300 << 20, "300m": 300 << 20, "2G": 2 << 30, "1.5GiB": 3 << 29, "512KB": 512 << 10,
		"1024": 1024, "0": 0, " 4 MiB ": 4 << 20, "1T": 1 << 40, "10b": 10,
	} {
		got, err := parseBytes(in)
		if assert.NoError(t, err, in) {
			assert.Equal(t, want, got, "parseBytes(%q)", in)
		}
	}
	for _, in := range []string{"", "abc", "M", "-1G", "1X", "1.5.2G", "1GG", "NaN", "Inf", "9999999999T"} {
		_, err := parseBytes(in)
		assert.Error(t, err, "parseBytes(%q)", in)
	}
}

func TestIsolationUsageErrors(t *testing.T) {
	testutil.Python(t)
	script := repo(t, "examples", "train_rtrain.py")
	for name, tt := range map[string]struct {
		args []string
		want string
	}{
		"memory":        {[]string{"--memory-per-worker", "abc"}, `--memory-per-worker "abc": want a size like 300M, 2G or 1.5GiB`},
		"gpu isolation": {[]string{"--gpu-isolation", "foo"}, `--gpu-isolation "foo": want job or worker`},
		"isolation":     {[]string{"--isolation", "loose"}, `--isolation "loose": want best-effort or strict`},
	} {
		t.Run(name, func(t *testing.T) {
			c := rtrain(t, append(append([]string{"fit"}, tt.args...), script)...)
			assert.Equal(t, exitUsage, c.run(t))
			assert.Equal(t, "rtrain: "+tt.want+"\n", c.stderr.String())
		})
	}
}

func TestOutOfMemoryIsTheRootCause(t *testing.T) {
	testutil.Python(t)
	testutil.RequireCgroups(t)
	c := rtrain(t, "fit", "--memory-per-worker", "300M", repo(t, "trainer", "testdata", "oom.py"))
	assert.Equal(t, exitFailed, c.run(t))
	errs := c.stderr.String()
	assert.Contains(t, errs, "rtrain: rank 0 (pid ")
	assert.Regexp(t, `root cause: rank 0 on local \(pid \d+\) killed: out of memory, limit 300M\n`, errs)
	assert.NotContains(t, errs, "signal 9")
}

// withoutCgroups runs rtrain in a mount namespace where /sys/fs/cgroup is
// an empty tmpfs, as in a container that was given no cgroup: rtrain must
// still run, with one warning, or refuse under --isolation=strict.
func withoutCgroups(t *testing.T, args ...string) *cli {
	t.Helper()
	testutil.RequireRoot(t)
	unshare, err := exec.LookPath("unshare")
	if err != nil {
		t.Skip("no unshare(1)")
	}
	c := rtrain(t, args...)
	script := `mount -t tmpfs none /sys/fs/cgroup && exec "$@"`
	c.cmd.Path = unshare
	c.cmd.Args = append([]string{unshare, "--mount", "--propagation", "private", "sh", "-c", script, "sh", os.Args[0]}, args...)
	return c
}

func TestWithoutCgroupsOneWarning(t *testing.T) {
	testutil.Python(t)
	hello := repo(t, "cmd", "rtrain", "testdata", "hello.py")
	c := withoutCgroups(t, "fit", "-n", "2", "--memory-per-worker", "1G", hello)
	require.Equal(t, exitOK, c.run(t), "stderr: %s", c.stderr.String())
	assert.Contains(t, c.stdout.String(), "[rank 1] hello from rank 1")
	errs := c.stderr.String()
	assert.Equal(t, 1, strings.Count(errs, "warning"), "stderr: %s", errs)
	assert.Contains(t, errs, "rtrain: warning: node local cannot enforce memory limit, pids limit: cgroup: no usable cgroup hierarchy: /sys/fs/cgroup: no cgroup filesystem mounted")
	assert.Contains(t, errs, "--isolation=strict would refuse")

	c = withoutCgroups(t, "fit", "--isolation", "strict", hello)
	assert.Equal(t, exitFailed, c.run(t))
	lines := strings.Split(strings.TrimSpace(c.stderr.String()), "\n")
	assert.Equal(t, "rtrain: strict isolation: node local cannot enforce pids limit: cgroup: no usable cgroup hierarchy: "+
		"/sys/fs/cgroup: no cgroup filesystem mounted (run rtrain as root, or in a container with a delegated cgroup)", lines[len(lines)-1])
	assert.NotContains(t, c.stdout.String(), "[rank", "no worker started")
}
