package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/rtrain/rtrain/checkpoint"
	"github.com/rtrain/rtrain/cluster/agent"
	"github.com/rtrain/rtrain/cluster/auth"
	"github.com/rtrain/rtrain/cluster/sched"
	"github.com/rtrain/rtrain/internal/text"
	"github.com/rtrain/rtrain/trainer"
)

type fitOptions struct {
	workers       string
	gpu           bool
	gpusPerWorker int
	cpusPerWorker float64
	numCPUs       float64
	numGPUs       int
	resources     string
	perWorker     string
	python        string
	name          string
	group         string
	params        []string
	metric        string
	mode          string
	env           []string
	workingDir    string
	resultsDir    string
	grace         time.Duration
	verbose       bool
	quiet         bool
	storage       string
	s3            checkpoint.S3Options
	ckptKeep      int
	ckptScore     string
	ckptOrder     string
	resume        bool
	resumeExist   bool
	resumeFrom    string
	restartFrom   string
	function      string
	resultJSON    string
	events        string
	iso           isolationOptions
	cluster       clusterFlags
	placement     string
	noWait        bool
	workdirLimit  int64
	maxFailures   int
	retryCodes    []int
	fatalCodes    []int
	hangTimeout   time.Duration
	progress      string
}

func newFitCmd() *cobra.Command {
	o := &fitOptions{}
	cmd := &cobra.Command{
		Use:   "fit [flags] (SCRIPT [-- SCRIPT_ARGS...] | --function FILE)",
		Short: "Run a training script on a group of workers",
		Long: `fit runs SCRIPT on --workers processes wired for torch.distributed.

Each worker gets torchrun's environment (MASTER_ADDR, MASTER_PORT, RANK,
LOCAL_RANK, WORLD_SIZE, ...), so torchrun scripts run unchanged; scripts may
also use the rtrain Python package (rtrain.report, rtrain.torch.prepare_model),
which rtrain puts on the workers' PYTHONPATH. With no cluster address the job
runs on this machine through an embedded head and agent.

Everything after SCRIPT is passed to the script.

Instead of a script, --function runs a train function that the rtrain Python
package serialized (TorchTrainer.fit does this): each worker calls it with
its config. --result-json writes how the job ended, for programs; its format
is in pyshim/PROTOCOL.md.`,
		Example: `  rtrain fit --workers 4 examples/train_rtrain.py
  rtrain fit --workers 2 --gpu train.py -- --epochs 10
  rtrain fit --workers 4 --env NCCL_DEBUG=INFO --name resnet-run train.py
  rtrain fit --workers 4 --storage s3://bucket/runs --name resnet-run --resume train.py
  rtrain fit --address HEAD:PORT --group sweep-1 --param lr=0.01 --metric loss --mode min train.py -- --lr 0.01`,
		Args: func(cmd *cobra.Command, args []string) error {
			fn := cmd.Flags().Changed("function")
			switch {
			case len(args) == 0 && !fn:
				return usageError{errors.New("no script given; usage: rtrain fit [flags] SCRIPT [-- SCRIPT_ARGS...]")}
			case len(args) > 0 && fn:
				return usageError{fmt.Errorf("--function runs a function, not a script: drop %s", args[0])}
			}
			return nil
		},
		ValidArgsFunction: func(*cobra.Command, []string, string) ([]string, cobra.ShellCompDirective) {
			return []string{"py"}, cobra.ShellCompDirectiveFilterFileExt
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			return o.run(cmd, args)
		},
	}
	// Flags end at SCRIPT: what follows belongs to the script, as with
	// torchrun and python itself.
	cmd.Flags().SetInterspersed(false)
	f := cmd.Flags()
	f.StringVarP(&o.workers, "workers", "n", "1", "number of worker processes, or MIN:MAX for an elastic job (as many as fit, at least MIN)")
	f.BoolVar(&o.gpu, "gpu", false, "give each worker one GPU (same as --gpus-per-worker 1)")
	f.IntVar(&o.gpusPerWorker, "gpus-per-worker", 0, "GPUs per worker")
	f.Float64Var(&o.cpusPerWorker, "cpus-per-worker", 0, "CPU cores reserved per worker; 0 shares the node's cores")
	f.Float64Var(&o.numCPUs, "num-cpus", 0, "override the CPU cores the embedded node reports")
	f.IntVar(&o.numGPUs, "num-gpus", -1, "override the GPUs the embedded node reports (GPU i is /dev/nvidia<i>)")
	f.StringVar(&o.resources, "resources", "", `custom resources the embedded node offers, as JSON ('{"licence": 2}') or name=qty,...`)
	f.StringVar(&o.perWorker, "resources-per-worker", "", `custom resources each worker holds, as JSON or name=qty,...: workers only go to nodes that offer them (rtrain start --resources)`)
	f.StringVar(&o.python, "python", "", "python interpreter (default $RTRAIN_PYTHON, else the first python3 on PATH with torch)")
	f.StringVar(&o.name, "name", "", "run name (default: script name, date and a random suffix)")
	f.StringVar(&o.group, "group", "", "with --address: the group the job belongs to (a sweep's name): rtrain jobs shows it, rtrain stop --group stops them all")
	f.StringArrayVar(&o.params, "param", nil, "KEY=VALUE, a hyperparameter of this trial, for rtrain jobs and the dashboard to show; nested keys as model/lr (repeatable)")
	f.StringVar(&o.metric, "metric", "", "the reported metric the sweep judges this trial by: rtrain jobs and the dashboard show its best value (needs --mode)")
	f.StringVar(&o.mode, "mode", "", "min or max: whether a lower or a higher --metric is better")
	f.StringArrayVarP(&o.env, "env", "e", nil, "set KEY=VALUE in the workers' environment (repeatable)")
	f.StringVar(&o.workingDir, "working-dir", "", "directory the workers start in (default: the current one)")
	f.StringVar(&o.resultsDir, "results-dir", "", "local directory for runs' logs (default ~/rtrain_results)")
	f.DurationVar(&o.grace, "grace", trainer.DefaultGrace, "time a worker gets between SIGTERM and SIGKILL when the job stops")
	f.BoolVarP(&o.verbose, "verbose", "v", false, "log what rtrain does")
	f.BoolVar(&o.quiet, "quiet", false, "print the workers' output only: no states, reports or summary (a program that reads --events or --result-json says those itself)")
	f.StringVar(&o.progress, "progress", "auto", "auto (a live status line when stderr is a terminal), tty (always) or plain (lines only)")
	f.StringVar(&o.storage, "storage", "", "where checkpoints and result.json go: s3://BUCKET/PREFIX or a directory (default: --results-dir)")
	f.IntVar(&o.ckptKeep, "checkpoint-keep", 0, "checkpoints to keep (0 keeps all; the latest is always kept)")
	f.StringVar(&o.ckptScore, "checkpoint-score", "", "reported metric that ranks checkpoints for --checkpoint-keep (default: keep the newest)")
	f.StringVar(&o.ckptOrder, "checkpoint-order", "", "max or min: whether a higher or lower --checkpoint-score is better (default max)")
	f.BoolVar(&o.resume, "resume", false, "continue run --name from its latest committed checkpoint")
	f.BoolVar(&o.resumeExist, "resume-existing", false, "continue run --name from its latest committed checkpoint if it has one, else start it (from --resume-from when given)")
	f.StringVar(&o.function, "function", "", "run the train function in FILE, as the rtrain Python package serializes it, instead of a script")
	f.StringVar(&o.events, "events", "", "write the job's states, rank 0's reports and its checkpoints to FILE as JSON lines while it runs (/dev/fd/N works)")
	f.StringVar(&o.resultJSON, "result-json", "", "write how the job ended to FILE as JSON (metrics, checkpoints, the root cause of a failure)")
	f.StringVar(&o.restartFrom, "restart-from", "", "start run --name from this checkpoint even though it has its own (which stay): Population Based Training's exploit")
	f.StringVar(&o.resumeFrom, "resume-from", "", "start from this checkpoint: STORAGE/RUN/checkpoint_NNNNNN")
	addS3Flags(f, &o.s3)
	addClusterFlags(f, &o.cluster, "run on the cluster whose head is at "+addressForm+", every head's address where it has standbys (default $"+AddressEnv+"; none: this machine)")
	f.IntVar(&o.maxFailures, "max-failures", 0, "worker failures to survive: each restarts every worker from the latest checkpoint (-1: no limit)")
	f.IntSliceVar(&o.retryCodes, "retry-exit-codes", nil, "restart only failures that exited with these codes")
	f.DurationVar(&o.hangTimeout, "hang-timeout", 0, "fail the job when no worker calls rtrain.report() for this long, showing every worker's Python stacks (0: the default, 30m or 4x the longest wait between a rank's reports, from a rank's second report on, so a script that never reports is never stopped; negative: never)")
	f.IntSliceVar(&o.fatalCodes, "fatal-exit-codes", nil, "never restart failures that exited with these codes")
	f.StringVar(&o.placement, "placement", "", "how workers spread over nodes: PACK (default), SPREAD, STRICT_PACK or STRICT_SPREAD")
	f.BoolVar(&o.noWait, "no-wait", false, "with --address: submit and return (rtrain logs -f JOB follows it)")
	f.Int64Var(&o.workdirLimit, "working-dir-limit", 0, "with --address: largest working directory to ship, in bytes (default 100 MiB; .rtrainignore leaves files out)")
	addIsolationFlags(f, &o.iso)
	_ = cmd.MarkFlagFilename("python")
	_ = cmd.MarkFlagDirname("working-dir")
	_ = cmd.MarkFlagDirname("results-dir")
	return cmd
}

