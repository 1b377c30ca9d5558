package checkpoint_test

import (
	"context"
	"errors"
	"io"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/rtrain/rtrain/checkpoint"
	"github.com/rtrain/rtrain/internal/testutil"
)

// flipProxy forwards TCP connections to target and flips one bit of the
// first upload that passes through it, at byte flipAt of a connection's
// client-to-server stream: deep in a part's payload, past the headers.
type flipProxy struct {
	ln      net.Listener
	target  string
	flipAt  int64
	flipped atomic.Bool
	wg      sync.WaitGroup
	mu      sync.Mutex
	conns   []net.Conn
}

func newFlipProxy(t *testing.T, target string, flipAt int64) *flipProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	p := &flipProxy{ln: ln, target: target, flipAt: flipAt}
	p.wg.Add(1)
	go p.serve()
	t.Cleanup(p.close)
	return p
}

func (p *flipProxy) endpoint() string { return "http://" + p.ln.Addr().String() }

func (p *flipProxy) serve() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		s, err := net.Dial("tcp", p.target)
		if err != nil {
			c.Close()
			continue
		}
		p.mu.Lock()
		p.conns = append(p.conns, c, s)
		p.mu.Unlock()
		p.wg.Add(2)
		go func() {
			defer p.wg.Done()
			_, _ = io.Copy(c, s)
			c.Close()
		}()
		go func() {
			defer p.wg.Done()
			p.forward(s, c)
			s.Close()
		}()
	}
}

// forward copies src to dst, flipping the bit once across the proxy.
func (p *flipProxy) forward(dst, src net.Conn) {
	buf := make([]byte, 32<<10)
	var off int64
	for {
		n, err := src.Read(buf)
		if n > 0 {
			if i := p.flipAt - off; i >= 0 && i < int64(n) && p.flipped.CompareAndSwap(false, true) {
				buf[i] ^= 0x10
			}
			off += int64(n)
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

func (p *flipProxy) close() {
	p.ln.Close()
	p.mu.Lock()
	for _, c := range p.conns {
		c.Close()
	}
	p.mu.Unlock()
	p.wg.Wait()
}

// A part damaged between rtrain and the server is never committed: the
// server rejects it (over plain http each part carries a checksum the
// server checks), so Commit fails or, if the part is sent again, stores
// the right bytes. Without that check the commit would succeed and only
// Download would notice.
func TestCommitS3DamageOnTheWay(t *testing.T) {
	srv := testutil.MinIO(t)
	proxy := newFlipProxy(t, strings.TrimPrefix(srv.Endpoint, "http://"), 3<<20)
	s := newS3Storage(t, srv, proxy.endpoint())
	r := newRun(t, s, "damage")
	tr := sampleTree(7) // model.pt is a multipart upload
	ctx := context.Background()

	m, err := r.Commit(ctx, 1, writeTree(t, tr), nil, 1)
	require.True(t, proxy.flipped.Load(), "the proxy never damaged a byte; the test proves nothing")
	if err != nil {
		t.Logf("commit refused, as it should be: %v", err)
		_, err := r.Get(ctx, 1)
		require.True(t, errors.Is(err, checkpoint.ErrNotFound), "a failed commit left checkpoint 1: %v", err)
		return
	}
	t.Log("commit succeeded: the damaged part was sent again")
	requireDownload(t, r, m, tr)
}
