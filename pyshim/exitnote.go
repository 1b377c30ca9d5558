package pyshim

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"time"
)

// ExitNote is what a worker's sitecustomize noted of how its program
// ended, in the file ExitFileEnv names. At most one of Raised and Finished
// is set; neither is when the program was killed, called os._exit, or
// never got as far as the end.
type ExitNote struct {
	// Raised is when an uncaught exception reached the top of the
	// program; Exception is its last line ("ValueError: boom").
	Raised    time.Time
	Exception string
	// Finished is when the program ended by itself without an uncaught
	// exception, once every atexit handler it registered had run: what
	// the process does after that is the interpreter's teardown. Code is
	// the exit status it asked for (sys.exit), 0 when it ran to its end.
	Finished time.Time
	Code     int
}

// FinishedCleanly reports whether the program ran to its end and asked for
// exit status 0.
func (n ExitNote) FinishedCleanly() bool { return !n.Finished.IsZero() && n.Code == 0 }

// exitNoteJSON is the file's form: seconds since the epoch as floats.
type exitNoteJSON struct {
	Raised    float64 `json:"raised,omitempty"`
	Exception string  `json:"exception,omitempty"`
	Finished  float64 `json:"finished,omitempty"`
	Code      int     `json:"code,omitempty"`
}

// ReadExitNote reads the note at path and removes the file, so that a
// later attempt never reads an earlier one's. A missing file is the zero
// note, not an error.
func ReadExitNote(path string) (ExitNote, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return ExitNote{}, nil
	}
	if err != nil {
		return ExitNote{}, fmt.Errorf("pyshim: exit note: %w", err)
	}
	_ = os.Remove(path)
	var j exitNoteJSON
	if err := json.Unmarshal(b, &j); err != nil {
		// Half-written: the worker died while writing it.
		return ExitNote{}, fmt.Errorf("pyshim: exit note %s: %w", path, err)
	}
	n := ExitNote{Exception: j.Exception, Code: j.Code}
	if j.Raised > 0 {
		n.Raised = unixSeconds(j.Raised)
	} else if j.Finished > 0 {
		n.Finished = unixSeconds(j.Finished)
	}
	return n, nil
}

func unixSeconds(s float64) time.Time { return time.Unix(0, int64(s*1e9)) }
