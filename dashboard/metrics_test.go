package dashboard_test

import (
	"net/http"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil/promlint"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/rtrain/rtrain/trainer"
)

// scrape reads /metrics with Prometheus' own parser: every rtrain_ sample
// as "name{label=value,...}" → value.
func scrape(t *testing.T, get func(path string) (*http.Response, string)) map[string]float64 {
	t.Helper()
	resp, body := get("/metrics")
	require.Equal(t, http.StatusOK, resp.StatusCode)
	problems, err := promlint.New(strings.NewReader(body)).Lint()
	require.NoError(t, err)
	for _, pr := range problems {
		if strings.HasPrefix(pr.Metric, "rtrain_") {
			t.Errorf("lint: %s: %s", pr.Metric, pr.Text)
		}
	}
	p := expfmt.NewTextParser(model.LegacyValidation)
	families, err := p.TextToMetricFamilies(strings.NewReader(body))
	require.NoError(t, err)
	out := map[string]float64{}
	for name, f := range families {
		if !strings.HasPrefix(name, "rtrain_") {
			continue
		}
		for _, m := range f.GetMetric() {
			var labels []string
			for _, l := range m.GetLabel() {
				labels = append(labels, l.GetName()+"="+l.GetValue())
			}
			sort.Strings(labels)
			key := name
			if len(labels) > 0 {
				key += "{" + strings.Join(labels, ",") + "}"
			}
			out[key] = sampleValue(f.GetType(), m)
		}
	}
	return out
}

func sampleValue(typ dto.MetricType, m *dto.Metric) float64 {
	if typ == dto.MetricType_COUNTER {
		return m.GetCounter().GetValue()
	}
	return m.GetGauge().GetValue()
}

func TestMetrics(t *testing.T) {
	src, jobs := fakeCluster()
	srv := serve(t, src)
	get := func(path string) (*http.Response, string) { return get(t, srv, path, token) }
	got := scrape(t, get)
	want := map[string]float64{
		"rtrain_nodes{state=alive}":                  1,
		"rtrain_nodes{state=dead}":                   1,
		"rtrain_node_heartbeat_age_seconds{node=n1}": 0.4,
		"rtrain_node_heartbeat_age_seconds{node=n2}": 12,
		"rtrain_cpus": 8,
		"rtrain_custom_resource{resource=licence}":      2,
		"rtrain_custom_resource_free{resource=licence}": 0.5,
		"rtrain_cpus_free":                              6,
		"rtrain_gpus":                                   4,
		"rtrain_gpus_free":                              2,
		"rtrain_memory_bytes":                           16 << 30,
		"rtrain_memory_free_bytes":                      8 << 30,
		"rtrain_jobs{state=PENDING}":                    1,
		"rtrain_jobs{state=STARTING}":                   0,
		"rtrain_jobs{state=RUNNING}":                    1,
		"rtrain_jobs{state=SUCCEEDED}":                  0,
		"rtrain_jobs{state=FAILED}":                     1,
		"rtrain_jobs{state=CANCELLED}":                  0,
		"rtrain_jobs{state=LOST}":                       0,
		"rtrain_gpu_utilization_ratio{gpu=0,node=n1}":   0.75,
		"rtrain_gpu_memory_used_bytes{gpu=0,node=n1}":   1 << 30,
		"rtrain_gpu_memory_bytes{gpu=0,node=n1}":        40 << 30,
		"rtrain_gpu_memory_used_bytes{gpu=1,node=n1}":   0,
		"rtrain_gpu_memory_bytes{gpu=1,node=n1}":        40 << 30,
		"rtrain_scheduler_pending_jobs":                 1,
		"rtrain_head_leader":                            1,
		"rtrain_reports_total":                          4,
		"rtrain_checkpoints_total":                      2,
		"rtrain_checkpoint_bytes_total":                 3072,
		"rtrain_checkpoint_upload_seconds_total":        2,
		"rtrain_worker_exits_total{outcome=success}":    0,
		"rtrain_worker_exits_total{outcome=failed}":     1,
		"rtrain_worker_exits_total{outcome=oom}":        0,
		"rtrain_worker_exits_total{outcome=stopped}":    1,
		"rtrain_worker_exits_total{outcome=lost}":       0,
		"rtrain_worker_exits_total{outcome=preempted}":  0,
		"rtrain_restarts_total":                         0,
	}
	assert.Equal(t, want, got)

	// Counters go on from what earlier scrapes saw.
	jobs["j1"].add(trainer.Event{Type: trainer.EventCheckpoint, Checkpoint: &trainer.Checkpoint{Index: 3, Bytes: 100, Took: time.Second}})
	jobs["j1"].add(trainer.Event{Type: trainer.EventReport, Rank: 1})
	jobs["j1"].add(trainer.Event{Type: trainer.EventRestart, Attempt: 1})
	got = scrape(t, get)
	assert.Equal(t, 5.0, got["rtrain_reports_total"])
	assert.Equal(t, 3172.0, got["rtrain_checkpoint_bytes_total"])
	assert.Equal(t, 3.0, got["rtrain_checkpoint_upload_seconds_total"])
	assert.Equal(t, 1.0, got["rtrain_restarts_total"])
}
