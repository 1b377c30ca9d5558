package main

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/NVIDIA/go-nvml/pkg/nvml"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/rtrain/rtrain/checkpoint"
	"github.com/rtrain/rtrain/cluster/auth"
	"github.com/rtrain/rtrain/cluster/discover"
	"github.com/rtrain/rtrain/cluster/sched"
	"github.com/rtrain/rtrain/internal/testutil"
	"github.com/rtrain/rtrain/launcher/cgroup"
	"github.com/rtrain/rtrain/trainer"
)

// fullMachine is what doctor finds on a machine with every part: a real
// CA made in dir, the rest as the probes would report it.
func fullMachine(t *testing.T) doctorFacts {
	t.Helper()
	dir := t.TempDir()
	_, err := auth.LoadOrCreateCA(dir)
	require.NoError(t, err)
	caPath := filepath.Join(dir, "ca.pem")
	ca, err := readCert(caPath)
	require.NoError(t, err)
	cuda, nccl := "12.1", "2.20.5"
	return doctorFacts{
		cgroups: cgroup.Support{Mode: cgroup.Unified, Memory: "cgroup v2", CPU: "cgroup v2", Pids: "cgroup v2", Devices: "cgroup v2",
			V2Root: "/sys/fs/cgroup", V2Controllers: []string{"cpu", "memory", "pids"}},
		nvml: nvmlFacts{devDir: "/dev", ok: true, lib: "/usr/lib/x86_64-linux-gnu/libnvidia-ml.so.1", ctl: true,
			info: discover.NVMLInfo{DriverVersion: "550.54.15", GPUs: []sched.GPU{{Index: 0, Name: "H100", UUID: "GPU-1", MemoryBytes: 80 << 30}}}},
		python:        trainer.Interpreter{Path: "/usr/bin/python3", TorchVersion: "2.3.0", Source: "PATH"},
		torch:         torchInfo{Version: "2.3.0", CUDA: &cuda, CUDAOK: true, Devices: 1, NCCL: &nccl, Gloo: true},
		modules:       map[string]string{"cloudpickle": "2.2.0", "numpy": "1.24.2", "pandas": "1.5.3", "optuna": "3.1.0"},
		modulesPython: "/usr/bin/python3",
		storage:       "~/rtrain_results",
		s3Creds:       "from AWS_ACCESS_KEY_ID",
		caPath:        caPath, ca: ca, now: time.Now(),
	}
}

