package store_test

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
	"golang.org/x/sync/errgroup"

	"github.com/rtrain/rtrain/rendezvous/store"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func listen(t *testing.T) *store.Server {
	t.Helper()
	s, err := store.Listen(context.Background(), "127.0.0.1:0", slog.New(slog.DiscardHandler))
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, s.Close()) })
	return s
}

// flush makes sure the server has handled every request c sent before:
// requests on one connection are handled in order, and SET has no reply.
func flush(t *testing.T, c *client) int64 {
	t.Helper()
	n, err := c.numKeys()
	require.NoError(t, err)
	return n
}

func TestListen(t *testing.T) {
	s := listen(t)
	assert.NotZero(t, s.Port())
	assert.Equal(t, s.Port(), s.Addr().(*net.TCPAddr).Port)

	_, err := store.Listen(context.Background(), fmt.Sprintf("127.0.0.1:%d", s.Port()), nil)
	assert.ErrorContains(t, err, "store: listen on")
}

func TestSetGet(t *testing.T) {
	s := listen(t)
	c := dial(t, s)
	require.NoError(t, c.set("k", "v1"))
	got, err := c.get("k")
	require.NoError(t, err)
	assert.Equal(t, "v1", got)

	require.NoError(t, c.set("k", "v2"))
	require.NoError(t, c.set("empty", ""))
	got, err = c.get("k")
	require.NoError(t, err)
	assert.Equal(t, "v2", got)
	got, err = c.get("empty")
	require.NoError(t, err)
	assert.Equal(t, "", got)

	// Another connection sees the same keys.
	got, err = dial(t, s).get("k")
	require.NoError(t, err)
	assert.Equal(t, "v2", got)
}

func TestGetMissingKeyClosesOnlyThatConnection(t *testing.T) {
	s := listen(t)
	bad, good := dial(t, s), dial(t, s)
	require.NoError(t, good.set("k", "v"))
	flush(t, good)

	require.NoError(t, bad.send([]byte{qGet}, str("missing")))
	assert.True(t, bad.closed(), "connection that got a missing key is still open")

	got, err := good.get("k")
	require.NoError(t, err)
	assert.Equal(t, "v", got)
}

func TestAdd(t *testing.T) {
	s := listen(t)
	c := dial(t, s)
	for _, tc := range []struct {
		delta, want int64
	}{{5, 5}, {-7, -2}, {0, -2}, {1 << 40, 1<<40 - 2}} {
		got, err := c.add("n", tc.delta)
		require.NoError(t, err)
		assert.Equal(t, tc.want, got, "add(%d)", tc.delta)
	}
	// Counters are decimal strings, readable with GET, and SET can seed them.
	got, err := c.get("n")
	require.NoError(t, err)
	assert.Equal(t, strconv.FormatInt(1<<40-2, 10), got)
	require.NoError(t, c.set("seeded", " 41xyz")) // parsed as std::stoll does
	n, err := c.add("seeded", 1)
	require.NoError(t, err)
	assert.Equal(t, int64(42), n)
}

func TestAddToNonIntegerClosesConnection(t *testing.T) {
	s := listen(t)
	c := dial(t, s)
	require.NoError(t, c.set("k", "abc"))
	require.NoError(t, c.send([]byte{qAdd}, str("k"), u64(1)))
	assert.True(t, c.closed())

	got, err := dial(t, s).get("k")
	require.NoError(t, err)
	assert.Equal(t, "abc", got, "failed ADD changed the value")
}

func TestAddConcurrent(t *testing.T) {
	s := listen(t)
	const clients, adds = 32, 50
	var g errgroup.Group
	seen := make([][]int64, clients)
	for i := range clients {
		c := dial(t, s)
		g.Go(func() error {
			for range adds {
				n, err := c.add("counter", 1)
				if err != nil {
					return err
				}
				seen[i] = append(seen[i], n)
			}
			return nil
		})
	}
	require.NoError(t, g.Wait())

	got, err := dial(t, s).add("counter", 0)
	require.NoError(t, err)
	assert.Equal(t, int64(clients*adds), got)
	// Every ADD saw a distinct value: the counter is atomic.
	distinct := make(map[int64]bool)
	for _, ns := range seen {
		for _, n := range ns {
			assert.False(t, distinct[n], "two ADDs returned %d", n)
			distinct[n] = true
		}
	}
	assert.Len(t, distinct, clients*adds)
}