func (o *fitOptions) config(cmd *cobra.Command, args []string) (trainer.Config, error) {
	var script string
	var rest []string
	if len(args) > 0 {
		script, rest = args[0], args[1:]
	}
	if len(rest) > 0 && rest[0] == "--" {
		rest = rest[1:]
	}
	gpus := o.gpusPerWorker
	if o.gpu {
		if cmd.Flags().Changed("gpus-per-worker") && gpus != 1 {
			return trainer.Config{}, usageError{fmt.Errorf("--gpu means one GPU per worker; it conflicts with --gpus-per-worker %d", gpus)}
		}
		gpus = 1
	}
	minW, maxW, err := parseWorkers(o.workers)
	if err != nil {
		return trainer.Config{}, err
	}
	perWorker, err := sched.ParseCustom(o.perWorker)
	if err != nil {
		return trainer.Config{}, usageError{fmt.Errorf("--resources-per-worker: %w", err)}
	}
	nodeCustom, err := sched.ParseCustom(o.resources)
	if err != nil {
		return trainer.Config{}, usageError{fmt.Errorf("--resources: %w", err)}
	}
	params, err := parseParams(o.params)
	if err != nil {
		return trainer.Config{}, err
	}
	cfg := trainer.Config{
		Script:             script,
		Args:               rest,
		Function:           o.function,
		Workers:            maxW,
		MinWorkers:         minW,
		GPUsPerWorker:      gpus,
		CPUsPerWorker:      o.cpusPerWorker,
		NumCPUs:            o.numCPUs,
		ResourcesPerWorker: perWorker.Map(),
		Resources:          nodeCustom.Map(),
		Python:             o.python,
		Name:               o.name,
		Group:              o.group,
		Params:             params,
		Metric:             o.metric,
		Mode:               o.mode,
		Env:                o.env,
		WorkingDir:         o.workingDir,
		ResultsDir:         o.resultsDir,
		Grace:              o.grace,
		Storage:            o.storage,
		S3:                 o.s3,
		Checkpoint:         trainer.CheckpointConfig{Keep: o.ckptKeep, Score: o.ckptScore, Order: o.ckptOrder},
		Resume:             o.resume,
		ResumeExisting:     o.resumeExist,
		RestartFrom:        o.restartFrom,
		ResumeFrom:         o.resumeFrom,
		Placement:          o.placement,
		MaxFailures:        o.maxFailures,
		RetryExitCodes:     o.retryCodes,
		FatalExitCodes:     o.fatalCodes,
		HangTimeout:        o.hangTimeout,
		WorkingDirLimit:    o.workdirLimit,
	}
	// Only an address given here or in the environment: a head started
	// on this machine does not capture plain `rtrain fit`.
	if addr := o.cluster.address; addr != "" || os.Getenv(AddressEnv) != "" {
		if addr == "" {
			addr = os.Getenv(AddressEnv)
		}
		if addr == "auto" {
			// Ray's address="auto": the cluster started on this machine.
			if addr = o.cluster.startedHere(); addr == "" {
				return trainer.Config{}, usageError{errors.New("--address auto: no head was started on this machine; start one with `rtrain start --head`, or give HOST:PORT")}
			}
		}
		sec := o.cluster.security()
		if err := o.cluster.checkTransport(sec, addr); err != nil {
			return trainer.Config{}, err
		}
		cfg.Address, cfg.Token, cfg.TLSCA, cfg.TLSCert, cfg.TLSKey = addr, sec.Token, sec.TLSCA, sec.TLSCert, sec.TLSKey
		for _, f := range []string{"num-cpus", "num-gpus", "resources"} {
			if cmd.Flags().Changed(f) {
				return trainer.Config{}, usageError{fmt.Errorf("--%s describes this machine's embedded node; on a cluster each agent says what it offers (rtrain start --%s)", f, f)}
			}
		}
	}
	if cmd.Flags().Changed("num-gpus") {
		n := o.numGPUs
		cfg.NumGPUs = &n
	}
	if err := o.iso.apply(&cfg); err != nil {
		return trainer.Config{}, err
	}
	return cfg, nil
}

