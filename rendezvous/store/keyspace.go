package store

import (
	"bytes"
	"fmt"
	"strconv"
	"sync"
)

// keyspace is the store's state and the meaning of each query, with no I/O:
// a handler decides what every affected connection is sent and puts it in
// that connection's outbox. One mutex orders all of it, as the single
// daemon thread of torch's server does, so replies and callbacks reach each
// connection in the order the operations took effect.
type keyspace struct {
	mu       sync.Mutex
	data     map[string][]byte
	waiting  map[string][]*waiter // key -> WAITs that still miss it
	watchers map[string][]*outbox // key -> callback connections
}

// waiter is one WAIT request that is not satisfied yet.
type waiter struct {
	out     *outbox
	missing int // keys of the request not set yet, counting repeats
}

func newKeyspace() *keyspace {
	return &keyspace{
		data:     make(map[string][]byte),
		waiting:  make(map[string][]*waiter),
		watchers: make(map[string][]*outbox),
	}
}

// set stores value under key. SET has no reply.
func (ks *keyspace) set(key string, value []byte) {
	ks.mu.Lock()
	defer ks.mu.Unlock()
	old, existed := ks.data[key]
	ks.data[key] = value
	ks.wake(key)
	ks.notify(key, existed, old, value)
}

// compareSet is torch 1.13's COMPARE_SET, whose reply is the value the key
// holds afterwards, with one quirk kept for compatibility: when the key is
// missing and expected is not empty, nothing is stored and the reply is
// expected itself (torch's source calls this "lying" to the caller). A
// missing key with an empty expected value is created.
//
// Unlike torch 1.13, a COMPARE_SET that creates or changes a key wakes the
// WAITs on it; there they would hang until their timeout.
func (ks *keyspace) compareSet(out *outbox, key string, expected, desired []byte) {
	ks.mu.Lock()
	defer ks.mu.Unlock()
	cur, ok := ks.data[key]
	switch {
	case !ok && len(expected) != 0:
		out.send(appendBytes(nil, expected))
		return
	case ok && !bytes.Equal(cur, expected):
		out.send(appendBytes(nil, cur))
		return
	}
	ks.data[key] = desired
	out.send(appendBytes(nil, desired))
	ks.wake(key)
	ks.notify(key, ok, cur, desired)
}

// get replies with key's value. The client WAITs for the key first, so a
// missing key is an error, on which torch's server drops the connection.
func (ks *keyspace) get(out *outbox, key string) error {
	ks.mu.Lock()
	defer ks.mu.Unlock()
	v, ok := ks.data[key]
	if !ok {
		return fmt.Errorf("%w: GET of missing key %q", errProtocol, key)
	}
	out.send(appendBytes(nil, v))
	return nil
}

// add adds delta to the counter under key (0 if missing), kept as a decimal
// string as torch keeps it, and replies with the new value as an int64.
// The old value is parsed like std::stoll; one that does not parse is an
// error, on which torch's server drops the connection.
func (ks *keyspace) add(out *outbox, key string, delta int64) error {
	ks.mu.Lock()
	defer ks.mu.Unlock()
	old, ok := ks.data[key]
	sum := delta
	if ok {
		n, err := parseStoll(old)
		if err != nil {
			return fmt.Errorf("%w: ADD to %q: %w", errProtocol, key, err)
		}
		sum += n // wraps on overflow; in C++ it is undefined
	}
	value := []byte(strconv.FormatInt(sum, 10))
	ks.data[key] = value
	out.send(appendUint64(nil, uint64(sum)))
	ks.wake(key)
	ks.notify(key, ok, old, value)
	return nil
}

// check replies READY if every key is set, else NOT_READY.
func (ks *keyspace) check(out *outbox, keys []string) {
	ks.mu.Lock()
	defer ks.mu.Unlock()
	if ks.has(keys) {
		out.send([]byte{checkReady})
	} else {
		out.send([]byte{checkNotReady})
	}
}

