package store

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// queryType is the first byte of every request. The values are the order of
// c10d::QueryType in torch 1.13's TCPStore.cpp; 1.13 has no VALIDATE,
// APPEND or CANCEL_WAIT (those came with 2.x) and sends no magic number.
type queryType uint8

const (
	querySet queryType = iota
	queryCompareSet
	queryGet
	queryAdd
	queryCheck
	queryWait
	queryGetNumKeys
	queryWatchKey
	queryDeleteKey
)

func (q queryType) String() string {
	switch q {
	case querySet:
		return "SET"
	case queryCompareSet:
		return "COMPARE_SET"
	case queryGet:
		return "GET"
	case queryAdd:
		return "ADD"
	case queryCheck:
		return "CHECK"
	case queryWait:
		return "WAIT"
	case queryGetNumKeys:
		return "GETNUMKEYS"
	case queryWatchKey:
		return "WATCH_KEY"
	case queryDeleteKey:
		return "DELETE_KEY"
	}
	return fmt.Sprintf("query(%d)", uint8(q))
}

// Reply bytes (c10d::CheckResponseType, WaitResponseType, WatchResponseType).
const (
	checkReady    byte = 0
	checkNotReady byte = 1

	waitStopWaiting byte = 0

	watchKeyUpdated            byte = 0
	watchKeyCreated            byte = 1
	watchKeyDeleted            byte = 2
	watchKeyCallbackRegistered byte = 3
)

// Limits on what one request may ask the server to allocate. torch's own
// server has none; these only stop a stray or hostile peer from taking the
// orchestrator's memory. Real payloads (gloo addresses, NCCL unique ids,
// counters) are tiny.
const (
	maxBytes = 64 << 20 // one key or value
	maxKeys  = 1 << 20  // keys in one WAIT or CHECK
)

// errProtocol marks a malformed request; the connection that sent it is
// closed, as torch's server closes a socket whose query throws.
var errProtocol = errors.New("store: protocol error")

// order is the byte order of integers on the wire: torch writes its native
// representation, and clients and this server share a host (or at least an
// architecture family: every platform torch ships for is little-endian).
var order = binary.NativeEndian

// reader decodes the arguments of requests.
type reader struct {
	r   *bufio.Reader
	buf [8]byte
}

func (r *reader) byte() (byte, error) {
	return r.r.ReadByte()
}

func (r *reader) uint64() (uint64, error) {
	if _, err := io.ReadFull(r.r, r.buf[:]); err != nil {
		return 0, err
	}
	return order.Uint64(r.buf[:]), nil
}

func (r *reader) int64() (int64, error) {
	v, err := r.uint64()
	return int64(v), err
}

// bytes reads a length-prefixed vector, the encoding of both strings and
// std::vector<uint8_t>.
func (r *reader) bytes() ([]byte, error) {
	n, err := r.uint64()
	if err != nil {
		return nil, err
	}
	if n > maxBytes {
		return nil, fmt.Errorf("%w: %d-byte argument, over the %d-byte limit", errProtocol, n, maxBytes)
	}
	b := make([]byte, n)
	if _, err := io.ReadFull(r.r, b); err != nil {
		return nil, err
	}
	return b, nil
}

func (r *reader) string() (string, error) {
	b, err := r.bytes()
	return string(b), err
}

// keys reads a WAIT or CHECK argument list: a uint64 count, then strings.
func (r *reader) keys() ([]string, error) {
	n, err := r.uint64()
	if err != nil {
		return nil, err
	}
	if n > maxKeys {
		return nil, fmt.Errorf("%w: %d keys, over the %d-key limit", errProtocol, n, maxKeys)
	}
	keys := make([]string, n)
	for i := range keys {
		if keys[i], err = r.string(); err != nil {
			return nil, err
		}
	}
	return keys, nil
}

// appendUint64 and appendBytes encode replies.
func appendUint64(b []byte, v uint64) []byte {
	return order.AppendUint64(b, v)
}

func appendBytes(b, v []byte) []byte {
	b = appendUint64(b, uint64(len(v)))
	return append(b, v...)
}
