package launcher

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestLineWriter(t *testing.T) {
	tests := []struct {
		name   string
		writes []string
		want   []string
	}{
		{"one line", []string{"a\n"}, []string{"a"}},
		{"split across writes", []string{"he", "llo\nwor", "ld\n"}, []string{"hello", "world"}},
		{"several in one write", []string{"a\nb\nc\n"}, []string{"a", "b", "c"}},
		{"crlf", []string{"a\r\n"}, []string{"a"}},
		{"unterminated last line", []string{"a\nb"}, []string{"a", "b"}},
		{"empty lines kept", []string{"\n\n"}, []string{"", ""}},
		{"overlong line cut", []string{strings.Repeat("x", maxLine+3)}, []string{strings.Repeat("x", maxLine), "xxx"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got []string
			w := &LineWriter{Emit: func(s string) { got = append(got, s) }}
			for _, s := range tt.writes {
				n, err := w.Write([]byte(s))
				if err != nil || n != len(s) {
					t.Fatalf("Write = %d, %v", n, err)
				}
			}
			_ = w.Close()
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("lines (-want +got):\n%s", diff)
			}
		})
	}
}

func TestTail(t *testing.T) {
	tl := NewTail(3)
	for _, s := range []string{"1", "2", "3", "4", "5", "6", "7"} {
		tl.Add(s)
	}
	if diff := cmp.Diff([]string{"5", "6", "7"}, tl.Lines()); diff != "" {
		t.Errorf("tail (-want +got):\n%s", diff)
	}
}
