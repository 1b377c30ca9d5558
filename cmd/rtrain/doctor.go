package main

import (
	"context"
	"encoding/json"
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
	"github.com/rtrain/rtrain/cluster/discover"
	"github.com/rtrain/rtrain/cluster/sched"
	"github.com/rtrain/rtrain/internal/text"
	"github.com/rtrain/rtrain/launcher/cgroup"
	"github.com/rtrain/rtrain/trainer"
)

// errDoctor is doctor's error when a check failed: the report said it all.
var errDoctor = errors.New("doctor: a check failed")

type doctorOptions struct {
	python  string
	storage string
	s3      checkpoint.S3Options
	devDir  string
	verbose bool
}

func newDoctorCmd() *cobra.Command {
	o := &doctorOptions{devDir: "/dev"}
	cmd := &cobra.Command{
		Use:   "doctor",
		Short: "Check what this machine supports for rtrain, with the fix for what is missing",
		Long: `doctor checks what rtrain needs and uses on this machine: cgroups (version
and controllers, which enforce the workers' isolation), the NVIDIA driver and
NVML, the GPUs, the python that has torch (its version, CUDA, NCCL and gloo),
and the checkpoint storage. Each line says ok, warn (rtrain runs, with less)
or FAIL (rtrain fit cannot run), and how to fix what is missing. It exits 1
when a check failed.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return o.run(cmd.Context(), cmd.OutOrStdout())
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.python, "python", "", "python interpreter to check (default as for fit: $RTRAIN_PYTHON, else the first python3 on PATH with torch)")
	f.StringVar(&o.storage, "storage", checkpoint.DefaultLocation, "checkpoint storage to check: s3://BUCKET/PREFIX or a directory")
	addS3Flags(f, &o.s3)
	f.BoolVarP(&o.verbose, "verbose", "v", false, "log what GPU discovery does")
	return cmd
}

// check is one line of the report.
type check struct {
	status string // "ok", "warn" or "FAIL"
	what   string
	detail string
	fix    string
}

func (o *doctorOptions) run(ctx context.Context, out io.Writer) error {
	checks := []check{o.cgroups()}
	checks = append(checks, o.nvidia(ctx, newLogger(o.verbose))...)
	checks = append(checks, o.python3(ctx), o.store(ctx))
	failed := false
	for _, c := range checks {
		line := fmt.Sprintf("%-4s  %-8s %s", c.status, c.what, c.detail)
		if c.fix != "" {
			line += "\n      fix: " + c.fix
		}
		fmt.Fprintln(out, line)
		failed = failed || c.status == "FAIL"
	}
	if failed {
		return errDoctor
	}
	return nil
}

func (o *doctorOptions) cgroups() check {
	s, err := cgroup.Supported()
	if err != nil {
		return check{"warn", "cgroups", err.Error() + "; workers run without memory, CPU, pids and GPU device limits",
			"run rtrain as root, or in a container with a delegated cgroup (e.g. docker run --cgroupns=private)"}
	}
	c := check{status: "ok", what: "cgroups", detail: s.String()}
	var have, missing []string
	for _, l := range []struct{ name, where string }{
		{"memory", s.Memory}, {"cpu", s.CPU}, {"pids", s.Pids}, {"devices", s.Devices},
	} {
		if l.where == "" {
			missing = append(missing, l.name)
			continue
		}
		have = append(have, l.name+" ("+l.where+")")
	}
	c.detail += "; limits: " + strings.Join(have, ", ")
	if len(missing) > 0 {
		c.status = "warn"
		c.detail += "; no controller for " + strings.Join(missing, ", ")
		c.fix = "enable the missing controllers: on cgroup v2 add them to cgroup.subtree_control up to rtrain's cgroup (e.g. echo +memory > /sys/fs/cgroup/cgroup.subtree_control); on v1 mount them under /sys/fs/cgroup"
	}
	return c
}

// nvmlLibDirs are where distributions and the NVIDIA container toolkit put
// libnvidia-ml.so.1.
var nvmlLibDirs = []string{
	"/usr/lib/x86_64-linux-gnu", "/usr/lib/aarch64-linux-gnu", "/usr/lib64", "/usr/lib",
	"/usr/local/nvidia/lib64", "/usr/local/cuda/lib64", "/run/nvidia/driver/usr/lib/x86_64-linux-gnu",
}

// nvidia checks the driver and NVML, and lists the GPUs rtrain finds, with
// the discovery `rtrain fit` uses: NVML, else the device nodes.
func (o *doctorOptions) nvidia(ctx context.Context, log *slog.Logger) []check {
	lib := ""
	dirs := append(filepath.SplitList(os.Getenv("LD_LIBRARY_PATH")), nvmlLibDirs...)
	for _, d := range dirs {
		if p := filepath.Join(d, "libnvidia-ml.so.1"); d != "" && fileExists(p) {
			lib = p
			break
		}
	}
	info, err := discover.QueryNVML(ctx, log, nvml.New())
	if err == nil {
		c := check{status: "ok", what: "NVML", detail: fmt.Sprintf("driver %s; %s", orNone(info.DriverVersion), orDefault(lib, "libnvidia-ml.so.1"))}
		return []check{c, nvmlGPUsCheck(info.GPUs, o.devDir)}
	}
	var nvmlCheck check
	var initErr *discover.NVMLInitError
	if errors.As(err, &initErr) {
		nvmlCheck = o.nvmlUnavailable(lib, initErr.Reason())
	} else {
		nvmlCheck = check{"warn", "NVML", err.Error() + "; GPUs from the device nodes",
			"check the GPUs with nvidia-smi; a GPU that fell off the bus needs a reset or a reboot"}
	}
	// The fallback fit uses: the device nodes the driver created.
	node, err := discover.NodeWith(ctx, log, nil, o.devDir, discover.NoOverrides)
	gpus := check{status: "ok", what: "GPUs"}
	switch {
	case err != nil:
		gpus.status, gpus.detail = "warn", err.Error()
	case len(node.GPUs) == 0:
		gpus.status, gpus.detail = "warn", "none found (no "+filepath.Join(o.devDir, "nvidia<N>")+")"
		gpus.fix = "GPU jobs need the NVIDIA driver; --num-gpus N pretends for tests"
	default:
		var names []string
		for _, g := range node.GPUs {
			names = append(names, fmt.Sprintf("%d: %s (195:%d)", g.Index, filepath.Join(o.devDir, fmt.Sprintf("nvidia%d", g.Minor)), g.Minor))
		}
		gpus.detail = fmt.Sprintf("%d from device nodes, without names, memory or NVLink: %s", len(node.GPUs), strings.Join(names, ", "))
	}
	return []check{nvmlCheck, gpus}
}

// nvmlUnavailable says why NVML did not initialise, and what to do, from
// what the machine has: the library, the driver's control device.
func (o *doctorOptions) nvmlUnavailable(lib, reason string) check {
	ctl := fileExists(filepath.Join(o.devDir, "nvidiactl"))
	driver := ""
	if b, err := os.ReadFile("/proc/driver/nvidia/version"); err == nil {
		driver = strings.TrimSpace(strings.SplitN(string(b), "\n", 2)[0])
	}
	c := check{status: "warn", what: "NVML", detail: "not available (" + reason + ")"}
	switch {
	case lib == "" && !ctl:
		c.detail += "; CPU jobs only"
		c.fix = "to train on GPUs, install the NVIDIA driver (Debian: apt-get install nvidia-driver)"
	case lib == "":
		c.detail += fmt.Sprintf("; driver loaded (%s), but no libnvidia-ml.so.1 found", orNone(driver))
		c.fix = "install the driver's NVML library (Debian: libnvidia-ml1) or add its directory to LD_LIBRARY_PATH"
	case !ctl:
		c.detail += "; " + lib + " found, but no " + filepath.Join(o.devDir, "nvidiactl") + ": the driver is not loaded"
		c.fix = "load the NVIDIA kernel module (modprobe nvidia) or reboot after installing the driver"
	default:
		c.detail += fmt.Sprintf("; %s and %s found, driver: %s", lib, filepath.Join(o.devDir, "nvidiactl"), orNone(driver))
		c.fix = "check that the driver and libnvidia-ml.so.1 are the same version and that this user may open " + filepath.Join(o.devDir, "nvidia*")
	}
	return c
}

// nvmlGPUsCheck lists the GPUs NVML found, one a line.
func nvmlGPUsCheck(gpus []sched.GPU, devDir string) check {
	if len(gpus) == 0 {
		return check{"warn", "GPUs", "NVML reports none", "check that the GPUs are visible (nvidia-smi); in a container, pass them in (docker run --gpus all)"}
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
	return check{status: "ok", what: "GPUs", detail: strings.Join(lines, "\n"+strings.Repeat(" ", 15))}
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

func (o *doctorOptions) python3(ctx context.Context) check {
	py, err := trainer.FindPython(ctx, o.python, "")
	if err != nil {
		return check{"FAIL", "python", err.Error(), "install PyTorch (Debian: apt-get install python3-torch) or pass --python"}
	}
	c := check{status: "ok", what: "python", detail: fmt.Sprintf("%s (from %s)", py.Path, py.Source)}
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	b, err := exec.CommandContext(ctx, py.Path, "-c", torchProbe).Output()
	var ti torchInfo
	if err == nil {
		err = json.Unmarshal(b, &ti)
	}
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			err = fmt.Errorf("%w: %s", err, lastStderrLine(string(ee.Stderr)))
		}
		c.status, c.detail = "FAIL", c.detail+fmt.Sprintf(": import torch failed: %v", err)
		c.fix = "repair the PyTorch install of " + py.Path
		return c
	}
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
		c.status, c.fix = "FAIL", "this torch has no distributed backend; install a build with gloo (CPU) or NCCL (GPU)"
	}
	return c
}

func (o *doctorOptions) store(ctx context.Context) check {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	s, err := checkpoint.Open(ctx, o.storage, o.s3)
	if err != nil {
		fix := "pass --storage with a writable directory or an existing bucket"
		switch {
		case errors.Is(err, checkpoint.ErrCredentials):
			fix = "set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, AWS_PROFILE or --s3-profile"
		case errors.Is(err, checkpoint.ErrBucketNotFound):
			fix = "create the bucket (rtrain never creates one) or fix --storage"
		case strings.HasPrefix(o.storage, "s3://"):
			fix = "check the endpoint (--s3-endpoint, AWS_ENDPOINT_URL_S3) and that it is reachable from here"
		}
		return check{"FAIL", "storage", err.Error(), fix}
	}
	if c, ok := s.(io.Closer); ok {
		_ = c.Close()
	}
	return check{"ok", "storage", o.storage + " reachable", ""}
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
