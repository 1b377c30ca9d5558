package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/rtrain/rtrain/checkpoint"
	"github.com/rtrain/rtrain/internal/text"
	"github.com/rtrain/rtrain/trainer"
)

func newCheckpointsCmd() *cobra.Command {
	var s3 checkpoint.S3Options
	cmd := &cobra.Command{
		Use:     "checkpoints",
		Aliases: []string{"checkpoint", "ckpt"},
		Short:   "List, show, download and delete stored checkpoints",
		Long: `checkpoints works on what rtrain fit stored: a run is STORAGE/RUN
(s3://bucket/prefix/my-run or ~/rtrain_results/my-run) and a checkpoint is
STORAGE/RUN/checkpoint_NNNNNN. Only committed checkpoints are shown: one whose
upload did not finish does not exist.`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) > 0 {
				return usageError{fmt.Errorf("unknown checkpoints command %q; use ls, show, download or rm", args[0])}
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	addS3Flags(cmd.PersistentFlags(), &s3)
	uriArgs := func(n int, usage string) cobra.PositionalArgs {
		return func(cmd *cobra.Command, args []string) error {
			if len(args) != n {
				return usageError{fmt.Errorf("usage: rtrain checkpoints %s", usage)}
			}
			return nil
		}
	}
	var asJSON bool
	var output outputFlag
	ls := &cobra.Command{
		Use:   "ls RUN_URI",
		Short: "List a run's committed checkpoints (or the runs of a storage root)",
		Args:  uriArgs(1, "ls RUN_URI"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := output.check(); err != nil {
				return err
			}
			return listCheckpoints(cmd.Context(), cmd.OutOrStdout(), args[0], s3, asJSON || output.format == "json")
		},
	}
	output.add(ls)
	ls.Flags().BoolVar(&asJSON, "json", false, "print JSON (as --output json)")
	show := &cobra.Command{
		Use:   "show CHECKPOINT_URI",
		Short: "Print a checkpoint's manifest: metrics, files, sizes, checksums",
		Args:  uriArgs(1, "show CHECKPOINT_URI"),
		RunE: func(cmd *cobra.Command, args []string) error {
			_, m, err := openCheckpoint(cmd.Context(), args[0], s3)
			if err != nil {
				return err
			}
			enc := json.NewEncoder(cmd.OutOrStdout())
			enc.SetIndent("", "  ")
			return enc.Encode(struct {
				URI string `json:"uri"`
				checkpoint.Manifest
			}{m.URI, *m})
		},
	}
	download := &cobra.Command{
		Use:   "download CHECKPOINT_URI DIR",
		Short: "Copy a checkpoint's files into DIR, checking every checksum",
		Args:  uriArgs(2, "download CHECKPOINT_URI DIR"),
		RunE: func(cmd *cobra.Command, args []string) error {
			run, m, err := openCheckpoint(cmd.Context(), args[0], s3)
			if err != nil {
				return err
			}
			start := time.Now()
			if err := run.Download(cmd.Context(), *m, args[1]); err != nil {
				return err
			}
			d := time.Since(start)
			fmt.Fprintf(cmd.OutOrStdout(), "downloaded %s (%s, %s) to %s in %s\n", m.URI, text.Plural(len(m.Files), "file"), text.Bytes(m.Size()), args[1], d.Round(time.Millisecond))
			return nil
		},
	}
	rm := &cobra.Command{
		Use:   "rm CHECKPOINT_URI",
		Short: "Delete a checkpoint (its manifest first, so it is never half there)",
		Args:  uriArgs(1, "rm CHECKPOINT_URI"),
		RunE: func(cmd *cobra.Command, args []string) error {
			loc, name, index, err := trainer.SplitCheckpointURI(args[0])
			if err != nil {
				return usageError{err}
			}
			if index < 0 {
				return usageError{fmt.Errorf("%s is a run, not a checkpoint; rm deletes one checkpoint: RUN_URI/checkpoint_NNNNNN", args[0])}
			}
			run, err := openRun(cmd.Context(), loc, name, s3)
			if err != nil {
				return err
			}
			if err := run.Delete(cmd.Context(), index); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "deleted %s\n", strings.TrimRight(args[0], "/"))
			return nil
		},
	}
	cmd.AddCommand(ls, show, download, rm)
	return cmd
}