// wait replies STOP_WAITING once every key is set: now, or from the SET,
// ADD or COMPARE_SET that sets the last of them. Keys deleted after they
// were set still count as set for a pending WAIT, as in torch.
func (ks *keyspace) wait(out *outbox, keys []string) {
	ks.mu.Lock()
	defer ks.mu.Unlock()
	if ks.has(keys) {
		out.send([]byte{waitStopWaiting})
		return
	}
	w := &waiter{out: out}
	for _, k := range keys {
		if _, ok := ks.data[k]; !ok {
			ks.waiting[k] = append(ks.waiting[k], w)
			w.missing++
		}
	}
}

// numKeys replies with the number of keys, torch's internal "init/" counter
// and every attempt's keys included.
func (ks *keyspace) numKeys(out *outbox) {
	ks.mu.Lock()
	defer ks.mu.Unlock()
	out.send(appendUint64(nil, uint64(len(ks.data))))
}

// deleteKey removes key and replies with how many keys it removed (0 or 1).
func (ks *keyspace) deleteKey(out *outbox, key string) {
	ks.mu.Lock()
	defer ks.mu.Unlock()
	old, ok := ks.data[key]
	var n uint64
	if ok {
		delete(ks.data, key)
		n = 1
		for _, w := range ks.watchers[key] {
			w.send(watchEvent(watchKeyDeleted, key, old, nil))
		}
	}
	out.send(appendUint64(nil, n))
}

// watch registers out, a client's callback connection, for every later
// change of key and replies KEY_CALLBACK_REGISTERED.
func (ks *keyspace) watch(out *outbox, key string) {
	ks.mu.Lock()
	defer ks.mu.Unlock()
	ks.watchers[key] = append(ks.watchers[key], out)
	out.send([]byte{watchKeyCallbackRegistered})
}

// drop forgets the WAITs and watches of a closed connection.
func (ks *keyspace) drop(out *outbox) {
	ks.mu.Lock()
	defer ks.mu.Unlock()
	for k, ws := range ks.waiting {
		kept := ws[:0]
		for _, w := range ws {
			if w.out != out {
				kept = append(kept, w)
			}
		}
		if len(kept) == 0 {
			delete(ks.waiting, k)
		} else {
			ks.waiting[k] = kept
		}
	}
	for k, outs := range ks.watchers {
		kept := outs[:0]
		for _, o := range outs {
			if o != out {
				kept = append(kept, o)
			}
		}
		if len(kept) == 0 {
			delete(ks.watchers, k)
		} else {
			ks.watchers[k] = kept
		}
	}
}

func (ks *keyspace) has(keys []string) bool {
	for _, k := range keys {
		if _, ok := ks.data[k]; !ok {
			return false
		}
	}
	return true
}

// wake counts key off every WAIT that misses it and answers those that miss
// nothing more. Caller holds mu.
func (ks *keyspace) wake(key string) {
	for _, w := range ks.waiting[key] {
		w.missing--
		if w.missing == 0 {
			w.out.send([]byte{waitStopWaiting})
		}
	}
	delete(ks.waiting, key)
}

// notify sends a KEY_CREATED or KEY_UPDATED callback to key's watchers.
// Caller holds mu.
func (ks *keyspace) notify(key string, existed bool, old, value []byte) {
	kind := watchKeyCreated
	if existed {
		kind = watchKeyUpdated
	}
	for _, w := range ks.watchers[key] {
		w.send(watchEvent(kind, key, old, value))
	}
}

// watchEvent encodes a callback: kind, key, old value, new value (a created
// key's old value and a deleted key's new value are empty).
func watchEvent(kind byte, key string, old, value []byte) []byte {
	b := []byte{kind}
	b = appendBytes(b, []byte(key))
	b = appendBytes(b, old)
	return appendBytes(b, value)
}

// parseStoll parses b as std::stoll does: leading whitespace, an optional
// sign, then the longest run of decimal digits; what follows is ignored.
func parseStoll(b []byte) (int64, error) {
	i := 0
	for i < len(b) && (b[i] == ' ' || (b[i] >= '\t' && b[i] <= '\r')) {
		i++
	}
	start := i
	if i < len(b) && (b[i] == '+' || b[i] == '-') {
		i++
	}
	digits := i
	for i < len(b) && b[i] >= '0' && b[i] <= '9' {
		i++
	}
	if i == digits {
		return 0, fmt.Errorf("value %q is not an integer", b)
	}
	n, err := strconv.ParseInt(string(b[start:i]), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("value %q: %w", b, err)
	}
	return n, nil
}
