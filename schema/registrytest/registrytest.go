// Package registrytest holds what tests of schema registries share: the
// conformance suite every schema.Registry must pass ([Run]) and an
// in-memory registry ([Memory]) for tests that need one and no service.
package registrytest

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/interlock-go/interlock/schema"
)

// Memory is a schema.Registry in memory, numbering schemas from 1 like a
// Confluent registry. The zero value is not usable: use NewMemory.
type Memory struct {
	mu       sync.Mutex
	ids      map[string]uint32 // schema text → ID
	schemas  map[uint32]string
	subjects map[string][]schema.Version
	lookups  int
}

// NewMemory returns an empty in-memory registry.
func NewMemory() *Memory {
	return &Memory{ids: map[string]uint32{}, schemas: map[uint32]string{}, subjects: map[string][]schema.Version{}}
}

// Register registers text under subject and returns its ID.
func (m *Memory) Register(_ context.Context, subject, text string) (uint32, error) {
	if text == "" {
		return 0, errors.New("registrytest: empty schema")
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	id, ok := m.ids[text]
	if !ok {
		id = uint32(len(m.ids) + 1)
		m.ids[text], m.schemas[id] = id, text
	}
	vs := m.subjects[subject]
	for _, v := range vs {
		if v.ID == id {
			return id, nil
		}
	}
	m.subjects[subject] = append(vs, schema.Version{Version: len(vs) + 1, ID: id, Schema: text})
	return id, nil
}

// SchemaByID returns the schema of id.
func (m *Memory) SchemaByID(_ context.Context, id uint32) (string, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.lookups++
	text, ok := m.schemas[id]
	if !ok {
		return "", fmt.Errorf("registrytest: schema ID %d: %w", id, schema.ErrUnknownSchema)
	}
	return text, nil
}

// Versions returns the versions of subject.
func (m *Memory) Versions(_ context.Context, subject string) ([]schema.Version, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]schema.Version(nil), m.subjects[subject]...), nil
}

// Lookups returns how many times SchemaByID was called.
func (m *Memory) Lookups() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.lookups
}

// Schemas used by the suite: two versions of one record and an unrelated
// record.
const (
	v1    = `{"name":"test.Deposited","type":"record","fields":[{"name":"amount","type":"long"}]}`
	v2    = `{"name":"test.Deposited","type":"record","fields":[{"name":"amount","type":"long"},{"name":"memo","type":["null","string"],"default":null}]}`
	other = `{"name":"test.Opened","type":"record","fields":[{"name":"owner","type":"string"}]}`
)

// Run runs the conformance suite against the registries that open
// returns. Each call of open must return a registry with no schemas of
// the subjects Run uses: Run prefixes them with t.Name(), so registries
// may be shared across tests. When reopen is not nil it is given a
// registry filled by the suite and must return a new instance backed by
// the same storage: IDs and versions must survive.
func Run(t *testing.T, open func(t *testing.T) schema.Registry, reopen func(t *testing.T, r schema.Registry) schema.Registry) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	subject := func(t *testing.T, s string) string { return t.Name() + "-" + s }

	t.Run("RegisterAndFetch", func(t *testing.T) {
		r := open(t)
		a, b := subject(t, "a"), subject(t, "b")
		id1, err := r.Register(ctx, a, v1)
		if err != nil {
			t.Fatal(err)
		}
		again, err := r.Register(ctx, a, v1)
		if err != nil || again != id1 {
			t.Fatalf("registering again: ID %d, %v; want %d", again, err, id1)
		}
		id2, err := r.Register(ctx, a, v2)
		if err != nil {
			t.Fatal(err)
		}
		if id2 == id1 || id1 == 0 || id2 == 0 || id1 > 1<<31-1 || id2 > 1<<31-1 {
			t.Fatalf("IDs %d and %d: want two positive int32s", id1, id2)
		}
		// The same schema under another subject: the same ID.
		if idb, err := r.Register(ctx, b, v1); err != nil || idb != id1 {
			t.Fatalf("v1 under another subject: ID %d, %v; want %d", idb, err, id1)
		}
		for id, want := range map[uint32]string{id1: v1, id2: v2} {
			got, err := r.SchemaByID(ctx, id)
			if err != nil {
				t.Fatal(err)
			}
			if !sameSchema(got, want) {
				t.Errorf("schema %d = %s, want %s", id, got, want)
			}
		}
		vs, err := r.Versions(ctx, a)
		if err != nil {
			t.Fatal(err)
		}
		if len(vs) != 2 || vs[0].Version != 1 || vs[0].ID != id1 || vs[1].Version != 2 || vs[1].ID != id2 ||
			!sameSchema(vs[0].Schema, v1) || !sameSchema(vs[1].Schema, v2) {
			t.Errorf("versions of %s = %+v, want v1 (ID %d) then v2 (ID %d)", a, vs, id1, id2)
		}
		if vs, err := r.Versions(ctx, b); err != nil || len(vs) != 1 || vs[0].ID != id1 {
			t.Errorf("versions of %s = %+v, %v", b, vs, err)
		}
		if reopen == nil {
			return
		}
		r2 := reopen(t, r)
		if got, err := r2.SchemaByID(ctx, id2); err != nil || !sameSchema(got, v2) {
			t.Errorf("after reopening, schema %d = %s, %v", id2, got, err)
		}
		if vs2, err := r2.Versions(ctx, a); err != nil || len(vs2) != 2 || vs2[0].ID != id1 || vs2[1].ID != id2 {
			t.Errorf("after reopening, versions = %+v, %v", vs2, err)
		}
		if id, err := r2.Register(ctx, a, v2); err != nil || id != id2 {
			t.Errorf("after reopening, registering v2 again: ID %d, %v; want %d", id, err, id2)
		}
		ido, err := r2.Register(ctx, subject(t, "other"), other)
		if err != nil || ido == id1 || ido == id2 {
			t.Errorf("after reopening, a new schema: ID %d, %v", ido, err)
		}
	})

	t.Run("Unknown", func(t *testing.T) {
		r := open(t)
		if _, err := r.SchemaByID(ctx, 1<<31-2); !errors.Is(err, schema.ErrUnknownSchema) {
			t.Errorf("unknown ID: err = %v, want ErrUnknownSchema", err)
		}
		if vs, err := r.Versions(ctx, subject(t, "never")); err != nil || len(vs) != 0 {
			t.Errorf("unknown subject: %+v, %v; want none", vs, err)
		}
	})

	t.Run("Concurrent", func(t *testing.T) {
		r := open(t)
		s := subject(t, "c")
		ids := make([]uint32, 8)
		errs := make([]error, 8)
		var wg sync.WaitGroup
		for i := range ids {
			wg.Go(func() { ids[i], errs[i] = r.Register(ctx, s, v1) })
		}
		wg.Wait()
		for i := range ids {
			if errs[i] != nil || ids[i] != ids[0] {
				t.Fatalf("concurrent registrations: IDs %v, errors %v", ids, errs)
			}
		}
		if vs, err := r.Versions(ctx, s); err != nil || len(vs) != 1 {
			t.Errorf("versions after concurrent registrations of one schema: %+v, %v", vs, err)
		}
	})
}

// sameSchema compares schema texts as a registry may return them:
// reformatted, but with the same canonical form.
func sameSchema(a, b string) bool {
	if a == b {
		return true
	}
	fa, err1 := schema.FingerprintID(a)
	fb, err2 := schema.FingerprintID(b)
	return err1 == nil && err2 == nil && fa == fb
}