func TestCompareSet(t *testing.T) {
	tests := map[string]struct {
		initial           *string // nil: key missing
		expected, desired string
		wantReply         string
		wantValue         *string // nil: key still missing
	}{
		"missing key, empty expected: created": {
			expected: "", desired: "new", wantReply: "new", wantValue: ptr("new"),
		},
		"missing key, expected given: reply is expected, nothing stored": {
			expected: "old", desired: "new", wantReply: "old",
		},
		"matching value: swapped": {
			initial: ptr("old"), expected: "old", desired: "new", wantReply: "new", wantValue: ptr("new"),
		},
		"other value: unchanged, reply is current value": {
			initial: ptr("other"), expected: "old", desired: "new", wantReply: "other", wantValue: ptr("other"),
		},
		"empty value, empty expected: swapped": {
			initial: ptr(""), expected: "", desired: "new", wantReply: "new", wantValue: ptr("new"),
		},
		"existing value, empty expected: unchanged": {
			initial: ptr("old"), expected: "", desired: "new", wantReply: "old", wantValue: ptr("old"),
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			s := listen(t)
			c := dial(t, s)
			if tc.initial != nil {
				require.NoError(t, c.set("k", *tc.initial))
			}
			got, err := c.compareSet("k", tc.expected, tc.desired)
			require.NoError(t, err)
			assert.Equal(t, tc.wantReply, got, "reply")

			ok, err := c.check("k")
			require.NoError(t, err)
			if tc.wantValue == nil {
				assert.Equal(t, byte(notReady), ok, "key was created")
				return
			}
			v, err := c.get("k")
			require.NoError(t, err)
			assert.Equal(t, *tc.wantValue, v, "stored value")
		})
	}
}

func ptr(s string) *string { return &s }

func TestCheck(t *testing.T) {
	s := listen(t)
	c := dial(t, s)
	require.NoError(t, c.set("a", "1"))
	for _, tc := range []struct {
		keys []string
		want byte
	}{
		{nil, ready},
		{[]string{"a"}, ready},
		{[]string{"a", "b"}, notReady},
		{[]string{"b"}, notReady},
	} {
		got, err := c.check(tc.keys...)
		require.NoError(t, err)
		assert.Equal(t, tc.want, got, "check(%q)", tc.keys)
	}
}

func TestWaitForSetKeysReturnsAtOnce(t *testing.T) {
	s := listen(t)
	c := dial(t, s)
	require.NoError(t, c.set("a", "1"))
	require.NoError(t, c.wait("a"))
	require.NoError(t, c.wait())
}

// Many clients WAIT on two keys; setting the first releases none of them,
// setting the second releases all, and other clients are served meanwhile.
func TestWaitReleasedBySet(t *testing.T) {
	s := listen(t)
	setter := dial(t, s)
	const waiters = 16
	ws := make([]*client, waiters)
	for i := range ws {
		ws[i] = dial(t, s)
		require.NoError(t, ws[i].sendWait("a", "b", "a"))
		flush(t, ws[i]) // the WAIT is registered and still pending
	}

	require.NoError(t, setter.set("a", "1"))
	flush(t, setter)
	for i, w := range ws {
		// Had the WAIT been answered, its byte would come before this reply.
		n, err := w.numKeys()
		require.NoError(t, err)
		assert.Equal(t, int64(1), n, "waiter %d: reply after one of two keys was set", i)
	}

	require.NoError(t, setter.set("b", "2"))
	var g errgroup.Group
	for _, w := range ws {
		g.Go(func() error {
			b, err := w.readByte()
			if err != nil {
				return err
			}
			if b != stopWaiting {
				return fmt.Errorf("wait reply = %d, want STOP_WAITING", b)
			}
			return nil
		})
	}
	require.NoError(t, g.Wait())
}