// parseParams is the --param flags as a map; none is nil. Config checks
// the keys and values.
func parseParams(flags []string) (map[string]string, error) {
	if len(flags) == 0 {
		return nil, nil
	}
	params := make(map[string]string, len(flags))
	for _, kv := range flags {
		k, v, ok := strings.Cut(kv, "=")
		if !ok {
			return nil, usageError{fmt.Errorf("--param %q: want KEY=VALUE", kv)}
		}
		if _, dup := params[k]; dup {
			return nil, usageError{fmt.Errorf("--param %s is given twice; give each key once", k)}
		}
		params[k] = v
	}
	return params, nil
}

func (o *fitOptions) run(cmd *cobra.Command, args []string) error {
	if o.resultJSON == "" {
		_, err := o.fit(cmd, args, nil)
		return err
	}
	if o.noWait {
		return usageError{errors.New("--result-json waits for the job's end; it does not go with --no-wait")}
	}
	out := &outcome{}
	res, err := o.fit(cmd, args, out)
	out.finish(cmd.Context(), res, err)
	if werr := out.write(o.resultJSON); werr != nil {
		return errors.Join(err, werr)
	}
	return err
}

// fit runs the job, handing its events to out too when out is not nil.
func (o *fitOptions) fit(cmd *cobra.Command, args []string, out *outcome) (*trainer.Result, error) {
	cfg, err := o.config(cmd, args)
	if err != nil {
		return nil, err
	}
	p := &printer{out: cmd.OutOrStdout(), err: cmd.ErrOrStderr(), quiet: o.quiet}
	if p.status, err = newStatusLine(o.progress, os.Stderr); err != nil {
		return nil, err
	}
	handlers := []func(trainer.Event){p.event}
	if out != nil {
		handlers = append(handlers, out.event)
	}
	if o.events != "" {
		es, err := openEvents(o.events)
		if err != nil {
			return nil, err
		}
		defer es.Close()
		handlers = append(handlers, es.event)
	}
	cfg.OnEvent = func(e trainer.Event) {
		for _, h := range handlers {
			h(e)
		}
	}
	if o.noWait {
		return nil, o.submit(cmd, cfg)
	}
	t, err := trainer.New(cfg, newLogger(o.verbose))
	if err != nil {
		return nil, err
	}
	res, err := t.Fit(cmd.Context())
	// A job that never launched has nothing to summarise: its one-line
	// error says it all.
	if res != nil && len(res.Workers) > 0 && !o.quiet {
		p.summary(res, err)
	}
	return res, err
}

