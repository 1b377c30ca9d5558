package sched

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestParseCustom(t *testing.T) {
	for _, tc := range []struct {
		in, want, err string
	}{
		{in: "", want: ""},
		{in: `{"licence": 2, "accelerator_type:A100": 1}`, want: "accelerator_type:A100=1,licence=2"},
		{in: "licence=2, fast_disk=0.5", want: "fast_disk=0.5,licence=2"},
		{in: "licence=0", want: ""},
		{in: "licence=0.33333333", want: "licence=0.3333"},
		{in: `{"CPU": 4}`, err: `"CPU" is not a custom resource: CPUs, GPUs and memory have flags of their own`},
		{in: "gpu=1", err: `"gpu" is not a custom resource`},
		{in: "licence", err: `"licence" is not name=quantity`},
		{in: "licence=two", err: `"licence=two" is not name=quantity`},
		{in: "a=1,a=2", err: "a is given twice"},
		{in: "licence=-1", err: "quantity -1 must be 0 or more"},
		{in: "licence=0.00001", err: "below the smallest, 0.0001"},
		{in: "licence=2e9", err: "quantity 2e+09 is above the largest, 1e+09"},
		{in: `{"a b": 1}`, err: "names are letters, digits"},
		{in: `{"licence": "2"}`, err: "not a JSON object of numbers"},
	} {
		t.Run(tc.in, func(t *testing.T) {
			got, err := ParseCustom(tc.in)
			if tc.err != "" {
				require.ErrorContains(t, err, tc.err)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, Custom(tc.want), got)
		})
	}
}

func TestCustomArithmetic(t *testing.T) {
	total := Resources{CPU: 8, Custom: "a=1,b=2"}
	tenth := Resources{Custom: "a=0.1"}
	free := total
	for range 10 {
		require.True(t, tenth.Fits(free))
		free = free.Sub(tenth)
	}
	assert.Equal(t, Custom("b=2"), free.Custom, "ten tenths use all of a, with nothing left over from rounding")
	assert.False(t, tenth.Fits(free))
	for range 10 {
		free = free.Add(tenth)
	}
	assert.Equal(t, total, free, "giving back restores the total exactly, so node shapes still match")
	assert.Equal(t, 20, capacity(total, tenth.Scale(0).Add(Resources{Custom: "b=0.1"})))
	assert.Equal(t, "{CPU: 8, a: 1, b: 2}", total.String())
	assert.Equal(t, map[string]float64{"a": 1, "b": 2}, total.Custom.Map())
	assert.Equal(t, `{"a": 1, "b": 2}`, total.Custom.String())
	huge := Resources{Custom: MustCustom(map[string]float64{"a": 1e9})}
	assert.Equal(t, noFit, capacity(huge, Resources{Custom: "a=0.0001"}), "no overflow")
}
