package schema

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"time"
)

// Registry stores the writer schemas of a deployment under subjects and
// numbers them, like a Confluent schema registry: an ID names one schema
// text for ever, and a subject lists the schemas registered under it,
// oldest first. Implementations are safe for concurrent use; see the
// packages httpregistry (any Confluent-compatible registry) and
// kafkaregistry (a compacted Kafka topic, for deployments with no
// registry).
//
// Compatibility is never left to the registry: [Check] and [Register]
// compute it here, from the versions a Registry returns.
type Registry interface {
	// Register registers schema (Avro schema text) under subject and
	// returns its ID. Registering a schema that is already registered under
	// subject returns its ID and adds no version. The same schema text has
	// the same ID under every subject.
	Register(ctx context.Context, subject, schema string) (uint32, error)
	// SchemaByID returns the schema text of id, or an error wrapping
	// ErrUnknownSchema when no schema has that ID. Any other error is a
	// failure to ask (retrying may help).
	SchemaByID(ctx context.Context, id uint32) (string, error)
	// Versions returns the schemas registered under subject, oldest first;
	// none (and no error) for a subject never registered.
	Versions(ctx context.Context, subject string) ([]Version, error)
}

// Version is one schema registered under a subject.
type Version struct {
	// Version numbers the subject's schemas from 1, oldest first.
	Version int
	// ID is the schema's ID, the one written in record frames.
	ID uint32
	// Schema is the schema text.
	Schema string
}

// ErrUnknownSchema is wrapped by the errors about a schema ID that no
// registry knows: Decode's (with ErrDecode: the record cannot be read,
// retrying will not help) and a Registry's SchemaByID.
var ErrUnknownSchema = errors.New("schema: unknown schema ID")

// ErrIncompatible is wrapped by every *IncompatibleError.
var ErrIncompatible = errors.New("schema: incompatible schema change")

// TopicRecordName is the subject naming strategy of Interlock (Confluent's
// TopicRecordNameStrategy): the topic, a dash and the record's full name,
// e.g. "bank.account.events-bank.MoneyDeposited". Each event type of a
// topic has its own subject, so one topic carries many event types and
// each evolves on its own.
func TopicRecordName(topic, fullName string) string { return topic + "-" + fullName }

// Compatibility is a rule that a new schema of a subject must keep with
// the schemas registered before it, named as in Confluent's registry. The
// zero value is BackwardTransitive.
type Compatibility uint8

const (
	// BackwardTransitive, the default: the new schema reads data written
	// with every registered schema, so new code reads all old events.
	// Events are kept for ever, so checking against the latest version
	// only (Backward) would let a chain of changes strand the oldest ones.
	BackwardTransitive Compatibility = iota
	// Backward: the new schema reads data written with the latest one.
	Backward
	// Forward: the latest schema reads data written with the new one (old
	// code reads new events, e.g. during a rolling deploy).
	Forward
	// ForwardTransitive: every registered schema reads the new one's data.
	ForwardTransitive
	// Full: Backward and Forward.
	Full
	// FullTransitive: BackwardTransitive and ForwardTransitive.
	FullTransitive
	// None: no check.
	None
)

var compatNames = [...]string{
	BackwardTransitive: "BACKWARD_TRANSITIVE",
	Backward:           "BACKWARD",
	Forward:            "FORWARD",
	ForwardTransitive:  "FORWARD_TRANSITIVE",
	Full:               "FULL",
	FullTransitive:     "FULL_TRANSITIVE",
	None:               "NONE",
}

// String returns the Confluent name of c, e.g. "BACKWARD_TRANSITIVE".
func (c Compatibility) String() string {
	if int(c) < len(compatNames) {
		return compatNames[c]
	}
	return fmt.Sprintf("Compatibility(%d)", uint8(c))
}