func TestWaitReleasedByAddAndCompareSet(t *testing.T) {
	s := listen(t)
	w, c := dial(t, s), dial(t, s)
	require.NoError(t, w.sendWait("counter", "cas"))
	flush(t, w)
	_, err := c.add("counter", 1)
	require.NoError(t, err)
	_, err = c.compareSet("cas", "", "x")
	require.NoError(t, err)
	b, err := w.readByte()
	require.NoError(t, err)
	assert.Equal(t, byte(stopWaiting), b)
}

func TestWaiterDisconnectIsForgotten(t *testing.T) {
	s := listen(t)
	gone, c := dial(t, s), dial(t, s)
	require.NoError(t, gone.sendWait("k"))
	flush(t, gone)
	require.NoError(t, gone.nc.Close())
	// The server must not write to, or trip over, the departed waiter.
	require.NoError(t, c.set("k", "v"))
	require.NoError(t, c.wait("k"))
}

func TestGetNumKeysAndDeleteKey(t *testing.T) {
	s := listen(t)
	c := dial(t, s)
	assert.Equal(t, int64(0), flush(t, c))
	require.NoError(t, c.set("a", "1"))
	_, err := c.add("b", 1)
	require.NoError(t, err)
	assert.Equal(t, int64(2), flush(t, c))

	n, err := c.deleteKey("a")
	require.NoError(t, err)
	assert.Equal(t, int64(1), n)
	n, err = c.deleteKey("a")
	require.NoError(t, err)
	assert.Equal(t, int64(0), n)
	assert.Equal(t, int64(1), flush(t, c))
	r, err := c.check("a")
	require.NoError(t, err)
	assert.Equal(t, byte(notReady), r)
}

func TestWatchKey(t *testing.T) {
	s := listen(t)
	watcher, c := dial(t, s), dial(t, s)
	r, err := watcher.watch("k")
	require.NoError(t, err)
	require.Equal(t, byte(keyCallbackRegistered), r)

	require.NoError(t, c.set("k", "v1"))
	require.NoError(t, c.set("k", "v2"))
	require.NoError(t, c.set("other", "x"))
	_, err = c.compareSet("k", "v2", "5")
	require.NoError(t, err)
	_, err = c.compareSet("k", "nope", "6") // no change, no callback
	require.NoError(t, err)
	_, err = c.add("k", 2)
	require.NoError(t, err)
	_, err = c.deleteKey("k")
	require.NoError(t, err)
	_, err = c.add("k", 1)
	require.NoError(t, err)

	want := []event{
		{keyCreated, "k", "", "v1"},
		{keyUpdated, "k", "v1", "v2"},
		{keyUpdated, "k", "v2", "5"},
		{keyUpdated, "k", "5", "7"},
		{keyDeleted, "k", "7", ""},
		{keyCreated, "k", "", "1"},
	}
	for i, w := range want {
		got, err := watcher.readEvent()
		require.NoError(t, err)
		assert.Equal(t, w, got, "event %d", i)
	}
}

func TestBadRequestClosesOnlyThatConnection(t *testing.T) {
	tests := map[string][][]byte{
		"unknown query type":  {{42}},
		"oversized key":       {{qSet}, u64(1 << 62)},
		"oversized key count": {{qWait}, u64(1 << 40)},
	}
	for name, req := range tests {
		t.Run(name, func(t *testing.T) {
			s := listen(t)
			bad, good := dial(t, s), dial(t, s)
			require.NoError(t, bad.send(req...))
			assert.True(t, bad.closed(), "connection still open")
			require.NoError(t, good.set("k", "v"))
			require.NoError(t, good.wait("k"))
		})
	}
}

func TestCloseEndsPendingWaits(t *testing.T) {
	s, err := store.Listen(context.Background(), "127.0.0.1:0", nil)
	require.NoError(t, err)
	c := dial(t, s)
	require.NoError(t, c.sendWait("never"))
	flush(t, c)

	require.NoError(t, s.Close())
	assert.True(t, c.closed(), "client still connected after Close")
	require.NoError(t, s.Close(), "second Close")
	_, err = net.Dial("tcp", s.Addr().String())
	assert.Error(t, err, "dial after Close")
}
