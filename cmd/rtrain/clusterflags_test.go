package main

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// --address takes every head of a cluster; the token goes in clear only
// where every one of them is on loopback.
func TestAddressListsAreCheckedWhole(t *testing.T) {
	for _, tt := range []struct {
		name, addr string
		insecure   bool
		want       string // "" is no error
	}{
		{name: "one head", addr: "127.0.0.1:6379"},
		{name: "heads on loopback", addr: "127.0.0.1:6379, localhost:6380,[::1]:6381"},
		{name: "one head off loopback", addr: "127.0.0.1:6379,10.0.0.2:6379",
			want: "the token does not name the head's CA, so 10.0.0.2:6379 cannot be verified"},
		{name: "off loopback, insecure", addr: "10.0.0.1:6379,10.0.0.2:6379", insecure: true},
		{name: "an empty entry", addr: "127.0.0.1:6379,,127.0.0.1:6380",
			want: `--address or $RTRAIN_ADDRESS: head address "127.0.0.1:6379,,127.0.0.1:6380" has an empty entry: give HOST:PORT, or every head's as HOST:PORT,HOST:PORT`},
		{name: "a trailing comma, insecure", addr: "10.0.0.1:6379,", insecure: true, want: "has an empty entry"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			o := &clusterFlags{token: "t", insecure: tt.insecure}
			err := o.checkTransport(o.security(), tt.addr)
			if tt.want == "" {
				require.NoError(t, err)
				return
			}
			require.Error(t, err)
			assert.Contains(t, err.Error(), tt.want)
			assert.Equal(t, exitUsage, exitCode(err))
		})
	}
}

// A command given a malformed list says so in one line, with the usage
// exit code, before it calls any head.
func TestCommandsRefuseAnEmptyAddressEntry(t *testing.T) {
	jobs := rtrain(t, "jobs", "--address", "127.0.0.1:1,", "--token", "t")
	assert.Equal(t, exitUsage, jobs.run(t))
	assert.Equal(t, `rtrain: --address or $RTRAIN_ADDRESS: head address "127.0.0.1:1," has an empty entry: give HOST:PORT, or every head's as HOST:PORT,HOST:PORT with one address between each two commas`,
		strings.TrimSpace(jobs.stderr.String()))
}
