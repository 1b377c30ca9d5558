package trainer

import (
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/rtrain/rtrain/checkpoint"
	"github.com/rtrain/rtrain/cluster/sched"
)

// ErrInvalidConfig is wrapped by every error that is the caller's input, not
// the job: a bad flag, a missing script, no python with torch, a request the
// node can never satisfy. The CLI exits with its usage code on it.
var ErrInvalidConfig = errors.New("invalid configuration")

// configError is an input error: it prints as its own message and is an
// ErrInvalidConfig for errors.Is.
type configError struct{ err error }

func (e configError) Error() string   { return e.err.Error() }
func (e configError) Unwrap() []error { return []error{ErrInvalidConfig, e.err} }

func invalid(format string, args ...any) error {
	return configError{fmt.Errorf(format, args...)}
}

// DefaultGrace is how long a worker has between SIGTERM and SIGKILL when
// Config.Grace is 0.
const DefaultGrace = 5 * time.Second

// DefaultHangTimeout and DefaultHangPace are the hang watchdog of a job
// whose Config.HangTimeout is 0: it fails the job when no worker has
// reported for DefaultHangTimeout, or for DefaultHangPace times the
// longest wait between a rank's reports if that is longer, so a job that
// reports once an epoch is judged by its epochs. Generous: a false alarm
// costs a restart, or the job when MaxFailures is 0, where a hang that is
// caught late costs only the wait.
const (
	DefaultHangTimeout = 30 * time.Minute
	DefaultHangPace    = 4
)

// DefaultPidsPerWorker caps each worker's processes and threads when
// Config.PidsPerWorker is 0: room for DataLoader workers and their
// threads, not for a fork bomb.
const DefaultPidsPerWorker = 32768

// The values of Config.GPUIsolation and Config.Isolation.
const (
	GPUIsolationJob     = "job"
	GPUIsolationWorker  = "worker"
	IsolationBestEffort = "best-effort"
	IsolationStrict     = "strict"
)

