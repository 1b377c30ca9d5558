package main

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/NVIDIA/go-nvml/pkg/nvml"
	"github.com/spf13/cobra"

	"github.com/rtrain/rtrain/checkpoint"
	"github.com/rtrain/rtrain/cluster/auth"
	"github.com/rtrain/rtrain/cluster/discover"
	"github.com/rtrain/rtrain/cluster/sched"
	"github.com/rtrain/rtrain/internal/text"
	"github.com/rtrain/rtrain/launcher/cgroup"
	"github.com/rtrain/rtrain/trainer"
)

// errDoctor is doctor's error when something rtrain fit needs is missing:
// the report said it all.
var errDoctor = errors.New("doctor: a check failed")

type doctorOptions struct {
	python   string
	storage  string
	s3       checkpoint.S3Options
	devDir   string
	stateDir string
	verbose  bool
	out      outputFlag
}

func newDoctorCmd() *cobra.Command {
	o := &doctorOptions{devDir: "/dev"}
	cmd := &cobra.Command{
		Use:   "doctor",
		Short: "Check what this machine supports for rtrain, with the fix for what is missing",
		Long: `doctor checks what rtrain needs and uses on this machine: cgroups and each
controller that enforces the workers' limits, the NVIDIA driver and NVML, the
GPUs, the python that has torch (its version, CUDA, NCCL and gloo) and the
Python packages the driver API and rtrain.tune use, the checkpoint storage,
S3 credentials, and the head's TLS CA. Each line says ok, warn (rtrain runs,
with less: the line says what works without it and how to add it) or FAIL
(rtrain fit cannot run a CPU job). It exits 1 when a check failed.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := o.out.check(); err != nil {
				return err
			}
			checks := doctorChecks(o.probe(cmd.Context()))
			if o.out.format == "json" {
				if err := writeJSON(cmd.OutOrStdout(), doctorJSON(checks)); err != nil {
					return err
				}
			} else {
				printChecks(cmd.OutOrStdout(), checks)
			}
			if failed(checks) {
				return errDoctor
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.python, "python", "", "python interpreter to check (default as for fit: $RTRAIN_PYTHON, else the first python3 on PATH with torch)")
	f.StringVar(&o.storage, "storage", checkpoint.DefaultLocation, "checkpoint storage to check: s3://BUCKET/PREFIX or a directory")
	f.StringVar(&o.stateDir, "state-dir", "", "where rtrain start keeps the head's CA, under tls/ (default $"+stateDirEnv+", else ~/.rtrain)")
	addS3Flags(f, &o.s3)
	f.BoolVarP(&o.verbose, "verbose", "v", false, "log what GPU discovery does")
	o.out.add(cmd)
	return cmd
}

// check is one part of the report.
type check struct {
	status string // "ok", "warn" or "FAIL"
	what   string
	detail string
	// without says what works while the part is missing (warn), or what
	// cannot (FAIL); fix how to add it.
	without string
	fix     string
}

func printChecks(out io.Writer, checks []check) {
	for _, c := range checks {
		fmt.Fprintf(out, "%-4s  %-11s %s\n", c.status, c.what, c.detail)
		if c.without != "" {
			fmt.Fprintln(out, "      without it: "+c.without)
		}
		if c.fix != "" {
			fmt.Fprintln(out, "      fix: "+c.fix)
		}
	}
}

func failed(checks []check) bool {
	for _, c := range checks {
		if c.status == "FAIL" {
			return true
		}
	}
	return false
}

type checkJSON struct {
	Status  string `json:"status"`
	What    string `json:"what"`
	Detail  string `json:"detail"`
	Without string `json:"without,omitempty"`
	Fix     string `json:"fix,omitempty"`
}

// doctorJSON is the report for scripts: OK is false when a check failed.
func doctorJSON(checks []check) any {
	out := struct {
		OK     bool        `json:"ok"`
		Checks []checkJSON `json:"checks"`
	}{OK: !failed(checks), Checks: []checkJSON{}}
	for _, c := range checks {
		out.Checks = append(out.Checks, checkJSON{c.status, c.what, c.detail, c.without, c.fix})
	}
	return out
}

// doctorFacts is what doctor found on this machine. The report is a pure
// function of it (doctorChecks), so tests can give it machines they are not.
type doctorFacts struct {
	cgroups    cgroup.Support
	cgroupsErr error // no usable hierarchy

	nvml nvmlFacts

	python    trainer.Interpreter
	pythonErr error // no python with torch
	torch     torchInfo
	torchErr  error // the python was found, but importing torch failed
	// modules holds the pythonExtras modulesPython can import, each with
	// its version ("" when it has none).
	modules       map[string]string
	modulesPython string

	storage    string
	storageErr error
	// s3Creds says where S3 credentials come from; "" when no local
	// source holds any.
	s3Creds string

	// caPath is the head's CA certificate, which rtrain start --head makes
	// on its first start; ca is nil while there is none (or caErr says
	// why it cannot be read).
	caPath string
	ca     *x509.Certificate
	caErr  error
	now    time.Time
}

// nvmlFacts is what the driver, NVML and the device nodes say.
type nvmlFacts struct {
	devDir string
	// ok: NVML answered with info.
	ok   bool
	info discover.NVMLInfo
	// initReason says why NVML did not initialise; err is any other
	// failure of NVML.
	initReason string
	err        error
	lib        string // libnvidia-ml.so.1 found, "" for none
	ctl        bool   // devDir/nvidiactl exists
	driver     string // the loaded driver's version line, "" when none
	// devGPUs are the GPUs from the device nodes, the fallback fit uses
	// without NVML; devErr why those could not be read.
	devGPUs []sched.GPU
	devErr  error
}

func (o *doctorOptions) probe(ctx context.Context) doctorFacts {
	f := doctorFacts{storage: o.storage, now: time.Now()}
	f.cgroups, f.cgroupsErr = cgroup.Supported()
	f.nvml = o.probeNVML(ctx, newLogger(o.verbose))
	f.python, f.pythonErr = trainer.FindPython(ctx, o.python, "")
	if f.pythonErr == nil {
		f.torch, f.torchErr = probeTorch(ctx, f.python.Path)
		f.modulesPython = f.python.Path
	} else if py, err := exec.LookPath(orDefault(o.python, "python3")); err == nil {
		f.modulesPython = py
	}
	if f.modulesPython != "" {
		f.modules = probeModules(ctx, f.modulesPython)
	}
	f.storageErr = openStorage(ctx, o.storage, o.s3)
	f.s3Creds = checkpoint.S3CredentialSource(o.s3)
	if dir, err := (&clusterFlags{stateDir: o.stateDir}).dir(); err == nil {
		f.caPath = filepath.Join(dir, "tls", "ca.pem")
		f.ca, f.caErr = readCert(f.caPath)
	}
	return f
}

// doctorChecks is the report on f, one check for each part.
func doctorChecks(f doctorFacts) []check {
	checks := cgroupChecks(f.cgroups, f.cgroupsErr)
	checks = append(checks, nvidiaChecks(f.nvml)...)
	checks = append(checks, pythonCheck(f))
	checks = append(checks, extrasChecks(f.modulesPython, f.modules)...)
	checks = append(checks, storageCheck(f.storage, f.storageErr), s3Check(f.s3Creds), tlsCheck(f.caPath, f.ca, f.caErr, f.now))
	return checks
}

// cgroupLimits are what each controller enforces, and what runs without it.
var cgroupLimits = []struct{ name, without string }{
	{"memory", "jobs run, but --memory-per-worker is not enforced and an out-of-memory kill is not named as such; --isolation strict refuses"},
	{"cpu", "jobs run; --cpus-per-worker still sets OMP_NUM_THREADS, but no CPU quota holds a worker to it; --isolation strict refuses"},
	{"pids", "jobs run, with no --pids-per-worker limit (a fork bomb is not stopped); --isolation strict refuses"},
	{"devices", "jobs run, but a GPU job's workers can open every GPU, not only theirs; CPU jobs are unaffected"},
}

func cgroupChecks(s cgroup.Support, err error) []check {
	if err != nil {
		return []check{{status: "warn", what: "cgroups", detail: err.Error(),
			without: "jobs run, but no worker is held to its memory, CPU, pids or GPU limits; --isolation strict refuses",
			fix:     "run rtrain as root, or in a container with a delegated cgroup (e.g. docker run --cgroupns=private)"}}
	}
	where := map[string]string{"memory": s.Memory, "cpu": s.CPU, "pids": s.Pids, "devices": s.Devices}
	var have []string
	var missing []check
	for _, l := range cgroupLimits {
		if where[l.name] != "" {
			have = append(have, l.name)
			continue
		}
		fix := fmt.Sprintf("mount it: mkdir -p /sys/fs/cgroup/%[1]s && mount -t cgroup -o %[1]s cgroup /sys/fs/cgroup/%[1]s", l.name)
		if len(s.V1) == 0 {
			fix = fmt.Sprintf("the cgroup2 root %s offers no %s controller: on a host, boot with cgroup_enable=%s; in a container, have the host delegate it", s.V2Root, l.name, l.name)
		}
		missing = append(missing, check{status: "warn", what: "cgroup " + l.name, detail: "no " + l.name + " controller", without: l.without, fix: fix})
	}
	c := check{status: "ok", what: "cgroups", detail: s.String()}
	if len(have) > 0 {
		c.detail += "; enforcing " + strings.Join(have, ", ")
	}
	return append([]check{c}, missing...)
}

// nvmlLibDirs are where distributions and the NVIDIA container toolkit put
// libnvidia-ml.so.1.
var nvmlLibDirs = []string{
	"/usr/lib/x86_64-linux-gnu", "/usr/lib/aarch64-linux-gnu", "/usr/lib64", "/usr/lib",
	"/usr/local/nvidia/lib64", "/usr/local/cuda/lib64", "/run/nvidia/driver/usr/lib/x86_64-linux-gnu",
}

// probeNVML asks the driver and NVML, and, without NVML, the device nodes
// as `rtrain fit` does.
func (o *doctorOptions) probeNVML(ctx context.Context, log *slog.Logger) nvmlFacts {
	f := nvmlFacts{devDir: o.devDir, ctl: fileExists(filepath.Join(o.devDir, "nvidiactl"))}
	dirs := append(filepath.SplitList(os.Getenv("LD_LIBRARY_PATH")), nvmlLibDirs...)
	for _, d := range dirs {
		if p := filepath.Join(d, "libnvidia-ml.so.1"); d != "" && fileExists(p) {
			f.lib = p
			break
		}
	}
	if b, err := os.ReadFile("/proc/driver/nvidia/version"); err == nil {
		f.driver = strings.TrimSpace(strings.SplitN(string(b), "\n", 2)[0])
	}
	info, err := discover.QueryNVML(ctx, log, nvml.New())
	if err == nil {
		f.ok, f.info = true, info
		return f
	}
	var initErr *discover.NVMLInitError
	if errors.As(err, &initErr) {
		f.initReason = initErr.Reason()
	} else {
		f.err = err
	}
	node, err := discover.NodeWith(ctx, log, nil, o.devDir, discover.NoOverrides)
	f.devGPUs, f.devErr = node.GPUs, err
	return f
}

// nvidiaChecks reports NVML and the GPUs: NVML's list, else what the
// device nodes show.
func nvidiaChecks(f nvmlFacts) []check {
	if f.ok {
		c := check{status: "ok", what: "NVML", detail: fmt.Sprintf("driver %s; %s", orNone(f.info.DriverVersion), orDefault(f.lib, "libnvidia-ml.so.1"))}
		return []check{c, nvmlGPUsCheck(f.info.GPUs, f.devDir)}
	}
	nvmlCheck := check{status: "warn", what: "NVML", detail: f.initReason}
	if f.err != nil {
		nvmlCheck.detail = f.err.Error()
		nvmlCheck.fix = "check the GPUs with nvidia-smi; a GPU that fell off the bus needs a reset or a reboot"
	} else {
		nvmlCheck = nvmlUnavailable(f)
	}
	switch {
	case f.devErr != nil:
		nvmlCheck.without = "CPU jobs run; GPU jobs cannot while no GPU is found"
		return []check{nvmlCheck, {status: "warn", what: "GPUs", detail: f.devErr.Error(), without: nvmlCheck.without,
			fix: "check that " + filepath.Join(f.devDir, "nvidia<N>") + " can be read"}}
	case len(f.devGPUs) == 0:
		nvmlCheck.without = "CPU jobs run; GPU jobs (--gpu) cannot, as there is no " + filepath.Join(f.devDir, "nvidia<N>") + " either"
		return []check{nvmlCheck}
	}
	var names []string
	for _, g := range f.devGPUs {
		names = append(names, fmt.Sprintf("%d: %s (195:%d)", g.Index, filepath.Join(f.devDir, fmt.Sprintf("nvidia%d", g.Minor)), g.Minor))
	}
	nvmlCheck.without = "GPU jobs run on the device nodes' GPUs, without names, memory, NVLink peers or utilisation metrics"
	gpus := check{status: "ok", what: "GPUs", detail: fmt.Sprintf("%d from device nodes: %s", len(f.devGPUs), strings.Join(names, ", "))}
	return []check{nvmlCheck, gpus}
}

// nvmlUnavailable says why NVML did not initialise, and what to do, from
// what the machine has: the library, the driver's control device.
func nvmlUnavailable(f nvmlFacts) check {
	ctl := filepath.Join(f.devDir, "nvidiactl")
	c := check{status: "warn", what: "NVML", detail: "not available (" + f.initReason + ")"}
	switch {
	case f.lib == "" && !f.ctl:
		c.detail += ": no NVIDIA driver"
		c.fix = "to train on GPUs, install the NVIDIA driver, which brings libnvidia-ml.so.1 (Debian: apt-get install nvidia-driver, from non-free)"
	case f.lib == "":
		c.detail += fmt.Sprintf("; driver loaded (%s), but no libnvidia-ml.so.1 found", orNone(f.driver))
		c.fix = "install the driver's NVML library (Debian: libnvidia-ml1) or add its directory to LD_LIBRARY_PATH"
	case !f.ctl:
		c.detail += "; " + f.lib + " found, but no " + ctl + ": the driver is not loaded"
		c.fix = "load the NVIDIA kernel module (modprobe nvidia) or reboot after installing the driver"
	default:
		c.detail += fmt.Sprintf("; %s and %s found, driver: %s", f.lib, ctl, orNone(f.driver))
		c.fix = "check that the driver and libnvidia-ml.so.1 are the same version and that this user may open " + filepath.Join(f.devDir, "nvidia*")
	}
	return c
}

// nvmlGPUsCheck lists the GPUs NVML found, one a line.
func nvmlGPUsCheck(gpus []sched.GPU, devDir string) check {
	if len(gpus) == 0 {
		return check{status: "warn", what: "GPUs", detail: "NVML reports none", without: "CPU jobs run; GPU jobs cannot",
			fix: "check that the GPUs are visible (nvidia-smi); in a container, pass them in (docker run --gpus all)"}
	}
	lines := []string{fmt.Sprintf("%d through NVML:", len(gpus))}
	for _, g := range gpus {
		mem := "memory unknown"
		if g.MemoryBytes > 0 {
			mem = text.Bytes(g.MemoryBytes)
		}
		line := fmt.Sprintf("%d: %s (%s), %s, %s, %s", g.Index, g.Name, g.UUID, mem,
			filepath.Join(devDir, fmt.Sprintf("nvidia%d", g.Minor)), g.PCIBusID)
		if len(g.NVLinkPeers) > 0 {
			peers := make([]string, len(g.NVLinkPeers))
			for i, p := range g.NVLinkPeers {
				peers[i] = strconv.Itoa(p)
			}
			line += ", NVLink to " + strings.Join(peers, ",")
		}
		lines = append(lines, line)
	}
	return check{status: "ok", what: "GPUs", detail: strings.Join(lines, "\n"+strings.Repeat(" ", 18))}
}

// torchProbe imports torch and says what it was built with.
const torchProbe = `
import json
import torch
import torch.distributed as dist
out = {"version": torch.__version__, "cuda": torch.version.cuda, "cuda_ok": False, "devices": 0,
       "nccl": None, "gloo": False}
try:
    out["cuda_ok"] = torch.cuda.is_available()
    out["devices"] = torch.cuda.device_count() if out["cuda_ok"] else 0
except Exception:
    pass
if dist.is_available():
    out["gloo"] = dist.is_gloo_available()
    if dist.is_nccl_available():
        try:
            v = torch.cuda.nccl.version()
            out["nccl"] = ".".join(map(str, v)) if isinstance(v, tuple) else str(v)
        except Exception:
            out["nccl"] = "yes"
print(json.dumps(out))
`

type torchInfo struct {
	Version string  `json:"version"`
	CUDA    *string `json:"cuda"`
	CUDAOK  bool    `json:"cuda_ok"`
	Devices int     `json:"devices"`
	NCCL    *string `json:"nccl"`
	Gloo    bool    `json:"gloo"`
}

// probeTorch imports torch in python py and says what it was built with.
func probeTorch(ctx context.Context, py string) (torchInfo, error) {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	b, err := exec.CommandContext(ctx, py, "-c", torchProbe).Output()
	var ti torchInfo
	if err == nil {
		err = json.Unmarshal(b, &ti)
	}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		err = fmt.Errorf("%w: %s", err, lastStderrLine(string(ee.Stderr)))
	}
	return ti, err
}

func pythonCheck(f doctorFacts) check {
	if f.pythonErr != nil {
		return check{status: "FAIL", what: "python", detail: f.pythonErr.Error(), without: "no job can run",
			fix: "install PyTorch (Debian: apt-get install python3-torch) or pass --python"}
	}
	c := check{status: "ok", what: "python", detail: fmt.Sprintf("%s (from %s)", f.python.Path, f.python.Source)}
	if f.torchErr != nil {
		c.status, c.detail = "FAIL", c.detail+fmt.Sprintf(": import torch failed: %v", f.torchErr)
		c.without, c.fix = "no job can run", "repair the PyTorch install of "+f.python.Path
		return c
	}
	ti := f.torch
	cuda := "CPU build (no CUDA)"
	if ti.CUDA != nil {
		cuda = "CUDA " + *ti.CUDA
		if ti.CUDAOK {
			cuda += ", " + text.Plural(ti.Devices, "GPU") + " visible"
		} else {
			cuda += ", no GPU usable"
		}
	}
	nccl := "NCCL no"
	if ti.NCCL != nil {
		nccl = "NCCL " + *ti.NCCL
	}
	gloo := "gloo no"
	if ti.Gloo {
		gloo = "gloo yes"
	}
	c.detail += fmt.Sprintf(": torch %s, %s, %s, %s", ti.Version, cuda, nccl, gloo)
	if !ti.Gloo && ti.NCCL == nil {
		c.status, c.without = "FAIL", "no job can run: torch.distributed has no backend"
		c.fix = "install a build with gloo (CPU) or NCCL (GPU); Debian: apt-get install python3-torch"
	}
	return c
}

// pythonExtras are the Python packages parts of rtrain use beyond torch:
// a job runs without them, and a part that needs one says so when used.
var pythonExtras = []struct{ module, debian, without string }{
	{"cloudpickle", "python3-cloudpickle", "rtrain fit runs scripts; the Python driver API (TorchTrainer.fit(), rtrain.tune) cannot ship functions to workers on this node"},
	{"numpy", "python3-numpy", "training runs; rtrain.tune's search spaces and schedulers cannot"},
	{"pandas", "python3-pandas", "training and sweeps run; Result.metrics_dataframe and ResultGrid.get_dataframe() cannot"},
	{"optuna", "python3-optuna", "sweeps run with the other searchers; tune's OptunaSearch cannot"},
}

// modulesProbe prints, for each module named in argv, its version, ""
// for one without, or null when it cannot be found. It imports none.
const modulesProbe = `
import importlib.metadata, importlib.util, json, sys
out = {}
for m in sys.argv[1:]:
    if importlib.util.find_spec(m) is None:
        out[m] = None
        continue
    try:
        out[m] = importlib.metadata.version(m)
    except Exception:
        out[m] = ""
print(json.dumps(out))
`

// probeModules is which pythonExtras py can import, with their versions;
// nil when it could not say.
func probeModules(ctx context.Context, py string) map[string]string {
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	args := []string{"-c", modulesProbe}
	for _, e := range pythonExtras {
		args = append(args, e.module)
	}
	b, err := exec.CommandContext(ctx, py, args...).Output()
	var found map[string]*string
	if err != nil || json.Unmarshal(b, &found) != nil {
		return nil
	}
	mods := map[string]string{}
	for m, v := range found {
		if v != nil {
			mods[m] = *v
		}
	}
	return mods
}

// extrasChecks is one short line for the extras py has, and a line with
// the fix for each one it lacks.
func extrasChecks(py string, mods map[string]string) []check {
	if py == "" {
		return nil
	}
	var have []string
	var missing []check
	for _, e := range pythonExtras {
		v, ok := mods[e.module]
		if ok {
			have = append(have, strings.TrimSpace(e.module+" "+v))
			continue
		}
		missing = append(missing, check{status: "warn", what: e.module, detail: "not found by " + py, without: e.without,
			fix: "apt-get install " + e.debian + " (in a venv: pip install " + e.module + ")"})
	}
	if len(have) == 0 {
		return missing
	}
	return append([]check{{status: "ok", what: "python pkgs", detail: strings.Join(have, ", ")}}, missing...)
}

// openStorage opens the checkpoint storage at loc as fit would.
func openStorage(ctx context.Context, loc string, opts checkpoint.S3Options) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	s, err := checkpoint.Open(ctx, loc, opts)
	if err != nil {
		return err
	}
	if c, ok := s.(io.Closer); ok {
		_ = c.Close()
	}
	return nil
}

func storageCheck(loc string, err error) check {
	if err == nil {
		return check{status: "ok", what: "storage", detail: loc + " reachable"}
	}
	fix := "pass --storage with a writable directory or an existing bucket"
	switch {
	case errors.Is(err, checkpoint.ErrCredentials):
		fix = "set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, AWS_PROFILE or --s3-profile"
	case errors.Is(err, checkpoint.ErrBucketNotFound):
		fix = "create the bucket (rtrain never creates one) or fix --storage"
	case strings.HasPrefix(loc, "s3://"):
		fix = "check the endpoint (--s3-endpoint, AWS_ENDPOINT_URL_S3) and that it is reachable from here"
	}
	return check{status: "FAIL", what: "storage", detail: err.Error(), without: "no job can keep checkpoints there", fix: fix}
}

// s3Check says where S3 credentials come from, or what works without.
func s3Check(from string) check {
	if from != "" {
		return check{status: "ok", what: "S3", detail: "credentials " + from}
	}
	return check{status: "warn", what: "S3", detail: "no credentials in AWS_ACCESS_KEY_ID or an AWS profile",
		without: "checkpoints go to local directories (the default, " + checkpoint.DefaultLocation + "); s3:// storage needs credentials, unless an EC2/EKS role gives them",
		fix:     "set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or a profile in ~/.aws/credentials (AWS_PROFILE, --s3-profile); AWS_ENDPOINT_URL_S3 names a MinIO or other S3 server"}
}

// readCert reads a PEM certificate; (nil, nil) when the file is not there.
func readCert(path string) (*x509.Certificate, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	block, _ := pem.Decode(b)
	if block == nil || block.Type != "CERTIFICATE" {
		return nil, errors.New("no PEM certificate in it")
	}
	return x509.ParseCertificate(block.Bytes)
}

// tlsCheck reports the head's own CA: none yet is fine (a head makes one
// when it first starts); one that is broken or expired is not.
func tlsCheck(path string, ca *x509.Certificate, err error, now time.Time) check {
	c := check{status: "ok", what: "TLS"}
	dir := filepath.Dir(path)
	switch {
	case path == "":
		c.detail = "no state directory (no home): pass rtrain start --state-dir, or --tls-cert/--tls-key/--tls-ca"
	case err != nil:
		c.status, c.detail = "warn", fmt.Sprintf("the head's CA %s: %v", path, err)
	case ca == nil:
		c.detail = "no head CA yet: rtrain start --head makes one in " + dir + " (--tls-cert/--tls-key/--tls-ca use yours)"
	case now.After(ca.NotAfter):
		c.status, c.detail = "warn", fmt.Sprintf("the head's CA %s expired on %s", path, ca.NotAfter.Format(time.DateOnly))
	default:
		c.detail = fmt.Sprintf("head CA %s, fingerprint %s..., valid until %s", path, auth.Fingerprint(ca.Raw)[:16], ca.NotAfter.Format(time.DateOnly))
	}
	if c.status == "warn" {
		c.without = "rtrain fit on this machine runs; a head started here cannot serve TLS (--insecure serves plain TCP)"
		c.fix = "remove " + dir + " so the head makes a new CA (agents and users then need the new join token), or use --tls-cert/--tls-key/--tls-ca"
	}
	return c
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

func orNone(s string) string {
	if s == "" {
		return "version unknown"
	}
	return s
}

func lastStderrLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		return s[i+1:]
	}
	return s
}
