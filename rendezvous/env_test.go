package rendezvous

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestWorkerEnvContract(t *testing.T) {
	layouts := map[string][]int{
		"one node, one worker":   {1},
		"one node, four workers": {4},
		"two nodes of two":       {2, 2},
		"uneven nodes":           {3, 1, 2},
	}
	for name, sizes := range layouts {
		t.Run(name, func(t *testing.T) {
			l := Layout{RunID: "job1", MasterAddr: "10.0.0.1", MasterPort: 41234, LocalWorldSizes: sizes, RestartCount: 2, MaxRestarts: 3, ThreadsPerWorker: 2}
			world := 0
			for _, s := range sizes {
				world += s
			}
			rank := 0
			for node, local := range sizes {
				for lr := range local {
					env, err := l.WorkerEnv(nil, node, lr)
					if err != nil {
						t.Fatal(err)
					}
					got := ParseEnv(env)
					want := map[string]string{
						"MASTER_ADDR":                     "10.0.0.1",
						"MASTER_PORT":                     "41234",
						"RANK":                            strconv.Itoa(rank),
						"LOCAL_RANK":                      strconv.Itoa(lr),
						"WORLD_SIZE":                      strconv.Itoa(world),
						"LOCAL_WORLD_SIZE":                strconv.Itoa(local),
						"GROUP_RANK":                      strconv.Itoa(node),
						"GROUP_WORLD_SIZE":                strconv.Itoa(len(sizes)),
						"NODE_RANK":                       strconv.Itoa(node),
						"ROLE_RANK":                       strconv.Itoa(rank),
						"ROLE_WORLD_SIZE":                 strconv.Itoa(world),
						"ROLE_NAME":                       "default",
						"TORCHELASTIC_RUN_ID":             "job1",
						"TORCHELASTIC_RESTART_COUNT":      "2",
						"TORCHELASTIC_MAX_RESTARTS":       "3",
						"OMP_NUM_THREADS":                 "2",
						"TORCH_NCCL_ASYNC_ERROR_HANDLING": "1",
					}
					if diff := cmp.Diff(want, got); diff != "" {
						t.Errorf("node %d local rank %d: env mismatch (-want +got):\n%s", node, lr, diff)
					}
					if l.Rank(node, lr) != rank {
						t.Errorf("Rank(%d, %d) = %d, want %d", node, lr, l.Rank(node, lr), rank)
					}
					rank++
				}
			}
		})
	}
}

func TestWorkerEnvKeepsUserChoices(t *testing.T) {
	l := Layout{RunID: "r", MasterAddr: "127.0.0.1", MasterPort: 1, LocalWorldSizes: []int{2}, ThreadsPerWorker: 4, LegacyNCCLEnv: true}
	tests := []struct {
		name string
		base []string
		want map[string]string
		gone []string
	}{
		{
			name: "user's OMP_NUM_THREADS wins",
			base: []string{"OMP_NUM_THREADS=7"},
			want: map[string]string{"OMP_NUM_THREADS": "7", "NCCL_ASYNC_ERROR_HANDLING": "1"},
			gone: []string{"TORCH_NCCL_ASYNC_ERROR_HANDLING"},
		},
		{
			name: "user's NCCL switch wins",
			base: []string{"TORCH_NCCL_ASYNC_ERROR_HANDLING=0"},
			want: map[string]string{"TORCH_NCCL_ASYNC_ERROR_HANDLING": "0", "OMP_NUM_THREADS": "4"},
			gone: []string{"NCCL_ASYNC_ERROR_HANDLING"},
		},
		{
			name: "stale rendezvous values are replaced",
			base: []string{"RANK=9", "MASTER_PORT=29500", "TORCHELASTIC_USE_AGENT_STORE=True", "PATH=/bin"},
			want: map[string]string{"RANK": "0", "MASTER_PORT": "1", "PATH": "/bin"},
			gone: []string{"TORCHELASTIC_USE_AGENT_STORE"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env, err := l.WorkerEnv(tt.base, 0, 0)
			if err != nil {
				t.Fatal(err)
			}
			got := ParseEnv(env)
			for k, v := range tt.want {
				if got[k] != v {
					t.Errorf("%s = %q, want %q", k, got[k], v)
				}
			}
			for _, k := range tt.gone {
				if _, ok := got[k]; ok {
					t.Errorf("%s is set, want unset", k)
				}
			}
		})
	}
}

func TestWorkerEnvRejectsBadLayouts(t *testing.T) {
	good := Layout{RunID: "r", MasterAddr: "h", MasterPort: 5, LocalWorldSizes: []int{2}}
	tests := map[string]struct {
		mutate          func(*Layout)
		node, localRank int
	}{
		"no address":        {func(l *Layout) { l.MasterAddr = "" }, 0, 0},
		"port zero":         {func(l *Layout) { l.MasterPort = 0 }, 0, 0},
		"no nodes":          {func(l *Layout) { l.LocalWorldSizes = nil }, 0, 0},
		"empty node":        {func(l *Layout) { l.LocalWorldSizes = []int{2, 0} }, 0, 0},
		"node out of range": {func(*Layout) {}, 1, 0},
		"rank out of range": {func(*Layout) {}, 0, 2},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			l := good
			tt.mutate(&l)
			if _, err := l.WorkerEnv(nil, tt.node, tt.localRank); !errors.Is(err, ErrInvalidLayout) {
				t.Errorf("err = %v, want ErrInvalidLayout", err)
			}
		})
	}
}

func TestLegacyNCCL(t *testing.T) {
	for v, want := range map[string]bool{
		"1.13.0a0": true, "2.1.2+cu121": true, "2.2.0": false, "2.5.1": false, "3.0": false, "garbage": false, "": false,
	} {
		if got := LegacyNCCL(v); got != want {
			t.Errorf("LegacyNCCL(%q) = %v, want %v", v, got, want)
		}
	}
}

func TestFreePortIsBindableAndDistinct(t *testing.T) {
	seen := map[int]bool{}
	for range 20 {
		p, err := FreePort(context.Background(), "127.0.0.1")
		if err != nil {
			t.Fatal(err)
		}
		ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", p))
		if err != nil {
			t.Fatalf("port %d from FreePort is not bindable: %v", p, err)
		}
		ln.Close()
		seen[p] = true
	}
	if len(seen) < 2 {
		t.Errorf("FreePort returned %d distinct ports in 20 calls, want many", len(seen))
	}
}
