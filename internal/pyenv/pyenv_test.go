package pyenv

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, goleak.Cleanup(func(code int) {
		built := dir
		Cleanup()
		if built != "" {
			if _, err := os.Stat(built); !os.IsNotExist(err) {
				os.Stderr.WriteString("pyenv: Cleanup left " + built + "\n")
				code = 1
			}
		}
		os.Exit(code)
	}))
}

func TestVenvIsBuiltOnce(t *testing.T) {
	e := Venv(t)
	t.Logf("venv, wheel and binary built in %v", e.Took)
	if again := Venv(t); again != e {
		t.Errorf("second Venv = %p, want the first one, %p", again, e)
	}
	for _, p := range []string{e.Python, filepath.Join(e.Bin, "rtrain"), e.Binary, e.Wheel} {
		if _, err := os.Stat(p); err != nil {
			t.Errorf("Env names a missing file: %v", err)
		}
	}

	// The environment finds the venv's rtrain and python first on PATH.
	cmd := exec.Command("sh", "-c", `command -v rtrain; command -v python; echo "$VIRTUAL_ENV"`)
	cmd.Env = e.Env()
	out, err := cmd.Output()
	if err != nil {
		t.Fatal(err)
	}
	got := strings.Fields(string(out))
	want := []string{filepath.Join(e.Bin, "rtrain"), e.Python, filepath.Dir(e.Bin)}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("rtrain, python and VIRTUAL_ENV = %q, want %q", got, want)
	}
}

func TestBinaryVersion(t *testing.T) {
	tests := []struct {
		name, prints, want string
		wantErr            bool
	}{
		{name: "release", prints: "rtrain v1.2.3 (commit 0123456789ab, go1.26 linux/amd64)", want: "v1.2.3"},
		{name: "dirty describe", prints: "rtrain v0.0.0-1-g0123abc-dirty (commit unknown, go1.26 linux/amd64)", want: "v0.0.0-1-g0123abc-dirty"},
		{name: "another program", prints: "torchrun 1.13", wantErr: true},
		{name: "nothing", prints: "", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			bin := filepath.Join(t.TempDir(), "rtrain")
			if err := os.WriteFile(bin, []byte("#!/bin/sh\necho '"+tt.prints+"'\n"), 0o755); err != nil {
				t.Fatal(err)
			}
			got, err := BinaryVersion(bin)
			if (err != nil) != tt.wantErr || got != tt.want {
				t.Errorf("BinaryVersion = %q, %v; want %q, error %v", got, err, tt.want, tt.wantErr)
			}
		})
	}
}
