package pyshim

import (
	"errors"
	"fmt"
	"io"
	"os"
)

// FunctionModule is the module of the rtrain package that runs a train
// function a Python driver serialized (trainer.Config.Function): each
// worker runs `python -m rtrain._worker FILE`, which loads the function and
// its config from FILE and calls it.
const FunctionModule = "rtrain._worker"

// MaxReturnBytes bounds what a train function's return value may take,
// pickled: it travels to the driver in one event.
const MaxReturnBytes = 1 << 20

// ReadReturn reads what the worker left in the file ReturnFileEnv names,
// and removes the file, so that a later attempt never reads an earlier
// one's. A missing file is nil, not an error; a larger one than
// MaxReturnBytes is an error.
func ReadReturn(path string) ([]byte, error) {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("pyshim: return value: %w", err)
	}
	defer os.Remove(path)
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, MaxReturnBytes+1))
	if err != nil {
		return nil, fmt.Errorf("pyshim: return value: %w", err)
	}
	if len(b) > MaxReturnBytes {
		return nil, fmt.Errorf("pyshim: return value %s is over %d bytes", path, MaxReturnBytes)
	}
	return b, nil
}
