package registrytest

import (
	"testing"

	"github.com/interlock-go/interlock/schema"
)

func TestMemory(t *testing.T) {
	Run(t, func(*testing.T) schema.Registry { return NewMemory() },
		func(_ *testing.T, r schema.Registry) schema.Registry { return r })
}