// Each missing part is a warning that says what works without it and how
// to add it, or, for what a CPU job needs, a failure.
func TestDoctorChecks(t *testing.T) {
	noDriver := func(f *doctorFacts) {
		f.nvml = nvmlFacts{devDir: "/dev", initReason: (&discover.NVMLInitError{Return: nvml.ERROR_LIBRARY_NOT_FOUND}).Reason()}
	}
	for name, tt := range map[string]struct {
		change func(*doctorFacts)
		// what names the check expected with status; without and fix
		// are in its advice. Every other check is ok.
		what, status, without, fix string
		// also are other parts that go missing with the change.
		also []string
	}{
		"everything there": {change: func(*doctorFacts) {}},
		"no cgroups": {
			change: func(f *doctorFacts) {
				f.cgroups, f.cgroupsErr = cgroup.Support{}, errors.New("cgroup: no usable cgroup hierarchy: /sys/fs/cgroup: permission denied")
			},
			what: "cgroups", status: "warn", without: "jobs run, but no worker is held", fix: "run rtrain as root",
		},
		"no memory controller on cgroup v2": {
			change: func(f *doctorFacts) { f.cgroups.Memory = "" },
			what:   "cgroup memory", status: "warn", without: "--memory-per-worker is not enforced", fix: "boot with cgroup_enable=memory",
		},
		"no pids controller on cgroup v1": {
			change: func(f *doctorFacts) {
				f.cgroups = cgroup.Support{Mode: cgroup.Legacy, Memory: "cgroup v1", CPU: "cgroup v1", Devices: "cgroup v1", V1: []string{"freezer", "cpu", "memory", "devices"}}
			},
			what: "cgroup pids", status: "warn", without: "no --pids-per-worker limit", fix: "mount -t cgroup -o pids",
		},
		"no NVIDIA driver": {
			change: noDriver,
			what:   "NVML", status: "warn", without: "CPU jobs run; GPU jobs (--gpu) cannot", fix: "apt-get install nvidia-driver",
		},
		"driver loaded without NVML": {
			change: func(f *doctorFacts) {
				f.nvml = nvmlFacts{devDir: "/dev", initReason: "libnvidia-ml.so.1 not found", ctl: true, devGPUs: []sched.GPU{{Index: 0, Minor: 0}}}
			},
			what: "NVML", status: "warn", without: "GPU jobs run on the device nodes' GPUs", fix: "libnvidia-ml1",
		},
		"no torch": {
			change: func(f *doctorFacts) {
				f.python, f.pythonErr = trainer.Interpreter{}, errors.New("no python3 on PATH can import torch")
			},
			what: "python", status: "FAIL", without: "no job can run", fix: "apt-get install python3-torch",
		},
		"torch without a distributed backend": {
			change: func(f *doctorFacts) { f.torch = torchInfo{Version: "2.3.0"} },
			what:   "python", status: "FAIL", without: "torch.distributed has no backend", fix: "gloo",
		},
		"no cloudpickle": {
			change: func(f *doctorFacts) { delete(f.modules, "cloudpickle") },
			what:   "cloudpickle", status: "warn", without: "rtrain fit runs scripts; the Python driver API", fix: "apt-get install python3-cloudpickle",
		},
		"no pandas nor optuna": {
			change: func(f *doctorFacts) { delete(f.modules, "pandas"); delete(f.modules, "optuna") },
			what:   "pandas", status: "warn", without: "Result.metrics_dataframe", fix: "apt-get install python3-pandas (in a venv: pip install pandas)",
			also: []string{"optuna"},
		},
		"no S3 credentials": {
			change: func(f *doctorFacts) { f.s3Creds = "" },
			what:   "S3", status: "warn", without: "checkpoints go to local directories", fix: "AWS_ACCESS_KEY_ID",
		},
		"storage unreachable": {
			change: func(f *doctorFacts) {
				f.storage, f.storageErr = "s3://b/x", errors.New("s3: cannot reach http://127.0.0.1:1")
			},
			what: "storage", status: "FAIL", without: "no job can keep checkpoints", fix: "check the endpoint",
		},
		"head CA expired": {
			change: func(f *doctorFacts) { f.now = f.ca.NotAfter.Add(time.Hour) },
			what:   "TLS", status: "warn", without: "a head started here cannot serve TLS", fix: "so the head makes a new CA",
		},
	} {
		t.Run(name, func(t *testing.T) {
			f := fullMachine(t)
			tt.change(&f)
			checks := doctorChecks(f)
			assert.Equal(t, tt.status == "FAIL", failed(checks), "failed")
			found := false
			for _, c := range checks {
				switch {
				case c.what == tt.what:
					found = true
					assert.Equal(t, tt.status, c.status, "%s: %s", c.what, c.detail)
					assert.Contains(t, c.without, tt.without)
					assert.Contains(t, c.fix, tt.fix)
				case slices.Contains(tt.also, c.what):
					assert.Equal(t, "warn", c.status, "%s: %s", c.what, c.detail)
					assert.NotEmpty(t, c.without, c.what)
					assert.NotEmpty(t, c.fix, c.what)
				default:
					assert.Equal(t, "ok", c.status, "%s: %s", c.what, c.detail)
					assert.Empty(t, c.without+c.fix, "an ok line carries no advice: %s", c.what)
				}
			}
			if tt.what != "" {
				assert.True(t, found, "no %s check in %+v", tt.what, checks)
			}
		})
	}
}

// A machine without a driver gets one line about it, not one for NVML and
// another for the GPUs it therefore lacks; a head not yet started here is
// no warning.
func TestDoctorChecksFreshMachine(t *testing.T) {
	f := fullMachine(t)
	f.nvml = nvmlFacts{devDir: "/dev", initReason: "libnvidia-ml.so.1 not found"}
	f.caPath, f.ca = filepath.Join(t.TempDir(), "tls", "ca.pem"), nil
	var whats []string
	for _, c := range doctorChecks(f) {
		whats = append(whats, c.what)
		if c.what == "TLS" {
			assert.Equal(t, "ok", c.status)
			assert.Contains(t, c.detail, "no head CA yet: rtrain start --head makes one in ")
		}
	}
	assert.Equal(t, []string{"cgroups", "NVML", "python", "python pkgs", "storage", "S3", "TLS"}, whats)
}

// The real binary on this machine: CPU jobs can run, so it exits 0, and
// what it lacks here (S3 credentials in an empty HOME, at least) comes with
// what works without it and the fix.
func TestDoctorAdvice(t *testing.T) {
	testutil.Python(t)
	state := t.TempDir()
	_, err := auth.LoadOrCreateCA(filepath.Join(state, "tls"))
	require.NoError(t, err)
	args := []string{"doctor", "--storage", t.TempDir(), "--state-dir", state}
	noCreds := []string{"AWS_ACCESS_KEY_ID=", "AWS_ACCESS_KEY=", "AWS_PROFILE=", "AWS_SHARED_CREDENTIALS_FILE="}

	c := rtrain(t, args...)
	c.cmd.Env = append(c.cmd.Env, noCreds...)
	require.Equal(t, exitOK, c.run(t), "stdout: %s\nstderr: %s", c.stdout.String(), c.stderr.String())
	out := c.stdout.String()
	t.Logf("rtrain doctor:\n%s", out)
	assert.Regexp(t, `(?m)^warn  S3 +no credentials.*\n      without it: checkpoints go to local directories.*\n      fix: set AWS_ACCESS_KEY_ID`, out)
	assert.Regexp(t, `(?m)^ok    TLS +head CA `+state+`/tls/ca.pem, fingerprint [0-9a-f]{16}\.\.\., valid until \d{4}-\d\d-\d\d$`, out)
	assert.Regexp(t, `(?m)^ok    python pkgs .*cloudpickle`, out, "make test installs them")
	for _, l := range strings.Split(out, "\n") {
		if strings.HasPrefix(l, "warn") {
			assert.Contains(t, out, l+"\n      without it: ", "a warning says what works without the part")
		}
	}

	c = rtrain(t, append(args, "-o", "json")...)
	c.cmd.Env = append(c.cmd.Env, noCreds...)
	require.Equal(t, exitOK, c.run(t), "stderr: %s", c.stderr.String())
	var report struct {
		OK     bool
		Checks []checkJSON
	}
	require.NoError(t, json.Unmarshal(c.stdout.Bytes(), &report), c.stdout.String())
	assert.True(t, report.OK)
	var s3 checkJSON
	for _, ch := range report.Checks {
		if ch.What == "S3" {
			s3 = ch
		}
	}
	assert.Equal(t, "warn", s3.Status)
	assert.Contains(t, s3.Fix, "AWS_ACCESS_KEY_ID")

	c = rtrain(t, "doctor", "-o", "yaml")
	assert.Equal(t, exitUsage, c.run(t))
	assert.Equal(t, "rtrain: --output \"yaml\": want table or json\n", c.stderr.String())
}

