package agent

import (
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/rtrain/rtrain/cluster/auth"
	"github.com/rtrain/rtrain/cluster/clusterpb"
)

// heads are the addresses an agent may find its head at: one head, or the
// active head and its standbys, any of which may lead next. The agent
// talks to one at a time and moves to the next when that one fails.
type heads struct {
	addrs []string
	mu    sync.Mutex
	cur   int
	conns []*connOf
}

type connOf struct {
	client clusterpb.HeadClient
	close  func() error
}

// ParseHeadAddrs splits a comma-separated list of HOST:PORT.
func ParseHeadAddrs(list string) ([]string, error) {
	var out []string
	for a := range strings.SplitSeq(list, ",") {
		a = strings.TrimSpace(a)
		if a == "" {
			return nil, fmt.Errorf("cluster: head address list %q has an empty entry; write HOST:PORT[,HOST:PORT...]", list)
		}
		if _, _, err := net.SplitHostPort(a); err != nil {
			return nil, fmt.Errorf("cluster: head address %q: %w; write HOST:PORT[,HOST:PORT...]", a, err)
		}
		out = append(out, a)
	}
	if len(out) == 0 {
		return nil, errors.New("cluster: no head address; write HOST:PORT[,HOST:PORT...]")
	}
	return out, nil
}

func dialHeads(sec auth.Security, list string) (*heads, error) {
	addrs, err := ParseHeadAddrs(list)
	if err != nil {
		return nil, err
	}
	h := &heads{addrs: addrs}
	for _, a := range addrs {
		conn, err := sec.Dial(a)
		if err != nil {
			h.close()
			return nil, err
		}
		h.conns = append(h.conns, &connOf{client: clusterpb.NewHeadClient(conn), close: conn.Close})
	}
	return h, nil
}

// client is the head talked to now, and its address.
func (h *heads) client() (clusterpb.HeadClient, string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.conns[h.cur].client, h.addrs[h.cur]
}

// next moves to the next address, after a call to the current one failed.
func (h *heads) next() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.cur = (h.cur + 1) % len(h.addrs)
}

func (h *heads) close() {
	for _, c := range h.conns {
		_ = c.close()
	}
}

// reachable reports whether any of addrs accepts a TCP connection within
// timeout: the network around the node works.
func reachable(addrs []string, timeout time.Duration) bool {
	if len(addrs) == 0 {
		return false
	}
	ch := make(chan bool, len(addrs))
	for _, a := range addrs {
		go func() {
			c, err := net.DialTimeout("tcp", a, timeout)
			if err == nil {
				_ = c.Close()
			}
			ch <- err == nil
		}()
	}
	ok := false
	for range addrs {
		ok = <-ch || ok
	}
	return ok
}
