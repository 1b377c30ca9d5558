package agent

import (
	"fmt"
	"os"
	"path/filepath"
)

// sweepStaged removes the checkpoints staged under an agent's data
// directory, dataDir/jobs/*/staging (Service.jobDir): what an agent
// that crashed left there, gigabytes a job, of jobs that may never come
// back to this node to reuse the directory. It must run as the agent
// starts, after lockDir and before the agent serves, so that no live
// agent's staging is swept. It returns the directories it removed.
func sweepStaged(dataDir string) ([]string, error) {
	dirs, err := filepath.Glob(filepath.Join(dataDir, "jobs", "*", "staging"))
	if err != nil {
		return nil, fmt.Errorf("cluster: sweep staged checkpoints: %w", err)
	}
	var removed []string
	for _, d := range dirs {
		if err := os.RemoveAll(d); err != nil {
			return removed, fmt.Errorf("cluster: sweep staged checkpoints: %w", err)
		}
		removed = append(removed, d)
	}
	return removed, nil
}
