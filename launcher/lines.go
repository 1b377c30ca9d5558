package launcher

import (
	"bytes"
	"sync"
)

// maxLine bounds one logical line; longer output (a progress bar without a
// newline) is cut into pieces of this size.
const maxLine = 64 << 10

// LineWriter is an io.Writer that calls Emit once per complete line, without
// the newline. Close emits a last unterminated line.
type LineWriter struct {
	Emit func(line string)
	buf  []byte
}

func (w *LineWriter) Write(p []byte) (int, error) {
	n := len(p)
	for len(p) > 0 {
		i := bytes.IndexByte(p, '\n')
		if i < 0 {
			w.buf = append(w.buf, p...)
			for len(w.buf) >= maxLine {
				w.Emit(string(w.buf[:maxLine]))
				w.buf = w.buf[maxLine:]
			}
			break
		}
		line := p[:i]
		if len(w.buf) > 0 {
			line = append(w.buf, line...)
			w.buf = w.buf[:0]
		}
		w.Emit(string(bytes.TrimSuffix(line, []byte{'\r'})))
		p = p[i+1:]
	}
	return n, nil
}

// Close flushes a last line that had no newline.
func (w *LineWriter) Close() error {
	if len(w.buf) > 0 {
		w.Emit(string(w.buf))
		w.buf = nil
	}
	return nil
}

// Tail keeps the last N lines given to Add. It is safe for concurrent use.
type Tail struct {
	mu    sync.Mutex
	n     int
	lines []string
}

// NewTail keeps the last n lines.
func NewTail(n int) *Tail { return &Tail{n: n} }

// Add appends a line, dropping the oldest past the limit.
func (t *Tail) Add(line string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.lines = append(t.lines, line)
	if len(t.lines) > 2*t.n {
		t.lines = append(t.lines[:0], t.lines[len(t.lines)-t.n:]...)
	}
}

// Lines returns a copy of the kept lines, oldest first.
func (t *Tail) Lines() []string {
	t.mu.Lock()
	defer t.mu.Unlock()
	start := max(len(t.lines)-t.n, 0)
	return append([]string(nil), t.lines[start:]...)
}