// Config is one training job. The zero value of each field is documented;
// New validates the whole and fills nothing in behind the caller's back.
type Config struct {
	// Script is the Python training script. Give Script or Function.
	Script string
	// Args are passed to the script after its path.
	Args []string
	// Function is a file holding a train function and its config, as the
	// rtrain Python package writes it (rtrain.torch.TorchTrainer.fit):
	// every worker runs it through `python -m rtrain._worker FILE` (the
	// FunctionModule), which calls the function with the config. Give
	// Script or Function, not both; Args are then not allowed. With an
	// Address the file is shipped beside the working directory.
	Function string `json:",omitempty"`

	// Workers is the number of worker processes. Required, at least 1.
	Workers int
	// MinWorkers makes the job elastic: each attempt runs as many workers
	// as fit, from MinWorkers to Workers, and after a node is lost the job
	// goes on with fewer (within MaxFailures); when room returns, it
	// restarts with more at the next checkpoint. WORLD_SIZE and the ranks
	// are recomputed for each attempt. 0: exactly Workers.
	MinWorkers int
	// GPUsPerWorker is the number of GPUs each worker holds; 0 runs on CPU.
	GPUsPerWorker int
	// CPUsPerWorker reserves cores for each worker, caps its CPU time at
	// as many cores (a CFS quota in its cgroup), and sets its
	// OMP_NUM_THREADS. 0 reserves none: the workers share the node's cores
	// and OMP_NUM_THREADS is cores / workers on the node (at least 1).
	CPUsPerWorker float64
	// ResourcesPerWorker are custom resources each worker holds, by name,
	// like Ray's resources_per_worker: the scheduler only places a worker
	// on a node that offers them (`rtrain start --resources`). CPUs, GPUs
	// and memory have the fields above.
	ResourcesPerWorker map[string]float64 `json:",omitempty"`

	// NumCPUs overrides the embedded node's core count when > 0.
	NumCPUs float64
	// NumGPUs overrides the embedded node's GPU count when not nil, as
	// ray.init(num_gpus=...) does; without a driver GPU i is /dev/nvidia<i>.
	NumGPUs *int
	// Resources are the embedded node's custom resources, as
	// ray.init(resources=...) gives them.
	Resources map[string]float64 `json:",omitempty"`

	// Python is the interpreter. Empty: $RTRAIN_PYTHON, else the first
	// python3 on PATH that can import torch.
	Python string
	// Name is the run's name. Empty: the script's name, the date and a
	// random suffix.
	Name string
	// Group names the set of jobs this one belongs to, such as the sweep
	// whose trial it is: `rtrain jobs` shows it, and `rtrain stop --group`
	// stops the whole set. Empty: none.
	Group string `json:",omitempty"`
	// Params are the hyperparameters of the trial this job is, by name
	// (a nested one as "model/lr"), as its sweep chose them: for people,
	// in `rtrain jobs` and the dashboard; the job itself gets its config
	// otherwise. At most MaxParams, keys of up to MaxParamKey characters,
	// values of up to MaxParamValue. Empty: none.
	Params map[string]string `json:",omitempty"`
	// Metric is the reported metric the sweep judges its trials by, and
	// Mode (ModeMin or ModeMax) whether lower or higher is better: the
	// job's summary keeps the best value of Metric among rank 0's reports
	// (JobSummary.Best). Mode is required with Metric. Empty: none.
	Metric string `json:",omitempty"`
	Mode   string `json:",omitempty"`
	// Env is added to the environment the workers inherit, KEY=VALUE.
	Env []string
	// WorkingDir is the workers' working directory. Empty: the current one.
	WorkingDir string
	// ResultsDir is the local directory runs write to (logs under
	// <ResultsDir>/<Name>/logs). Empty: ~/rtrain_results.
	ResultsDir string
	// Grace is how long a worker has between SIGTERM and SIGKILL when the
	// job stops. 0 means DefaultGrace.
	Grace time.Duration

	// Each worker runs in a cgroup of its own, which holds everything it
	// spawns: the kernel enforces these limits, and rtrain kills the whole
	// group when the job ends, fails, is cancelled or rtrain dies.
	//
	// MemoryPerWorker caps each worker's memory in bytes, its children's
	// included; a worker over it is killed by the kernel and reported as
	// out of memory. It is also reserved on the node. 0 is no limit.
	MemoryPerWorker int64
	// PidsPerWorker caps each worker's processes and threads. 0 means
	// DefaultPidsPerWorker.
	PidsPerWorker int64
	// GPUIsolation is which GPUs a worker can open: GPUIsolationJob (the
	// default, "" too) lets the workers of a job on a node open all the
	// job's GPUs there and no other job's; GPUIsolationWorker only its own.
	// CUDA_VISIBLE_DEVICES and NVIDIA_VISIBLE_DEVICES list what it can open.
	GPUIsolation string
	// Isolation is what happens where the node cannot enforce all of the
	// above (not root, a controller missing, a container without a
	// delegated cgroup): IsolationBestEffort (the default, "" too) runs the
	// job with what it can enforce and says what is missing in one
	// EventWarning; IsolationStrict fails the job before any worker starts.
	Isolation string

	// Storage is where the run's checkpoints and result.json are kept, under
	// <Storage>/<Name>/: "s3://bucket/prefix" or a local directory. Empty:
	// ResultsDir. An S3 bucket must exist; rtrain never creates one.
	Storage string
	// S3 overrides the S3 settings rtrain otherwise takes from the
	// environment (AWS_ACCESS_KEY_ID, AWS_PROFILE, AWS_ENDPOINT_URL_S3, ...).
	S3 checkpoint.S3Options
	// Checkpoint says which checkpoints the run keeps.
	Checkpoint CheckpointConfig
	// Resume continues run Name from its latest committed checkpoint;
	// Name is required. Without Resume or ResumeFrom, a Name that already
	// has committed checkpoints is refused rather than overwritten.
	Resume bool
	// ResumeFrom starts from the checkpoint at this URI
	// (".../RUN/checkpoint_000003"), of this run or another.
	ResumeFrom string
	// ResumeExisting continues run Name from its latest committed
	// checkpoint when it has one, and starts it afresh (from ResumeFrom,
	// when set) when it has none: Ray Train V2's rule, which the Python
	// driver follows. Name is required.
	ResumeExisting bool `json:",omitempty"`
	// RestartFrom starts the run from the checkpoint at this URI even
	// when the run has checkpoints of its own, which stay; its next ones
	// go on from its own numbering. Population Based Training's exploit
	// does this: a trial goes on from a better trial's checkpoint. Name is
	// required.
	RestartFrom string `json:",omitempty"`

	// MaxFailures is how many worker failures the job survives: after
	// each, every worker is stopped and the group restarts, placed anew,
	// from the latest committed checkpoint. 0 (the default) restarts
	// never; -1 always. A worker lost with a drained node (preemption)
	// is restarted without counting. Workers that could not start on a
	// node (a cgroup or a process that could not be made, a node out of
	// disk) count as a failure too; input that can never start (a bad
	// config, strict isolation the node cannot give) fails the job at once.
	MaxFailures int
	// RetryExitCodes, when set, restarts only a failure whose root cause
	// exited with one of these codes; FatalExitCodes never restarts one
	// that exited with one of these. A root cause that never exited with a
	// code (its node lost, or its workers unable to start there) is judged
	// by MaxFailures alone.
	RetryExitCodes []int
	FatalExitCodes []int

	// HangTimeout fails the job (a failure MaxFailures may restart) when
	// no worker calls report() for this long once all are up: rtrain first
	// asks every worker for its Python stacks and shows them in the root
	// cause. 0 is the default watchdog, which only a job that has shown its
	// pace can trip: it arms once a rank has reported twice, and allows
	// DefaultHangTimeout or, if longer, DefaultHangPace times the longest
	// wait a rank has had for its next report (the wait for its first
	// included). A script that never reports, or reports once, is never
	// stopped by it. Negative turns the watchdog off.
	HangTimeout time.Duration

	// Placement is how the workers' bundles spread over nodes: PACK (the
	// default, "" too), SPREAD, STRICT_PACK or STRICT_SPREAD, as Ray's
	// placement groups.
	Placement string

	// Address is a cluster head's host:port. Empty: the job runs on an
	// embedded single-node cluster in this process. With an address, the
	// working directory (WorkingDir, or the current one) is shipped to
	// every node that runs a worker, Script must lie inside it, and
	// Storage is the head's: a local Storage or ResumeFrom path is on the
	// head, relative to its results directory and confined to it unless
	// the head allows more (HeadConfig.AllowedStorageRoots).
	Address string
	// Token is the cluster token; empty takes $RTRAIN_TOKEN.
	Token string `json:"-"`
	// TLSCA verifies the head's certificate; TLSCert and TLSKey are this
	// client's, for a head that asks for one. All empty: plain TCP.
	TLSCA, TLSCert, TLSKey string `json:"-"`
	// WorkingDirLimit caps the shipped working directory, in bytes (after
	// the ignore file .rtrainignore); 0 means 100 MiB.
	WorkingDirLimit int64

	// OnEvent, if set, receives every event of the job, in order, one call
	// at a time. It must not block for long: workers' output waits for it.
	OnEvent func(Event) `json:"-"`
}

