package rendezvous

import (
	"os"
	"testing"
)

// BenchmarkWorkerEnv is the env contract for one worker on the launch path,
// over this process's real environment.
func BenchmarkWorkerEnv(b *testing.B) {
	l := Layout{RunID: "r", MasterAddr: "127.0.0.1", MasterPort: 29400, LocalWorldSizes: []int{8, 8}}
	base := os.Environ()
	for b.Loop() {
		if _, err := l.WorkerEnv(base, 1, 3); err != nil {
			b.Fatal(err)
		}
	}
}
