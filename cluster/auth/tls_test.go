package auth

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/rtrain/rtrain/cluster/clusterpb"
)

func TestSplitToken(t *testing.T) {
	fp := strings.Repeat("ab", 32)
	tests := map[string]struct {
		token, secret, fp string
	}{
		"bare secret":           {"s3cret", "s3cret", ""},
		"join token":            {"rt1-" + fp + "-s3cret", "s3cret", fp},
		"secret with dashes":    {"rt1-" + fp + "-a-b-c", "a-b-c", fp},
		"short fingerprint":     {"rt1-abcd-s3cret", "rt1-abcd-s3cret", ""},
		"not hex":               {"rt1-" + strings.Repeat("zz", 32) + "-s", "rt1-" + strings.Repeat("zz", 32) + "-s", ""},
		"no separator":          {"rt1-" + fp + "s3cret", "rt1-" + fp + "s3cret", ""},
		"JoinToken round trips": {JoinToken("x", fp), "x", fp},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			secret, gotFP := SplitToken(tt.token)
			assert.Equal(t, tt.secret, secret)
			assert.Equal(t, tt.fp, gotFP)
		})
	}
}

// ownCAHead serves a head with a CA made in dir, as `rtrain start --head`
// does without TLS files, and returns its address and join token.
func ownCAHead(t *testing.T, dir string) (addr, join string) {
	t.Helper()
	ca, err := LoadOrCreateCA(dir)
	require.NoError(t, err)
	cert, err := ca.Issue(LocalHosts())
	require.NoError(t, err)
	sec := Security{Token: JoinToken("s3cret", ca.Fingerprint()), Certificate: &cert}
	opts, err := sec.ServerOptions()
	require.NoError(t, err)
	return serveWith(t, opts), sec.Token
}

func TestHeadsOwnCA(t *testing.T) {
	dir := t.TempDir()
	addr, join := ownCAHead(t, dir)
	again, err := LoadOrCreateCA(dir)
	require.NoError(t, err)
	_, fp := SplitToken(join)
	assert.Equal(t, fp, again.Fingerprint(), "a head that restarts keeps its CA, so the tokens handed out stay good")

	status := func(sec Security) error {
		conn, err := sec.Dial(addr)
		require.NoError(t, err)
		defer conn.Close()
		ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
		defer cancel()
		_, err = clusterpb.NewHeadClient(conn).Status(ctx, &clusterpb.StatusRequest{})
		return err
	}
	require.NoError(t, status(Security{Token: join}), "the join token alone verifies the head")
	other, err := LoadOrCreateCA(t.TempDir())
	require.NoError(t, err)
	assert.Error(t, status(Security{Token: JoinToken("s3cret", other.Fingerprint())}), "a head whose CA is not the token's is not trusted")
	assert.Error(t, status(Security{Token: "s3cret"}), "a plain-text client is not served")
	assert.ErrorIs(t, RemoteError(status(Security{Token: JoinToken("guess", fp)})), ErrUnauthenticated)
}
