package main

import (
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/spf13/cobra"

	"github.com/rtrain/rtrain/checkpoint"
	"github.com/rtrain/rtrain/cluster"
	"github.com/rtrain/rtrain/trainer"
)

type fitOptions struct {
	workers       int
	gpu           bool
	gpusPerWorker int
	cpusPerWorker float64
	numCPUs       float64
	numGPUs       int
	python        string
	name          string
	env           []string
	workingDir    string
	resultsDir    string
	grace         time.Duration
	verbose       bool
	storage       string
	s3            checkpoint.S3Options
	ckptKeep      int
	ckptScore     string
	ckptOrder     string
	resume        bool
	resumeFrom    string
	iso           isolationOptions
}

func newFitCmd() *cobra.Command {
	o := &fitOptions{}
	cmd := &cobra.Command{
		Use:   "fit [flags] SCRIPT [-- SCRIPT_ARGS...]",
		Short: "Run a training script on a group of workers",
		Long: `fit runs SCRIPT on --workers processes wired for torch.distributed.

Each worker gets torchrun's environment (MASTER_ADDR, MASTER_PORT, RANK,
LOCAL_RANK, WORLD_SIZE, ...), so torchrun scripts run unchanged; scripts may
also use the rtrain Python package (rtrain.report, rtrain.torch.prepare_model),
which rtrain puts on the workers' PYTHONPATH. With no cluster address the job
runs on this machine through an embedded head and agent.

Everything after SCRIPT is passed to the script.`,
		Example: `  rtrain fit --workers 4 examples/train_rtrain.py
  rtrain fit --workers 2 --gpu train.py -- --epochs 10
  rtrain fit --workers 4 --env NCCL_DEBUG=INFO --name resnet-run train.py
  rtrain fit --workers 4 --storage s3://bucket/runs --name resnet-run --resume train.py`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) == 0 {
				return usageError{errors.New("no script given; usage: rtrain fit [flags] SCRIPT [-- SCRIPT_ARGS...]")}
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
	f.IntVarP(&o.workers, "workers", "n", 1, "number of worker processes")
	f.BoolVar(&o.gpu, "gpu", false, "give each worker one GPU (same as --gpus-per-worker 1)")
	f.IntVar(&o.gpusPerWorker, "gpus-per-worker", 0, "GPUs per worker")
	f.Float64Var(&o.cpusPerWorker, "cpus-per-worker", 0, "CPU cores reserved per worker; 0 shares the node's cores")
	f.Float64Var(&o.numCPUs, "num-cpus", 0, "override the CPU cores the embedded node reports")
	f.IntVar(&o.numGPUs, "num-gpus", -1, "override the GPUs the embedded node reports (GPU i is /dev/nvidia<i>)")
	f.StringVar(&o.python, "python", "", "python interpreter (default $RTRAIN_PYTHON, else the first python3 on PATH with torch)")
	f.StringVar(&o.name, "name", "", "run name (default: script name, date and a random suffix)")
	f.StringArrayVarP(&o.env, "env", "e", nil, "set KEY=VALUE in the workers' environment (repeatable)")
	f.StringVar(&o.workingDir, "working-dir", "", "directory the workers start in (default: the current one)")
	f.StringVar(&o.resultsDir, "results-dir", "", "local directory for runs' logs (default ~/rtrain_results)")
	f.DurationVar(&o.grace, "grace", trainer.DefaultGrace, "time a worker gets between SIGTERM and SIGKILL when the job stops")
	f.BoolVarP(&o.verbose, "verbose", "v", false, "log what rtrain does")
	f.StringVar(&o.storage, "storage", "", "where checkpoints and result.json go: s3://BUCKET/PREFIX or a directory (default: --results-dir)")
	f.IntVar(&o.ckptKeep, "checkpoint-keep", 0, "checkpoints to keep (0 keeps all; the latest is always kept)")
	f.StringVar(&o.ckptScore, "checkpoint-score", "", "reported metric that ranks checkpoints for --checkpoint-keep (default: keep the newest)")
	f.StringVar(&o.ckptOrder, "checkpoint-order", "", "max or min: whether a higher or lower --checkpoint-score is better (default max)")
	f.BoolVar(&o.resume, "resume", false, "continue run --name from its latest committed checkpoint")
	f.StringVar(&o.resumeFrom, "resume-from", "", "start from this checkpoint: STORAGE/RUN/checkpoint_NNNNNN")
	addS3Flags(f, &o.s3)
	addIsolationFlags(f, &o.iso)
	_ = cmd.MarkFlagFilename("python")
	_ = cmd.MarkFlagDirname("working-dir")
	_ = cmd.MarkFlagDirname("results-dir")
	return cmd
}

func (o *fitOptions) config(cmd *cobra.Command, args []string) (trainer.Config, error) {
	script, rest := args[0], args[1:]
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
	cfg := trainer.Config{
		Script:        script,
		Args:          rest,
		Workers:       o.workers,
		GPUsPerWorker: gpus,
		CPUsPerWorker: o.cpusPerWorker,
		NumCPUs:       o.numCPUs,
		Python:        o.python,
		Name:          o.name,
		Env:           o.env,
		WorkingDir:    o.workingDir,
		ResultsDir:    o.resultsDir,
		Grace:         o.grace,
		Storage:       o.storage,
		S3:            o.s3,
		Checkpoint:    trainer.CheckpointConfig{Keep: o.ckptKeep, Score: o.ckptScore, Order: o.ckptOrder},
		Resume:        o.resume,
		ResumeFrom:    o.resumeFrom,
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

func (o *fitOptions) run(cmd *cobra.Command, args []string) error {
	cfg, err := o.config(cmd, args)
	if err != nil {
		return err
	}
	p := &printer{out: cmd.OutOrStdout(), err: cmd.ErrOrStderr()}
	cfg.OnEvent = p.event
	t, err := trainer.New(cfg, newLogger(o.verbose))
	if err != nil {
		return err
	}
	res, err := t.Fit(cmd.Context())
	// A job that never launched has nothing to summarise: its one-line
	// error says it all.
	if res != nil && len(res.Workers) > 0 {
		p.summary(res, err)
	}
	return err
}

// printer shows a job's events on a terminal or in a log.
type printer struct {
	out, err io.Writer
	name     string
}

func (p *printer) event(e trainer.Event) {
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
		fmt.Fprintf(w, "[rank %d] %s\n", e.Rank, e.Line)
	case trainer.EventReport:
		if e.Rank == 0 {
			fmt.Fprintf(p.out, "[report] %s\n", formatMetrics(e.Metrics))
		}
	case trainer.EventWarning:
		fmt.Fprintf(p.err, "rtrain: warning: %s; running without (--isolation=strict would refuse)\n", e.Message)
	case trainer.EventCheckpoint:
		c := e.Checkpoint
		fmt.Fprintf(p.out, "[checkpoint] %s (%s)\n", c.URI, cluster.FormatBytes(c.Bytes))
	case trainer.EventWorkerExited:
		if x := e.Exit; !x.Success() && !x.Stopped {
			fmt.Fprintf(p.err, "rtrain: rank %d (pid %d) failed: %s; stopping the other workers\n", x.Rank, x.PID, x.Exit)
		}
	}
}
