package launcher

import (
	"errors"
	"os"
	"syscall"
	"testing"
	"time"

	"github.com/rtrain/rtrain/internal/testutil"
	"github.com/rtrain/rtrain/launcher/cgroup"
)

// withoutReaper runs t as a program that never called RunReaperIfAsked.
func withoutReaper(t *testing.T) {
	t.Helper()
	reaperAvailable.Store(false)
	t.Cleanup(func() { reaperAvailable.Store(true) })
}

// Without the reaper, the worker is rtrain's own child, leading its own
// process group; its output and exit come back the same.
func TestStartDirect(t *testing.T) {
	withoutReaper(t)
	out, errs := newLines(), newLines()
	p := start(t, testutil.Marker(t), "exit", []string{"3"}, out.writer(), errs.writer())
	if p.Pid() != p.pgid() {
		t.Errorf("Pid() %d, group %d: want the worker leading its own group", p.Pid(), p.pgid())
	}
	waitLine(t, out, "out line")
	waitLine(t, errs, "err line")
	select {
	case <-p.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("no exit")
	}
	if x := p.Exit(); x.Code != 3 || x.Signal != 0 || x.Stopped {
		t.Errorf("exit = %+v, want code 3", x)
	}
	if err := p.Reap(); err != nil {
		t.Error(err)
	}
}

// What only the reaper can do is refused without it; a program that is
// not there fails to start.
func TestStartDirectRefusals(t *testing.T) {
	withoutReaper(t)
	for name, spec := range map[string]Spec{
		"cgroup": {Path: os.Args[0], Cgroup: &cgroup.Spec{Name: "never-made"}},
		"lease":  {Path: os.Args[0], Lease: "/nonexistent/lease"},
	} {
		if _, err := Start(spec); !errors.Is(err, ErrNoReaper) {
			t.Errorf("%s: err = %v, want ErrNoReaper", name, err)
		}
	}
	_, err := Start(Spec{Path: "/nonexistent/worker"})
	if !errors.Is(err, syscall.ENOENT) {
		t.Errorf("err = %v, want ENOENT", err)
	}
}
