package main

import (
	"fmt"
	"log/slog"
	"os"

	"github.com/spf13/cobra"

	"github.com/rtrain/rtrain/internal/version"
)

func newRootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:   "rtrain",
		Short: "Run PyTorch distributed training jobs",
		Long: `rtrain launches PyTorch DistributedDataParallel jobs: it reserves the
workers' resources, wires the torch.distributed rendezvous exactly as torchrun
does, streams the workers' logs and tells you which rank failed and why.`,
		SilenceUsage:  true,
		SilenceErrors: true,
		// An unknown command is a usage error with a one-line message, not
		// cobra's multi-line suggestion.
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) > 0 {
				return usageError{fmt.Errorf("unknown command %q; run 'rtrain --help' for the list", args[0])}
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	root.SetFlagErrorFunc(func(cmd *cobra.Command, err error) error {
		return usageError{fmt.Errorf("%w (see '%s --help')", err, cmd.CommandPath())}
	})
	root.AddCommand(newFitCmd(), newCheckpointsCmd(), newDoctorCmd(), newVersionCmd(),
		newStartCmd(), newStopCmd(), newStatusCmd(), newJobsCmd(), newLogsCmd(), newDrainCmd())
	return root
}

func newVersionCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print rtrain's version",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			_, err := fmt.Fprintln(cmd.OutOrStdout(), version.String())
			return err
		},
	}
}

func newLogger(verbose bool) *slog.Logger {
	level := slog.LevelWarn
	if verbose {
		level = slog.LevelDebug
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
}
