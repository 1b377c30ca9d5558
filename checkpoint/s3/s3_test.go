package s3

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestParseEndpoint(t *testing.T) {
	tests := []struct {
		in         string
		wantScheme string
		wantHost   string
		wantErr    string
	}{
		{in: "http://127.0.0.1:9000", wantScheme: "http", wantHost: "127.0.0.1:9000"},
		{in: "https://s3.example.com/", wantScheme: "https", wantHost: "s3.example.com"},
		{in: "minio.lan:9000", wantScheme: "https", wantHost: "minio.lan:9000"},
		{in: "ftp://x", wantErr: "scheme must be http or https"},
		{in: "http://", wantErr: "names no host"},
		{in: "http://host/bucket", wantErr: "has a path"},
		{in: "http://a b", wantErr: "is not a URL"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			u, err := parseEndpoint(tt.in)
			if tt.wantErr != "" {
				require.ErrorContains(t, err, tt.wantErr)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tt.wantScheme, u.Scheme)
			assert.Equal(t, tt.wantHost, u.Host)
		})
	}
}

func TestObjectNames(t *testing.T) {
	tests := []struct {
		prefix, key, wantObject, wantURI string
	}{
		{"", "run/a", "run/a", "s3://b/run/a"},
		{"", "", "", "s3://b/"},
		{"p/q", "run/a", "p/q/run/a", "s3://b/p/q/run/a"},
		{"p/q", "", "p/q/", "s3://b/p/q/"},
	}
	for _, tt := range tests {
		s := &Storage{bucket: "b", prefix: tt.prefix}
		assert.Equal(t, tt.wantObject, s.object(tt.key), "object(%q) under %q", tt.key, tt.prefix)
		assert.Equal(t, tt.wantURI, s.URI(tt.key), "URI(%q) under %q", tt.key, tt.prefix)
	}
}
