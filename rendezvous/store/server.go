package store

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"time"
)

// Server is a TCPStore server. Its methods are safe for concurrent use.
type Server struct {
	ln  net.Listener
	log *slog.Logger
	ks  *keyspace

	mu      sync.Mutex
	closing bool
	conns   map[net.Conn]struct{}
	done    chan struct{} // closed by Close

	wg        sync.WaitGroup
	closeOnce sync.Once
	closeErr  error
}

// Listen starts a TCPStore server on addr ("host:port"; port 0 picks a free
// one, which Port reports) and returns once it accepts connections, so
// workers started afterwards never find it missing. ctx bounds only the
// setup; the server runs until Close. A nil logger discards.
func Listen(ctx context.Context, addr string, logger *slog.Logger) (*Server, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("store: listen on %s: %w", addr, err)
	}
	s := &Server{
		ln:    ln,
		log:   logger.With("addr", ln.Addr().String()),
		ks:    newKeyspace(),
		conns: make(map[net.Conn]struct{}),
		done:  make(chan struct{}),
	}
	s.wg.Add(1)
	go s.accept()
	s.log.Debug("store listening")
	return s, nil
}

// Addr is the address the server listens on.
func (s *Server) Addr() net.Addr { return s.ln.Addr() }

// Port is the TCP port the server listens on: MASTER_PORT for the workers.
func (s *Server) Port() int { return s.ln.Addr().(*net.TCPAddr).Port }

// Close stops accepting, closes every client connection (a worker still
// blocked on the store gets a connection error) and returns once every
// goroutine of the server has ended. Later calls return the first result.
func (s *Server) Close() error {
	s.closeOnce.Do(func() {
		s.mu.Lock()
		s.closing = true
		close(s.done)
		if err := s.ln.Close(); err != nil {
			s.closeErr = fmt.Errorf("store: close listener: %w", err)
		}
		for c := range s.conns {
			_ = c.Close() // the connection's reader reports why it ended
		}
		s.mu.Unlock()
		s.wg.Wait()
		s.log.Debug("store closed")
	})
	return s.closeErr
}

func (s *Server) accept() {
	defer s.wg.Done()
	var backoff time.Duration
	for {
		nc, err := s.ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			// Out of file descriptors and the like: wait and try again,
			// as net/http does, rather than spin or give up on the job.
			backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
			s.log.Warn("store accept failed", "err", err, "retry_in", backoff)
			select {
			case <-time.After(backoff):
				continue
			case <-s.done:
				return
			}
		}
		backoff = 0
		s.start(nc)
	}
}

// start serves nc unless the server is closing.
func (s *Server) start(nc net.Conn) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closing {
		_ = nc.Close()
		return
	}
	s.conns[nc] = struct{}{}
	c := &conn{
		s:    s,
		nc:   nc,
		out:  newOutbox(),
		done: make(chan struct{}),
		log:  s.log.With("client", nc.RemoteAddr().String()),
	}
	s.wg.Add(2)
	go c.read()
	go c.write()
}

// conn is one client connection: a reader that handles requests in order,
// and a writer that sends what the keyspace put in the outbox, so that a
// client slow to read never holds up the others.
type conn struct {
	s    *Server
	nc   net.Conn
	out  *outbox
	done chan struct{} // closed when read returns
	log  *slog.Logger
}

func (c *conn) read() {
	defer c.s.wg.Done()
	c.log.Debug("store client connected")
	r := &reader{r: bufio.NewReader(c.nc)}
	var err error
	for err == nil {
		err = c.serve(r)
	}
	switch {
	case errors.Is(err, io.EOF), errors.Is(err, net.ErrClosed):
		c.log.Debug("store client disconnected")
	case errors.Is(err, errProtocol):
		c.log.Warn("store client sent a bad request; closing its connection", "err", err)
	default:
		c.log.Debug("store client connection failed", "err", err)
	}
	c.s.ks.drop(c.out)
	close(c.done)
	_ = c.nc.Close()
	c.s.mu.Lock()
	delete(c.s.conns, c.nc)
	c.s.mu.Unlock()
}

// serve reads and handles one request.
func (c *conn) serve(r *reader) error {
	b, err := r.byte()
	if err != nil {
		return err
	}
	q := queryType(b)
	ks := c.s.ks
	switch q {
	case querySet:
		key, err := r.string()
		if err != nil {
			return err
		}
		value, err := r.bytes()
		if err != nil {
			return err
		}
		ks.set(key, value)
	case queryCompareSet:
		key, err := r.string()
		if err != nil {
			return err
		}
		expected, err := r.bytes()
		if err != nil {
			return err
		}
		desired, err := r.bytes()
		if err != nil {
			return err
		}
		ks.compareSet(c.out, key, expected, desired)
	case queryGet:
		key, err := r.string()
		if err != nil {
			return err
		}
		return ks.get(c.out, key)
	case queryAdd:
		key, err := r.string()
		if err != nil {
			return err
		}
		delta, err := r.int64()
		if err != nil {
			return err
		}
		return ks.add(c.out, key, delta)
	case queryCheck:
		keys, err := r.keys()
		if err != nil {
			return err
		}
		ks.check(c.out, keys)
	case queryWait:
		keys, err := r.keys()
		if err != nil {
			return err
		}
		ks.wait(c.out, keys)
	case queryGetNumKeys:
		ks.numKeys(c.out)
	case queryWatchKey:
		key, err := r.string()
		if err != nil {
			return err
		}
		ks.watch(c.out, key)
	case queryDeleteKey:
		key, err := r.string()
		if err != nil {
			return err
		}
		ks.deleteKey(c.out, key)
	default:
		return fmt.Errorf("%w: unknown query type %d", errProtocol, b)
	}
	return nil
}

func (c *conn) write() {
	defer c.s.wg.Done()
	for {
		select {
		case <-c.out.ready:
		case <-c.done:
			return
		}
		if _, err := c.nc.Write(c.out.take()); err != nil {
			_ = c.nc.Close() // ends read, which reports the error
			return
		}
	}
}

// outbox holds the bytes waiting to be written to one connection. send never
// blocks, so the keyspace can fill outboxes while it holds its lock.
type outbox struct {
	mu    sync.Mutex
	buf   []byte
	ready chan struct{} // has a token while buf is not empty
}

func newOutbox() *outbox {
	return &outbox{ready: make(chan struct{}, 1)}
}

func (o *outbox) send(b []byte) {
	o.mu.Lock()
	o.buf = append(o.buf, b...)
	o.mu.Unlock()
	select {
	case o.ready <- struct{}{}:
	default:
	}
}

func (o *outbox) take() []byte {
	o.mu.Lock()
	defer o.mu.Unlock()
	b := o.buf
	o.buf = nil
	return b
}