// ParseCompatibility parses a Confluent compatibility name (any case, "-"
// or "_"), e.g. for a command-line flag.
func ParseCompatibility(s string) (Compatibility, error) {
	norm := strings.ToUpper(strings.ReplaceAll(strings.TrimSpace(s), "-", "_"))
	for c, name := range compatNames {
		if name == norm {
			return Compatibility(c), nil
		}
	}
	return 0, fmt.Errorf("schema: unknown compatibility %q (want one of %s)", s, strings.Join(compatNames[:], ", "))
}

// backward and forward report what c checks; transitive, against what.
func (c Compatibility) backward() bool {
	return c == Backward || c == BackwardTransitive || c == Full || c == FullTransitive
}

func (c Compatibility) forward() bool {
	return c == Forward || c == ForwardTransitive || c == Full || c == FullTransitive
}

func (c Compatibility) transitive() bool {
	return c == BackwardTransitive || c == ForwardTransitive || c == FullTransitive
}

// RegistryOpt configures how the Avro codec uses a Registry (see
// [AvroRegistry]).
type RegistryOpt interface{ applyRegistry(*registryConfig) }

type registryConfig struct {
	reg     Registry
	level   Compatibility
	subject func(topic, fullName string) string
	timeout time.Duration
}

type registryOptFunc func(*registryConfig)

func (f registryOptFunc) applyRegistry(c *registryConfig) { f(c) }

// CompatibilityLevel sets the compatibility a new schema must keep with the registered
// ones; the default is BackwardTransitive.
func CompatibilityLevel(c Compatibility) RegistryOpt {
	return registryOptFunc(func(r *registryConfig) { r.level = c })
}

// Subjects sets the subject naming strategy; the default is
// [TopicRecordName].
func Subjects(f func(topic, fullName string) string) RegistryOpt {
	return registryOptFunc(func(r *registryConfig) { r.subject = f })
}

// LookupTimeout bounds how long Decode waits for the registry to return
// the writer schema of an ID it has not met yet (once per ID and type);
// the default is 10s. Decode has no ctx: this is its deadline.
func LookupTimeout(d time.Duration) RegistryOpt {
	return registryOptFunc(func(r *registryConfig) { r.timeout = d })
}

// ErrNoRegistry is returned by a DeferredRegistry before Set.
var ErrNoRegistry = errors.New("schema: the schema registry is not open yet")

// ErrRegistryUnavailable is matched (errors.Is) by a Decode error that
// came from looking up a record's writer schema in a registry that did not
// answer (out of reach, refusing the credentials, timing out): the record
// is not at fault, and the same record decodes once the registry is back.
// Projections retry such a record without limit and never park it.
var ErrRegistryUnavailable = errors.New("schema: registry unavailable")

// DeferredRegistry is a Registry whose backing registry is given later,
// by Set: for a codec built before its registry can be opened, e.g. a
// kafkaregistry on the embedded Kafka, which starts with the application.
// Until Set, every call fails with ErrNoRegistry (for Decode, an error
// that is not ErrDecode: the record is not bad, the registry is missing).
// The zero value is ready to use; safe for concurrent use.
type DeferredRegistry struct{ p atomic.Pointer[Registry] }

// Set makes r the backing registry.
func (d *DeferredRegistry) Set(r Registry) { d.p.Store(&r) }

func (d *DeferredRegistry) get() (Registry, error) {
	if p := d.p.Load(); p != nil && *p != nil {
		return *p, nil
	}
	return nil, ErrNoRegistry
}

// Register calls the backing registry's Register.
func (d *DeferredRegistry) Register(ctx context.Context, subject, schema string) (uint32, error) {
	r, err := d.get()
	if err != nil {
		return 0, err
	}
	return r.Register(ctx, subject, schema)
}

// SchemaByID calls the backing registry's SchemaByID.
func (d *DeferredRegistry) SchemaByID(ctx context.Context, id uint32) (string, error) {
	r, err := d.get()
	if err != nil {
		return "", err
	}
	return r.SchemaByID(ctx, id)
}

// Versions calls the backing registry's Versions.
func (d *DeferredRegistry) Versions(ctx context.Context, subject string) ([]Version, error) {
	r, err := d.get()
	if err != nil {
		return nil, err
	}
	return r.Versions(ctx, subject)
}
