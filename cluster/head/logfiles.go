package head

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/rtrain/rtrain/trainer"
)

// logFiles writes each rank's lines on the head as they arrive, so the
// head keeps every node's logs in one place.
type logFiles struct {
	dir   string
	files map[int]*os.File
}

func newLogFiles(dir string) *logFiles { return &logFiles{dir: dir, files: map[int]*os.File{}} }

func (l *logFiles) write(e trainer.Event) {
	if e.Type != trainer.EventLog {
		return
	}
	f := l.files[e.Rank]
	if f == nil {
		if err := os.MkdirAll(l.dir, 0o755); err != nil {
			return
		}
		var err error
		if f, err = os.OpenFile(filepath.Join(l.dir, fmt.Sprintf("rank_%d.log", e.Rank)), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644); err != nil {
			return
		}
		l.files[e.Rank] = f
	}
	_, _ = f.WriteString(e.Line + "\n")
}

func (l *logFiles) close() {
	for _, f := range l.files {
		_ = f.Close()
	}
}
