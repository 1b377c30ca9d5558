package trainer

import (
	"context"
	"log/slog"
	"path/filepath"

	"github.com/rtrain/rtrain/cluster"
	"github.com/rtrain/rtrain/cluster/sched"
)

// The head (package cluster/head) runs the jobs clients submit through the
// same job runner as Fit: this file is the seam it drives.

// Backend is the cluster a job is placed on and run by: the scheduler, a
// signal that a node joined, and the agent of each node.
type Backend interface {
	Scheduler() *sched.Scheduler
	Joined() <-chan struct{}
	Agent(id string) (cluster.NodeAgent, bool)
}

// RemoteJob is a job a client submitted, to run on a head's cluster.
type RemoteJob struct{ j *job }

// NewRemoteJob checks cfg, which came over the wire, and readies the job:
// script is its path inside the shipped working directory wd, results
// the head's results directory. Errors of the caller's input wrap
// ErrInvalidConfig.
func NewRemoteJob(cfg Config, script string, wd cluster.Workdir, results string, be Backend, log *slog.Logger) (*RemoteJob, error) {
	if err := cfg.validateFields(); err != nil {
		return nil, err
	}
	if cfg.Function != "" {
		if script != "" {
			return nil, invalid("a job runs a script or a function, not both")
		}
	} else if !filepath.IsLocal(script) {
		return nil, invalid("script %q must be a path inside the working directory", script)
	}
	cfg.ResultsDir = results
	cfg.WorkingDir = ""
	t := &Trainer{cfg: cfg, log: log}
	j, err := t.newJob()
	if err != nil {
		return nil, err
	}
	j.script = script
	j.remote = &remoteInput{backend: be, workdir: wd, script: script}
	return &RemoteJob{j: j}, nil
}

// ID is the job's id; Name its run's name; LogDir where its rank_<N>.log
// files go.
func (r *RemoteJob) ID() string     { return r.j.id }
func (r *RemoteJob) Name() string   { return r.j.res.Name }
func (r *RemoteJob) LogDir() string { return r.j.res.LogDir }

// Run runs the job to its end, calling onEvent with each event as Fit's
// Config.OnEvent would be.
func (r *RemoteJob) Run(ctx context.Context, onEvent func(Event)) (*Result, error) {
	r.j.cfg.OnEvent = onEvent
	return r.j.run(ctx)
}

// ConfineLocal is path, a job's local storage or checkpoint to resume from
// as a client named it (flag names the flag, for the message), resolved on
// the head: it must lie inside results or one of also. S3 and other URLs
// pass unchanged. A refusal wraps ErrInvalidConfig.
func ConfineLocal(flag, path, results string, also []string) (string, error) {
	return confineLocal(flag, path, results, also)
}

// ResultsDir is where runs go for a configured directory dir: dir itself,
// ~/rtrain_results when empty; absolute.
func ResultsDir(dir string) (string, error) { return resultsDir(dir) }

// Invalid is an error of the caller's input: it wraps ErrInvalidConfig.
func Invalid(format string, args ...any) error { return invalid(format, args...) }

// remoteInput is what a job submitted to a head brings: its working
// directory and the script's path inside it.
type remoteInput struct {
	backend backend
	workdir cluster.Workdir
	script  string
}

// StateLost is the state of a job whose head restarted while it ran: its
// workers were stopped (their agents stop them when the head forgets their
// node) and it did not end by itself. A lost job is shown as such, never
// forgotten.
const StateLost State = "LOST"
