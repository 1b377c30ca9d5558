package pyenv

import (
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// Version is the version the binary is built with: git describe's shape,
// commits after a tag and a dirty tree, so the wheel's version takes every
// step of the conversion to PEP 440.
const Version = "v0.0.0-1-g0123abc-dirty"

// Python is the interpreter the venv is made from.
const Python = "/usr/bin/python3"

var (
	once  sync.Once
	dir   string // where build puts everything; Cleanup removes it
	env   *Env
	lacks string // what this machine lacks for env, when it does
	setUp error
)

// Venv returns the venv, building it on the first call. It skips t in
// -short mode, and when this machine lacks python3-venv or python3-pip
// (fails it under CI); it fails t when a build step fails.
func Venv(t testing.TB) *Env {
	t.Helper()
	if testing.Short() {
		t.Skip("skipping the wheel's venv (builds and installs the wheel, about 10s) in -short mode")
	}
	once.Do(func() { env, lacks, setUp = build() })
	if lacks != "" {
		if os.Getenv("CI") != "" {
			t.Fatalf("%s is required in CI (make test installs it)", lacks)
		}
		t.Skipf("skipping: %s", lacks)
	}
	if setUp != nil {
		t.Fatal(setUp)
	}
	return env
}

// Cleanup removes what Venv built. Call it once the package's tests are
// done, from TestMain.
func Cleanup() {
	if dir != "" {
		_ = os.RemoveAll(dir)
	}
}

// build makes the Env in dir from a binary built from this tree, or says
// what this machine lacks for it.
func build() (_ *Env, lacks string, _ error) {
	start := time.Now()
	if checkVenv(Python) != nil {
		return nil, Python + " with venv and pip (python3-venv, python3-pip)", nil
	}
	root, err := moduleRoot()
	if err != nil {
		return nil, "", err
	}
	if dir, err = os.MkdirTemp("", "rtrain-pyenv-"); err != nil {
		return nil, "", err
	}
	binary := filepath.Join(dir, "rtrain")
	ldflags := "-X github.com/rtrain/rtrain/internal/version.Version=" + Version
	if _, err := run(root, "go", "build", "-ldflags", ldflags, "-o", binary, "./cmd/rtrain"); err != nil {
		return nil, "", err
	}
	e, err := Install(dir, Python, binary)
	if err != nil {
		return nil, "", err
	}
	e.Took = time.Since(start)
	return e, "", nil
}
