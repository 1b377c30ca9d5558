package launcher

import (
	"bytes"
	"sync"
	"time"
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

// Tail keeps the last N lines given to Add, with when each came. It is
// safe for concurrent use.
type Tail struct {
	mu    sync.Mutex
	n     int
	lines []tailLine
}

type tailLine struct {
	text string
	at   time.Time
}

// NewTail keeps the last n lines.
func NewTail(n int) *Tail { return &Tail{n: n} }

// Add appends a line, dropping the oldest past the limit.
func (t *Tail) Add(line string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.lines = append(t.lines, tailLine{line, time.Now()})
	if len(t.lines) > 2*t.n {
		t.lines = append(t.lines[:0], t.lines[len(t.lines)-t.n:]...)
	}
}

// Lines returns a copy of the kept lines, oldest first.
func (t *Tail) Lines() []string { return t.Since(time.Time{}) }

// Since returns the kept lines that were added at or after since, oldest
// first.
func (t *Tail) Since(since time.Time) []string {
	t.mu.Lock()
	defer t.mu.Unlock()
	var out []string
	for _, l := range t.lines[max(len(t.lines)-t.n, 0):] {
		if !l.at.Before(since) {
			out = append(out, l.text)
		}
	}
	return out
}