// doctor counts the GPUs torch sees in words that agree: on a machine
// with one it said "1 GPUs visible". The python here is a stand-in that
// answers rtrain's probes as a CUDA torch with one GPU would.
func TestDoctorCountsOneGPU(t *testing.T) {
	py := filepath.Join(t.TempDir(), "python3")
	require.NoError(t, os.WriteFile(py, []byte(`#!/bin/sh
case "$2" in
*'find_spec("torch")'*) echo '{"torch": "2.3.0", "syntax": null}' ;;
*import\ torch*) echo '{"version": "2.3.0", "cuda": "12.1", "cuda_ok": true, "devices": 1, "nccl": "2.20.5", "gloo": true}' ;;
*) echo '{"cloudpickle": "3.0.0", "numpy": null, "pandas": null, "optuna": null}' ;;
esac
`), 0o755))
	c := rtrain(t, "doctor", "--python", py, "--storage", t.TempDir())
	c.run(t)
	out := c.stdout.String()
	assert.Contains(t, out, ": torch 2.3.0, CUDA 12.1, 1 GPU visible, NCCL 2.20.5, gloo yes\n")
	assert.Contains(t, out, "ok    python pkgs cloudpickle 3.0.0\n")
	assert.Contains(t, out, "warn  numpy       not found by "+py+"\n")
}

func TestDoctor(t *testing.T) {
	testutil.Python(t)
	s := testutil.RequireCgroups(t)
	c := rtrain(t, "doctor", "--storage", t.TempDir())
	require.Equal(t, exitOK, c.run(t), "stdout: %s\nstderr: %s", c.stdout.String(), c.stderr.String())
	out := c.stdout.String()
	t.Logf("rtrain doctor:\n%s", out)
	assert.Contains(t, out, "ok    cgroups     "+s.Mode.String()+": ")
	assert.Regexp(t, `(?m)^ok    python      /usr/bin/python3 \(from \S+\): torch \S+, .*gloo yes$`, out)
	assert.Regexp(t, `(?m)^ok    storage     /\S+ reachable$`, out)
	assert.Regexp(t, `(?m)^(ok|warn)  NVML        `, out)

	c = rtrain(t, "doctor", "--storage", "s3://no-bucket/x", "--s3-endpoint", "http://127.0.0.1:1")
	assert.Equal(t, exitFailed, c.run(t))
	assert.Regexp(t, `(?m)^FAIL  storage     .*127\.0\.0\.1:1.*\n      without it: .*\n      fix: `, c.stdout.String())

	c = withoutCgroups(t, "doctor", "--storage", t.TempDir())
	require.Equal(t, exitOK, c.run(t), "no cgroups is a warning, not a failure: %s", c.stdout.String())
	assert.Regexp(t, `(?m)^warn  cgroups     cgroup: no usable cgroup hierarchy: .*\n      without it: .*\n      fix: run rtrain as root`, c.stdout.String())
}

// The S3 line reads the same sources the S3 backend does.
func TestDoctorS3CredentialSource(t *testing.T) {
	t.Setenv("HOME", t.TempDir())
	for _, k := range []string{"AWS_ACCESS_KEY_ID", "AWS_ACCESS_KEY", "AWS_SECRET_ACCESS_KEY", "AWS_SECRET_KEY", "AWS_PROFILE", "AWS_SHARED_CREDENTIALS_FILE"} {
		t.Setenv(k, "")
	}
	assert.Equal(t, "", checkpoint.S3CredentialSource(checkpoint.S3Options{}))
	t.Setenv("AWS_ACCESS_KEY_ID", "AKIA")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "secret")
	assert.Equal(t, "from AWS_ACCESS_KEY_ID", checkpoint.S3CredentialSource(checkpoint.S3Options{}))
}