// printer shows a job's events on a terminal or in a log.
type printer struct {
	out, err io.Writer
	name     string
	// status is the live line on a terminal; nil prints plain lines.
	status *statusLine
	// quiet prints the workers' lines only (--quiet).
	quiet bool
}

func (p *printer) event(e trainer.Event) {
	if p.quiet && e.Type != trainer.EventLog {
		return
	}
	p.status.clear()
	defer func() {
		p.status.update(e)
		p.status.draw()
	}()
	switch e.Type {
	case trainer.EventState:
		switch {
		case e.State == trainer.StatePending && e.Message != "":
			fmt.Fprintf(p.err, "rtrain: %s\n", e.Message)
		case e.State == trainer.StateStarting:
			fmt.Fprintf(p.err, "rtrain: starting %s\n", e.Message)
		}
	case trainer.EventLog:
		w := p.out
		if e.Stream == "stderr" {
			w = p.err
		}
		if e.Node != "" && e.Node != agent.LocalNodeID {
			fmt.Fprintf(w, "[rank %d %s] %s\n", e.Rank, e.Node, e.Line)
		} else {
			fmt.Fprintf(w, "[rank %d] %s\n", e.Rank, e.Line)
		}
	case trainer.EventReport:
		if e.Rank == 0 {
			fmt.Fprintf(p.out, "[report] %s\n", formatMetrics(e.Metrics))
		}
	case trainer.EventRestart:
		fmt.Fprintf(p.err, "rtrain: attempt %d: %s\n", e.Attempt, e.Message)
	case trainer.EventWarning:
		fmt.Fprintf(p.err, "rtrain: warning: %s\n", e.Message)
	case trainer.EventCheckpoint:
		c := e.Checkpoint
		fmt.Fprintf(p.out, "[checkpoint] %s (%s)\n", c.URI, text.Bytes(c.Bytes))
	case trainer.EventWorkerExited:
		if x := e.Exit; !x.Success() && !x.Stopped {
			fmt.Fprintf(p.err, "rtrain: rank %d (pid %d) failed: %s; stopping the other workers\n", x.Rank, x.PID, x.Exit)
		}
	}
}

