package trainer

import (
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/rtrain/rtrain/cluster/clusterpb"
)

// A job that logs without end keeps its head's memory bounded: the oldest
// log lines go, every other event stays, and readers resume by index.
func TestHeadJobDropsOldestLogLines(t *testing.T) {
	hj := &headJob{changed: make(chan struct{})}
	add := func(e Event) {
		b, err := json.Marshal(e)
		require.NoError(t, err)
		hj.add(&clusterpb.JobEvent{EventJson: b}, "", "")
	}
	add(Event{Type: EventState, State: StateRunning})
	for i := range maxJobEvents {
		add(Event{Type: EventLog, Line: "line", Rank: i % 4})
	}
	add(Event{Type: EventReport, Rank: 0})

	assert.LessOrEqual(t, len(hj.events), maxJobEvents)
	assert.Equal(t, int64(maxJobEvents+2), hj.next)
	all := hj.eventsFrom(0)
	assert.Contains(t, string(all[0].EventJson), `"Type":"state"`, "non-log events are kept")
	assert.Contains(t, string(all[len(all)-1].EventJson), `"Type":"report"`)
	for i := 1; i < len(all); i++ {
		require.Less(t, all[i-1].Index, all[i].Index, "indices only grow")
	}
	// A reader that had read up to an index that was dropped goes on from
	// the next kept event, reading nothing twice.
	from := all[1].Index - 1
	got := hj.eventsFrom(from)
	assert.Equal(t, all[1].Index, got[0].Index)
}
