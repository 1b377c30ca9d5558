package head

import (
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/rtrain/rtrain/trainer"
)

func TestServedFrom(t *testing.T) {
	adopted := &headJob{epoch: 2, bases: []int64{0, 40, 90}}
	for _, tt := range []struct {
		name        string
		hj          *headJob
		from, epoch int64
		want        int64
	}{
		{"a new job's numbering", &headJob{}, 7, 0, 7},
		{"this head's numbering", adopted, 120, 2, 120},
		{"the first head's, past the first adopter's base", adopted, 60, 0, 40},
		{"the first head's, short of it", adopted, 30, 0, 30},
		{"the first adopter's, past this head's base", adopted, 100, 1, 90},
		{"from before the first", adopted, -3, 0, 0},
		{"a job restored at its end", &headJob{epoch: 1, bases: []int64{0, 0}}, 12, 0, 0},
	} {
		t.Run(tt.name, func(t *testing.T) {
			assert.Equal(t, tt.want, tt.hj.servedFrom(tt.from, tt.epoch))
		})
	}
}

func TestAdoptedJobNumbersFromTheTablesNext(t *testing.T) {
	r := jobRecord{ID: "j", State: trainer.StateRunning, Next: 57, Epoch: 1, Bases: []int64{0, 20}}
	hj := adoptedJob(r)
	assert.Equal(t, int64(2), hj.epoch)
	assert.Equal(t, []int64{0, 20, 57}, hj.bases)
	hj.add(jobEvent(trainer.Event{Type: trainer.EventLog}), "", "")
	assert.Equal(t, [2]int64{57, 2}, [2]int64{hj.events[0].Index, hj.events[0].Epoch})
	assert.Equal(t, int64(2), hj.record().Epoch, "kept, for the head after this one")
}
