package trainer_test

import (
	"os"
	"testing"

	"github.com/rtrain/rtrain/launcher"
)

func TestMain(m *testing.M) {
	if launcher.RunReaperIfAsked() {
		return
	}
	os.Exit(m.Run())
}
