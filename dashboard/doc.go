// Package dashboard is the head's web face: a server-rendered dashboard of
// the cluster and its jobs, a small JSON API for the pages' live parts, and
// Prometheus metrics at /metrics, all on one http.Handler behind the
// cluster token.
//
// Everything it shows is read from a Source (a running *trainer.Head) when
// it is asked for: the cluster from Status, a job's ranks, logs, metric
// charts and checkpoints by folding the job's events, incrementally, so a
// page view or a scrape reads only the events that arrived since the last.
// The pages need nothing from outside the head (no CDN): templates, style
// sheet and script are embedded, and charts are SVG drawn on the server.
//
// The metrics, all read at scrape time: rtrain_nodes{state},
// rtrain_node_heartbeat_age_seconds{node}, rtrain_cpus, rtrain_cpus_free,
// rtrain_gpus, rtrain_gpus_free, rtrain_memory_bytes,
// rtrain_memory_free_bytes (alive nodes), rtrain_jobs{state},
// rtrain_scheduler_pending_jobs, rtrain_head_leader, and the counters rtrain_reports_total,
// rtrain_checkpoints_total, rtrain_checkpoint_bytes_total,
// rtrain_checkpoint_upload_seconds_total, rtrain_worker_exits_total{outcome}
// and rtrain_restarts_total; plus the Go runtime's and the process's own.
// Per-GPU utilisation is not among them: the head does not collect it from
// the nodes yet.
package dashboard
