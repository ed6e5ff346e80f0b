package snapshot_test

import (
	"testing"

	"github.com/interlock-go/interlock/snapshot"
	"github.com/interlock-go/interlock/snapshot/storetest"
)

func TestMemoryConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) (snapshot.Store, func()) {
		s := snapshot.NewMemory()
		return s, s.Wipe
	})
}