// minCPUs is the smallest CPU quota the kernel takes: 1ms every 100ms.
const minCPUs = 0.01

var envKey = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

var runName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]*$`)

func (c *Config) validate() error {
	if err := c.validateFields(); err != nil {
		return err
	}
	return c.validateFiles()
}

// validateFields checks what does not depend on this machine's files: a
// head checks a job submitted from elsewhere with it.
func (c *Config) validateFields() error {
	bad := func(format string, args ...any) error {
		return invalid(format, args...)
	}
	switch {
	case c.Script == "" && c.Function == "":
		return bad("no script given; usage: rtrain fit [flags] SCRIPT [-- ARGS...]")
	case c.Script != "" && c.Function != "":
		return bad("give a script or --function, not both")
	case c.Function != "" && len(c.Args) > 0:
		return bad("--function takes no script arguments: the function gets its config")
	case c.Workers < 1:
		return bad("--workers must be at least 1, got %d", c.Workers)
	case c.MinWorkers < 0 || c.MinWorkers > c.Workers:
		return bad("--workers %d:%d: the minimum must be between 1 and the maximum", c.MinWorkers, c.Workers)
	case c.GPUsPerWorker < 0:
		return bad("--gpus-per-worker must be 0 or more, got %d", c.GPUsPerWorker)
	case c.CPUsPerWorker < 0:
		return bad("--cpus-per-worker must be 0 or more, got %g", c.CPUsPerWorker)
	case c.CPUsPerWorker > 0 && c.CPUsPerWorker < minCPUs:
		return bad("--cpus-per-worker %g is below the kernel's smallest CPU quota, %g", c.CPUsPerWorker, minCPUs)
	case c.MemoryPerWorker < 0:
		return bad("--memory-per-worker must be 0 (no limit) or more, got %d", c.MemoryPerWorker)
	case c.PidsPerWorker < 0:
		return bad("--pids-per-worker must be 0 (the default, %d) or more, got %d", DefaultPidsPerWorker, c.PidsPerWorker)
	case c.GPUIsolation != "" && c.GPUIsolation != GPUIsolationJob && c.GPUIsolation != GPUIsolationWorker:
		return bad("--gpu-isolation %q: want job or worker", c.GPUIsolation)
	case c.Isolation != "" && c.Isolation != IsolationBestEffort && c.Isolation != IsolationStrict:
		return bad("--isolation %q: want best-effort or strict", c.Isolation)
	case c.NumCPUs < 0:
		return bad("--num-cpus must be 0 or more, got %g", c.NumCPUs)
	case c.NumGPUs != nil && *c.NumGPUs < 0:
		return bad("--num-gpus must be 0 or more, got %d", *c.NumGPUs)
	case c.Grace < 0:
		return bad("grace period must not be negative, got %s", c.Grace)
	case c.Resume && c.Name == "":
		return bad("--resume needs --name: the run to continue")
	case c.Resume && c.ResumeFrom != "":
		return bad("--resume and --resume-from both name a checkpoint; give one")
	case c.ResumeExisting && c.Name == "":
		return bad("--resume-existing needs --name: the run to continue")
	case c.ResumeExisting && c.Resume:
		return bad("--resume and --resume-existing: give one")
	case c.RestartFrom != "" && (c.Resume || c.ResumeFrom != "" || c.ResumeExisting):
		return bad("--restart-from names the checkpoint to start from; it does not go with --resume, --resume-from or --resume-existing")
	case c.RestartFrom != "" && c.Name == "":
		return bad("--restart-from needs --name: the run to go on")
	case c.Checkpoint.Keep < 0:
		return bad("--checkpoint-keep must be 0 (keep all) or more, got %d", c.Checkpoint.Keep)
	case c.Checkpoint.InFlight < 0:
		return bad("checkpoints in flight must be 0 (default) or more, got %d", c.Checkpoint.InFlight)
	case c.Checkpoint.Order != "" && c.Checkpoint.Order != "max" && c.Checkpoint.Order != "min":
		return bad("--checkpoint-order %q: want max or min", c.Checkpoint.Order)
	case c.Checkpoint.Order != "" && c.Checkpoint.Score == "":
		return bad("--checkpoint-order needs --checkpoint-score: the metric to order by")
	case c.Placement != "" && !validPlacement(c.Placement):
		return bad("--placement %q: want PACK, SPREAD, STRICT_PACK or STRICT_SPREAD", c.Placement)
	case c.MaxFailures < -1:
		return bad("--max-failures must be -1 (no limit), 0 (the default) or more, got %d", c.MaxFailures)
	case c.WorkingDirLimit < 0:
		return bad("--working-dir-limit must be 0 (the default) or more, got %d", c.WorkingDirLimit)
	case c.Group != "" && !runName.MatchString(c.Group):
		return bad("--group %q: use letters, digits, '.', '_' and '-', starting with a letter or digit", c.Group)
	case c.Name != "" && !runName.MatchString(c.Name):
		return bad("run name %q: use letters, digits, '.', '_' and '-', starting with a letter or digit", c.Name)
	}
	if err := c.validateTrial(); err != nil {
		return err
	}
	for _, kv := range c.Env {
		k, _, ok := strings.Cut(kv, "=")
		if !ok || !envKey.MatchString(k) {
			return bad("--env %q: want KEY=VALUE", kv)
		}
	}
	if _, err := sched.CustomOf(c.ResourcesPerWorker); err != nil {
		return bad("--resources-per-worker: %v", err)
	}
	if _, err := sched.CustomOf(c.Resources); err != nil {
		return bad("--resources: %v", err)
	}
	return nil
}

func validPlacement(s string) bool {
	_, err := sched.ParseStrategy(s)
	return err == nil
}

// validateFiles checks the script and working directory on this machine.
func (c *Config) validateFiles() error {
	bad := func(format string, args ...any) error {
		return invalid(format, args...)
	}
	// A relative script is found from where rtrain runs, as a shell would;
	// the working dir only changes where the workers start.
	what, file := "script", c.Script
	if c.Function != "" {
		what, file = "--function", c.Function
	}
	fi, err := os.Stat(file)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return bad("%s %s does not exist", what, file)
	case err != nil:
		return bad("%s %s: %v", what, file, err)
	case fi.IsDir():
		return bad("%s %s is a directory; give the file to run", what, file)
	}
	if c.WorkingDir != "" {
		fi, err := os.Stat(c.WorkingDir)
		if err != nil || !fi.IsDir() {
			return bad("--working-dir %s is not a directory", c.WorkingDir)
		}
	}
	return nil
}

// bundle is what each worker reserves. Validate has checked the custom
// resources.
func (c Config) bundle() sched.Resources {
	return sched.Resources{CPU: c.CPUsPerWorker, GPU: c.GPUsPerWorker, MemoryBytes: c.MemoryPerWorker, Custom: sched.MustCustom(c.ResourcesPerWorker)}
}

// confineLocal resolves where a storage location that a remote client
// named (flag is its flag, for the message) lies on the head: a relative
// path is taken from root, the head's results directory, and the place
// must lie inside root or one of also (HeadConfig.AllowedStorageRoots),
// symbolic links followed. A client's local path means nothing on the head,
// and without this any path the head's user can write to would do. URLs
// other than file:// name no place on the head and are returned as given,
// as are the forms checkpoint.Open refuses by itself.
func confineLocal(flag, loc, root string, also []string) (string, error) {
	path := loc
	if scheme, _, isURL := strings.Cut(loc, "://"); isURL {
		u, err := url.Parse(loc)
		if !strings.EqualFold(scheme, "file") || err != nil || (u.Host != "" && u.Host != "localhost") {
			return loc, nil
		}
		path = u.Path
	} else if name, _, ok := strings.Cut(loc, ":"); ok && urlScheme.MatchString(name) {
		// A URL missing its "//" ("s3:bucket"), which checkpoint.Open
		// refuses: joined to root it would turn into a local directory.
		return loc, nil
	}
	switch {
	case path == "" || (strings.HasPrefix(path, "~") && path != "~" && !strings.HasPrefix(path, "~/")):
		return loc, nil // refused by checkpoint.Open, with its own message
	case path == "~" || strings.HasPrefix(path, "~/"):
		home, err := os.UserHomeDir()
		if err != nil {
			return "", invalid("%s %s: the head has no home directory; give a path inside its results directory %s", flag, loc, root)
		}
		path = filepath.Join(home, path[1:])
	case !filepath.IsAbs(path):
		path = filepath.Join(root, path)
	}
	path = filepath.Clean(path)
	resolved := resolveExisting(path)
	for _, dir := range append([]string{root}, also...) {
		if rel, err := filepath.Rel(resolveExisting(dir), resolved); err == nil && filepath.IsLocal(rel) {
			return path, nil
		}
	}
	return "", invalid("%s %s is outside the head's results directory %s: give a path inside it (a relative one is taken from there) or an s3:// URL, or start the head with %s DIR to allow another",
		flag, loc, root, allowStorageFlag)
}

// allowStorageFlag is the head's flag (`rtrain start --head`) that sets
// HeadConfig.AllowedStorageRoots, for the message that names it.
const allowStorageFlag = "--allow-storage"

// urlScheme is what can stand before ":" in a URL: checkpoint.Open's test
// for a storage URL missing its "//".
var urlScheme = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9+.-]*$`)

// resolveExisting is path with the symbolic links of its longest existing
// ancestor resolved: where a directory made there would really be.
func resolveExisting(path string) string {
	var rest []string
	for p := filepath.Clean(path); ; p = filepath.Dir(p) {
		if resolved, err := filepath.EvalSymlinks(p); err == nil {
			return filepath.Join(append([]string{resolved}, rest...)...)
		}
		if filepath.Dir(p) == p {
			return filepath.Clean(path)
		}
		rest = append([]string{filepath.Base(p)}, rest...)
	}
}

// resultsDir is where runs go when Config.ResultsDir or HeadConfig.ResultsDir
// is dir: dir itself, ~/rtrain_results when empty; absolute.
func resultsDir(dir string) (string, error) {
	if dir == "" {
		home, err := os.UserHomeDir()
		if err != nil {
			return "", invalid("no home directory for the results; set ResultsDir")
		}
		return filepath.Join(home, "rtrain_results"), nil
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return "", fmt.Errorf("trainer: results directory %s: %w", dir, err)
	}
	return abs, nil
}