// submit hands the job to the cluster and returns.
func (o *fitOptions) submit(cmd *cobra.Command, cfg trainer.Config) error {
	if cfg.Address == "" {
		return usageError{errors.New("--no-wait needs a cluster: pass --address " + addressForm + " or set " + AddressEnv)}
	}
	c, err := trainer.Dial(cfg.Address, auth.Security{Token: cfg.Token, TLSCA: cfg.TLSCA, TLSCert: cfg.TLSCert, TLSKey: cfg.TLSKey})
	if err != nil {
		return err
	}
	defer c.Close()
	sub, err := c.Submit(cmd.Context(), cfg)
	if err != nil {
		return err
	}
	fmt.Fprintf(cmd.OutOrStdout(), "rtrain: submitted job %s (run %s, %s, %s shipped)\n  follow: rtrain logs -f %s\n  stop:   rtrain stop %s\n",
		sub.JobID, sub.Name, text.Plural(sub.Files, "file"), text.Bytes(sub.Bytes), sub.JobID, sub.JobID)
	return nil
}

// parseWorkers reads --workers: N, or MIN:MAX.
func parseWorkers(s string) (lo, hi int, err error) {
	a, b, elastic := strings.Cut(s, ":")
	hi, err = strconv.Atoi(strings.TrimSpace(a))
	if err == nil && elastic {
		lo = hi
		hi, err = strconv.Atoi(strings.TrimSpace(b))
	}
	if err != nil {
		return 0, 0, usageError{fmt.Errorf("--workers %q: want a number, or MIN:MAX", s)}
	}
	if elastic && lo < 1 {
		return 0, 0, usageError{fmt.Errorf("--workers %q: the minimum must be at least 1", s)}
	}
	return lo, hi, nil
}
