package head

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/rtrain/rtrain/cluster/etcdstore"
)

// etcdTable is the job table of heads with standbys: rows of etcd's "jobs"
// table, written only while this head leads (a deposed head's write is
// refused, so it never overwrites what its successor wrote).
type etcdTable struct {
	lead *etcdstore.Leadership
	// ctx bounds a write: etcd may be restarting, which a write waits out.
	ctx context.Context
}

const jobsTable = "jobs"

func (t *etcdTable) put(r jobRecord) error {
	b, err := json.Marshal(r)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(t.ctx, etcdWriteTimeout)
	defer cancel()
	return t.lead.Put(ctx, jobsTable, r.ID, b)
}

// etcdWriteTimeout bounds how long a job table write waits for etcd.
const etcdWriteTimeout = time.Minute

func (t *etcdTable) close() error { return nil }

// loadEtcdJobs reads the job table a leader left in etcd and settles it as
// a head that starts does (settle), writing back what changed.
func loadEtcdJobs(ctx context.Context, es *etcdstore.Store, t *etcdTable, now time.Time) ([]jobRecord, error) {
	rows, err := es.List(ctx, jobsTable)
	if err != nil {
		return nil, err
	}
	recs := make([]jobRecord, 0, len(rows))
	for k, v := range rows {
		var r jobRecord
		if err := json.Unmarshal(v, &r); err != nil {
			return nil, fmt.Errorf("job %s: %w", k, err)
		}
		recs = append(recs, r)
	}
	out, changed := settle(recs, now)
	for _, r := range changed {
		if err := t.put(r); err != nil {
			return nil, err
		}
	}
	return out, nil
}