func openRun(ctx context.Context, loc, name string, s3 checkpoint.S3Options) (*checkpoint.Run, error) {
	s, err := checkpoint.Open(ctx, loc, s3)
	if err != nil {
		return nil, err
	}
	return checkpoint.NewRun(s, name)
}

func openCheckpoint(ctx context.Context, uri string, s3 checkpoint.S3Options) (*checkpoint.Run, *checkpoint.Manifest, error) {
	loc, name, index, err := trainer.SplitCheckpointURI(uri)
	if err != nil {
		return nil, nil, usageError{err}
	}
	if index < 0 {
		return nil, nil, usageError{fmt.Errorf("%s is a run, not a checkpoint; list its checkpoints with: rtrain checkpoints ls %s", uri, uri)}
	}
	run, err := openRun(ctx, loc, name, s3)
	if err != nil {
		return nil, nil, err
	}
	m, err := run.Get(ctx, index)
	if errors.Is(err, checkpoint.ErrNotFound) {
		return nil, nil, fmt.Errorf("no committed checkpoint at %s (list them with: rtrain checkpoints ls %s)", uri, filepath.Dir(strings.TrimRight(uri, "/")))
	}
	return run, m, err
}

func listCheckpoints(ctx context.Context, out io.Writer, uri string, s3 checkpoint.S3Options, asJSON bool) error {
	loc, name, index, err := trainer.SplitCheckpointURI(uri)
	if err != nil {
		return usageError{err}
	}
	if index >= 0 {
		return usageError{fmt.Errorf("%s is a checkpoint; see it with: rtrain checkpoints show %s", uri, uri)}
	}
	run, err := openRun(ctx, loc, name, s3)
	if err != nil {
		return err
	}
	ms, err := run.List(ctx)
	if err != nil {
		return err
	}
	if len(ms) == 0 {
		// Perhaps the URI is a storage root: say which runs it holds.
		if s, err := checkpoint.Open(ctx, uri, s3); err == nil {
			if runs, err := checkpoint.Runs(ctx, s); err == nil && len(runs) > 0 {
				if asJSON {
					return json.NewEncoder(out).Encode(map[string]any{"runs": runs})
				}
				fmt.Fprintf(out, "%s is a storage root with %s:\n", uri, text.Plural(len(runs), "run"))
				for _, r := range runs {
					fmt.Fprintf(out, "  %s\n", s.URI(r))
				}
				return nil
			}
		}
		if asJSON {
			return json.NewEncoder(out).Encode([]any{})
		}
		fmt.Fprintf(out, "no committed checkpoints in %s\n", run.URI())
		return nil
	}
	if asJSON {
		type entry struct {
			URI     string         `json:"uri"`
			Index   int            `json:"index"`
			Time    time.Time      `json:"time"`
			Bytes   int64          `json:"bytes"`
			Files   int            `json:"files"`
			Metrics map[string]any `json:"metrics"`
		}
		list := make([]entry, len(ms))
		for i, m := range ms {
			list[i] = entry{m.URI, m.Index, m.Time, m.Size(), len(m.Files), m.Metrics}
		}
		enc := json.NewEncoder(out)
		enc.SetIndent("", "  ")
		return enc.Encode(list)
	}
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "CHECKPOINT\tTIME\tSIZE\tFILES\tMETRICS")
	for _, m := range ms {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\n", filepath.Base(m.URI), m.Time.Local().Format("2006-01-02 15:04:05"), text.Bytes(m.Size()), len(m.Files), manifestMetrics(m.Metrics))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintf(out, "in %s\n", run.URI())
	return nil
}

// manifestMetrics prints stored metrics sorted by key (a manifest keeps no
// order), floats to 6 significant digits.
func manifestMetrics(m map[string]any) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		v := m[k]
		if f, ok := v.(float64); ok {
			v = fmt.Sprintf("%.6g", f)
		}
		parts[i] = fmt.Sprintf("%s=%v", k, v)
	}
	return strings.Join(parts, " ")
}
