package store_test

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/rtrain/rtrain/rendezvous/store"
)

// The wire constants again, written out from torch 1.13's TCPStore.cpp
// rather than taken from the package, so these tests check them.
const (
	qSet        = 0
	qCompareSet = 1
	qGet        = 2
	qAdd        = 3
	qCheck      = 4
	qWait       = 5
	qGetNumKeys = 6
	qWatchKey   = 7
	qDeleteKey  = 8

	ready    = 0
	notReady = 1

	stopWaiting = 0

	keyUpdated            = 0
	keyCreated            = 1
	keyDeleted            = 2
	keyCallbackRegistered = 3
)

// client speaks the protocol as torch's TCPStore client does, minus the "/"
// key prefix, retries and the implicit WAIT before GET. Requests and replies
// are separate calls so a test can leave a WAIT pending.
type client struct {
	nc net.Conn
	r  *bufio.Reader
}

// timeout bounds every read, so a reply that never comes fails the test
// rather than hanging it.
const timeout = 10 * time.Second

func dial(t *testing.T, s *store.Server) *client {
	t.Helper()
	nc, err := net.Dial("tcp", s.Addr().String())
	require.NoError(t, err)
	t.Cleanup(func() { _ = nc.Close() })
	return &client{nc: nc, r: bufio.NewReader(nc)}
}

func u64(v uint64) []byte { return binary.NativeEndian.AppendUint64(nil, v) }

func str(s string) []byte { return append(u64(uint64(len(s))), s...) }

func (c *client) send(parts ...[]byte) error {
	var b []byte
	for _, p := range parts {
		b = append(b, p...)
	}
	_, err := c.nc.Write(b)
	return err
}

func (c *client) readByte() (byte, error) {
	if err := c.nc.SetReadDeadline(time.Now().Add(timeout)); err != nil {
		return 0, err
	}
	return c.r.ReadByte()
}

func (c *client) readInt() (int64, error) {
	if err := c.nc.SetReadDeadline(time.Now().Add(timeout)); err != nil {
		return 0, err
	}
	var b [8]byte
	if _, err := io.ReadFull(c.r, b[:]); err != nil {
		return 0, err
	}
	return int64(binary.NativeEndian.Uint64(b[:])), nil
}

func (c *client) readBytes() (string, error) {
	n, err := c.readInt()
	if err != nil {
		return "", err
	}
	b := make([]byte, n)
	if _, err := io.ReadFull(c.r, b); err != nil {
		return "", err
	}
	return string(b), nil
}

func (c *client) set(key, value string) error {
	return c.send([]byte{qSet}, str(key), str(value))
}

func (c *client) get(key string) (string, error) {
	if err := c.send([]byte{qGet}, str(key)); err != nil {
		return "", err
	}
	return c.readBytes()
}

func (c *client) add(key string, delta int64) (int64, error) {
	if err := c.send([]byte{qAdd}, str(key), u64(uint64(delta))); err != nil {
		return 0, err
	}
	return c.readInt()
}

func (c *client) compareSet(key, expected, desired string) (string, error) {
	if err := c.send([]byte{qCompareSet}, str(key), str(expected), str(desired)); err != nil {
		return "", err
	}
	return c.readBytes()
}

func keyList(keys []string) [][]byte {
	parts := [][]byte{u64(uint64(len(keys)))}
	for _, k := range keys {
		parts = append(parts, str(k))
	}
	return parts
}

func (c *client) check(keys ...string) (byte, error) {
	if err := c.send(append([][]byte{{qCheck}}, keyList(keys)...)...); err != nil {
		return 0, err
	}
	return c.readByte()
}

// sendWait sends a WAIT; readByte gets its STOP_WAITING.
func (c *client) sendWait(keys ...string) error {
	return c.send(append([][]byte{{qWait}}, keyList(keys)...)...)
}

func (c *client) wait(keys ...string) error {
	if err := c.sendWait(keys...); err != nil {
		return err
	}
	b, err := c.readByte()
	if err != nil {
		return err
	}
	if b != stopWaiting {
		return fmt.Errorf("wait reply = %d, want STOP_WAITING", b)
	}
	return nil
}

func (c *client) numKeys() (int64, error) {
	if err := c.send([]byte{qGetNumKeys}); err != nil {
		return 0, err
	}
	return c.readInt()
}

func (c *client) deleteKey(key string) (int64, error) {
	if err := c.send([]byte{qDeleteKey}, str(key)); err != nil {
		return 0, err
	}
	return c.readInt()
}

func (c *client) watch(key string) (byte, error) {
	if err := c.send([]byte{qWatchKey}, str(key)); err != nil {
		return 0, err
	}
	return c.readByte()
}

// event is one WATCH_KEY callback.
type event struct {
	Kind            byte
	Key, Old, Value string
}

func (c *client) readEvent() (event, error) {
	var e event
	var err error
	if e.Kind, err = c.readByte(); err != nil {
		return e, err
	}
	if e.Key, err = c.readBytes(); err != nil {
		return e, err
	}
	if e.Old, err = c.readBytes(); err != nil {
		return e, err
	}
	e.Value, err = c.readBytes()
	return e, err
}

// closed reports whether the server has closed c: a read fails at once with
// EOF, or with a reset when the server left bytes of ours unread.
func (c *client) closed() bool {
	_, err := c.readByte()
	var ne net.Error
	return err != nil && !(errors.As(err, &ne) && ne.Timeout())
}
