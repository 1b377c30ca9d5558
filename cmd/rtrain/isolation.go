package main

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"unicode"

	"github.com/spf13/pflag"

	"github.com/rtrain/rtrain/trainer"
)

// isolationOptions are fit's flags for what the kernel holds each worker to.
type isolationOptions struct {
	memory       string
	pids         int64
	gpuIsolation string
	isolation    string
}

func addIsolationFlags(f *pflag.FlagSet, o *isolationOptions) {
	f.StringVar(&o.memory, "memory-per-worker", "", "memory limit of each worker and all it spawns, e.g. 300M, 2G, 1.5GiB (units of 1024; default no limit)")
	f.Int64Var(&o.pids, "pids-per-worker", 0, fmt.Sprintf("limit on each worker's processes and threads (default %d)", trainer.DefaultPidsPerWorker))
	f.StringVar(&o.gpuIsolation, "gpu-isolation", trainer.GPUIsolationJob, "job: a job's workers on a node share its GPUs there; worker: each worker only its own")
	f.StringVar(&o.isolation, "isolation", trainer.IsolationBestEffort, "best-effort: warn and run where cgroups cannot enforce a limit; strict: refuse to start")
}

// apply puts the flags into cfg; a malformed size is a usage error.
func (o *isolationOptions) apply(cfg *trainer.Config) error {
	if o.memory != "" {
		n, err := parseBytes(o.memory)
		if err != nil {
			return usageError{fmt.Errorf("--memory-per-worker %q: %w", o.memory, err)}
		}
		cfg.MemoryPerWorker = n
	}
	cfg.PidsPerWorker = o.pids
	cfg.GPUIsolation = o.gpuIsolation
	cfg.Isolation = o.isolation
	return nil
}

// sizeUnits are the units parseBytes takes, all powers of 1024 as with
// Docker's --memory.
var sizeUnits = map[string]float64{"": 1, "B": 1}

func init() {
	for i, u := range []string{"K", "M", "G", "T"} {
		size := math.Pow(1024, float64(i+1))
		sizeUnits[u], sizeUnits[u+"B"], sizeUnits[u+"IB"] = size, size, size
	}
}

// parseBytes reads a size: a number, maybe with a fraction, then an
// optional unit (K, M, G, T, also written KB or KiB); no unit is bytes.
func parseBytes(s string) (int64, error) {
	s = strings.TrimSpace(s)
	num := strings.TrimRightFunc(s, unicode.IsLetter)
	mult, ok := sizeUnits[strings.ToUpper(s[len(num):])]
	f, err := strconv.ParseFloat(strings.TrimSpace(num), 64)
	if !ok || err != nil || f < 0 || math.IsInf(f, 0) || math.IsNaN(f) || f*mult >= math.MaxInt64 {
		return 0, fmt.Errorf("want a size like 300M, 2G or 1.5GiB")
	}
	return int64(math.Round(f * mult)), nil
}
