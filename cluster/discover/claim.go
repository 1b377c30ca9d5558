package discover

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/rtrain/rtrain/cluster/sched"
	"github.com/rtrain/rtrain/internal/text"
)

// RuntimeDirEnv names the directory where the rtrain processes of a machine
// keep what they share: the GPU claims. Unset: /run/rtrain, or
// $TMPDIR/rtrain-runtime where /run is not writable.
const RuntimeDirEnv = "RTRAIN_RUNTIME_DIR"

// GPUClaim is GPUs of this machine held by this process. Every rtrain
// process runs a cluster of its own until there is a shared head, so two
// jobs started at once would both be handed GPU 0; claims keep them apart.
// A claim is a flock on one file per GPU, which the kernel releases when
// the process dies, however it dies.
type GPUClaim struct {
	// GPUs are the claimed GPUs, in the order given to ClaimGPUs.
	GPUs  []sched.GPU
	files []*os.File
}

// ClaimGPUs claims the first n of gpus that no other process holds. It
// fails, wrapping ErrWouldWait, when fewer than n are free, naming the
// holders.
func ClaimGPUs(gpus []sched.GPU, n int) (*GPUClaim, error) {
	dir, err := claimDir()
	if err != nil {
		return nil, err
	}
	c := &GPUClaim{}
	var held []string
	for _, gpu := range gpus {
		if len(c.GPUs) == n {
			break
		}
		f, holder, err := lockGPU(dir, gpu)
		if err != nil {
			c.Release()
			return nil, err
		}
		if f == nil {
			held = append(held, fmt.Sprintf("GPU %d (%s)", gpu.Index, holder))
			continue
		}
		c.GPUs, c.files = append(c.GPUs, gpu), append(c.files, f)
	}
	if len(c.GPUs) < n {
		c.Release()
		free, are := len(gpus)-len(held), "are"
		if free == 1 {
			are = "is"
		}
		return nil, sched.WouldWait("asked %s, %d of this machine's %d %s free: %s held by other rtrain jobs; retry when they end",
			text.Plural(n, "GPU"), free, len(gpus), are, strings.Join(held, ", "))
	}
	return c, nil
}

// Release gives the GPUs back.
func (c *GPUClaim) Release() {
	for _, f := range c.files {
		_ = f.Close() // closing the last descriptor drops the flock
	}
	c.files, c.GPUs = nil, nil
}

// lockGPU takes gpu's lock. It returns a nil file and who holds it when
// another process does.
func lockGPU(dir string, gpu sched.GPU) (*os.File, string, error) {
	name := "minor-" + strconv.Itoa(gpu.Minor)
	if gpu.UUID != "" {
		name = gpu.UUID
	}
	path := filepath.Join(dir, name+".lock")
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o666)
	if errors.Is(err, os.ErrPermission) {
		f, err = os.Open(path) // another user's file: flock needs no write
	}
	if err != nil {
		return nil, "", fmt.Errorf("cluster: claim GPU %d: %w", gpu.Index, err)
	}
	// Every user's jobs share the locks; the umask must not keep them out.
	_ = f.Chmod(0o666)
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		b, _ := os.ReadFile(f.Name())
		_ = f.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			holder := "pid " + strings.TrimSpace(string(b))
			if len(b) == 0 {
				holder = "another process"
			}
			return nil, holder, nil
		}
		return nil, "", fmt.Errorf("cluster: claim GPU %d: %w", gpu.Index, err)
	}
	// Who holds it, for the message of whoever finds it taken.
	if err := f.Truncate(0); err == nil {
		_, _ = f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	}
	return f, "", nil
}

// claimDir is where the GPU locks live, created on first use.
func claimDir() (string, error) {
	bases := []string{"/run/rtrain", filepath.Join(os.TempDir(), "rtrain-runtime")}
	if d := os.Getenv(RuntimeDirEnv); d != "" {
		bases = []string{d}
	}
	var errs []error
	for _, base := range bases {
		dir := filepath.Join(base, "gpus")
		if err := os.MkdirAll(dir, 0o755); err != nil {
			errs = append(errs, err)
			continue
		}
		// Shared by every user, as /tmp is; fails harmlessly on another's.
		_ = os.Chmod(dir, 0o1777)
		if unix.Access(dir, unix.W_OK) == nil {
			return dir, nil
		}
		errs = append(errs, fmt.Errorf("%s is not writable", dir))
	}
	return "", fmt.Errorf("cluster: no directory for GPU claims (set %s): %w", RuntimeDirEnv, errors.Join(errs...))
}
