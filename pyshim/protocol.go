package pyshim

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"path/filepath"
	"sync"
	"time"
)

// maxMessage bounds one request line.
const maxMessage = 4 << 20

// Metrics is a report's metrics with their order kept, so they print in the
// order the script wrote them.
type Metrics struct {
	Keys   []string
	Values map[string]any
}

// UnmarshalJSON keeps the object's key order.
func (m *Metrics) UnmarshalJSON(b []byte) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	tok, err := dec.Token()
	if err != nil {
		return err
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return errors.New("metrics: not a JSON object")
	}
	m.Keys, m.Values = nil, map[string]any{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return err
		}
		key := tok.(string)
		var v any
		if err := dec.Decode(&v); err != nil {
			return err
		}
		if _, dup := m.Values[key]; !dup {
			m.Keys = append(m.Keys, key)
		}
		m.Values[key] = v
	}
	return nil
}

// MarshalJSON writes the object in key order.
func (m Metrics) MarshalJSON() ([]byte, error) {
	var buf bytes.Buffer
	buf.WriteByte('{')
	for i, k := range m.Keys {
		if i > 0 {
			buf.WriteByte(',')
		}
		kb, _ := json.Marshal(k)
		vb, err := json.Marshal(m.Values[k])
		if err != nil {
			return nil, err
		}
		buf.Write(kb)
		buf.WriteByte(':')
		buf.Write(vb)
	}
	buf.WriteByte('}')
	return buf.Bytes(), nil
}

// Report is one report() call of one worker.
type Report struct {
	Rank    int
	Metrics Metrics
	Time    time.Time
	// Seq counts the worker's report() calls from 1. Every rank reports at
	// the same points, so the Seq-th reports of all ranks belong together.
	Seq int
	// Checkpoint is the absolute path of the directory the worker attached
	// with checkpoint=, empty when it attached none. The worker may delete
	// it as soon as Report returns.
	Checkpoint string
}

// Handler receives what workers send. Its methods are called concurrently,
// one goroutine per worker connection.
type Handler interface {
	// Report handles one report() call; an error is raised in the worker,
	// and the worker is blocked until it returns.
	Report(ctx context.Context, r Report) error
}

type request struct {
	Op         string  `json:"op"`
	Rank       int     `json:"rank"`
	PID        int     `json:"pid"`
	Metrics    Metrics `json:"metrics"`
	Seq        int     `json:"seq"`
	Checkpoint string  `json:"checkpoint"`
}

type reply struct {
	OK    bool   `json:"ok"`
	Error string `json:"error,omitempty"`
}

// Server is the agent's end of the channel: a Unix socket the workers of one
// group connect to.
type Server struct {
	ln     *net.UnixListener
	h      Handler
	log    *slog.Logger
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu    sync.Mutex
	conns map[net.Conn]struct{}
}

// Listen serves h on a Unix socket at path (which must not exist).
func Listen(path string, h Handler, log *slog.Logger) (*Server, error) {
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		return nil, fmt.Errorf("pyshim: listen on %s: %w", path, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &Server{ln: ln, h: h, log: log, ctx: ctx, cancel: cancel, conns: map[net.Conn]struct{}{}}
	s.wg.Go(s.accept)
	return s, nil
}

// Addr is the socket path, the value of AddrEnv for the workers.
func (s *Server) Addr() string { return s.ln.Addr().String() }

// Close stops accepting, closes every connection and waits for the handlers.
func (s *Server) Close() error {
	s.cancel()
	err := s.ln.Close()
	s.mu.Lock()
	for c := range s.conns {
		_ = c.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
	return err
}

func (s *Server) accept() {
	for {
		c, err := s.ln.Accept()
		if err != nil {
			return // closed
		}
		s.mu.Lock()
		if s.ctx.Err() != nil {
			s.mu.Unlock()
			_ = c.Close()
			return
		}
		s.conns[c] = struct{}{}
		s.mu.Unlock()
		s.wg.Go(func() {
			s.serve(c)
			s.mu.Lock()
			delete(s.conns, c)
			s.mu.Unlock()
			_ = c.Close()
		})
	}
}

func (s *Server) serve(c net.Conn) {
	sc := bufio.NewScanner(c)
	sc.Buffer(make([]byte, 64<<10), maxMessage)
	enc := json.NewEncoder(c)
	rank := -1
	for sc.Scan() {
		var req request
		rep := reply{OK: true}
		if err := json.Unmarshal(sc.Bytes(), &req); err != nil {
			rep = reply{Error: fmt.Sprintf("bad request: %v", err)}
		} else {
			switch req.Op {
			case "hello":
				rank = req.Rank
			case "report":
				r := Report{Rank: req.Rank, Metrics: req.Metrics, Time: time.Now(), Seq: req.Seq, Checkpoint: req.Checkpoint}
				if r.Checkpoint != "" && !filepath.IsAbs(r.Checkpoint) {
					rep = reply{Error: fmt.Sprintf("checkpoint path %q is not absolute", r.Checkpoint)}
				} else if err := s.h.Report(s.ctx, r); err != nil {
					rep = reply{Error: err.Error()}
				}
			default:
				rep = reply{Error: fmt.Sprintf("unknown op %q (is this rtrain older than the shim?)", req.Op)}
			}
		}
		if err := enc.Encode(rep); err != nil {
			return
		}
	}
	if err := sc.Err(); err != nil && !errors.Is(err, net.ErrClosed) && !errors.Is(err, io.EOF) {
		s.log.Debug("worker channel closed", "rank", rank, "err", err)
	}
}
