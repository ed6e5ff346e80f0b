// Package schema encodes and decodes the payloads of commands and events:
// the bytes of Kafka record values. It knows nothing of Kafka.
//
// A [Codec] hands out one [Serde] per Go type, built once when the
// application is built; a Serde is safe for concurrent use. Two codecs:
//
//   - [Avro], the default: Avro binary in the Confluent wire format (magic
//     byte 0, 4-byte big-endian schema ID, body), so Kafka Connect, Flink,
//     ksqlDB and other Confluent-compatible readers can decode the topics.
//     The schema is derived from the Go type, or given by an
//     AvroSchema() string method. Values are encoded by hamba/avro, which
//     is an implementation detail of this package.
//   - [JSON]: encoding/json documents with no framing, for debugging and
//     for consumers that cannot read Avro.
//
// # Go types and Avro schemas
//
// A struct becomes a record named after the Go type (generic type
// arguments lose their package paths: Foo[example.com/x.Bar] is Foo_x_Bar)
// in a namespace derived from its package path (see [AvroNamespace]).
// A field is named by its avro tag (the part before a comma), else by its
// Go name; fields tagged avro:"-" and unexported fields are left out.
// Embedded structs are flattened into the record, except an embedded field
// tagged avro:"-" or whose fields are all tagged avro:"-": that is how a
// command's envelope (aggregate.Command, carried in record headers) stays
// out of its payload.
//
//	Go                                Avro
//	bool                              boolean
//	int8, int16, int32                int
//	int, int64                        long
//	float32                           float
//	float64                           double
//	string                            string
//	[]byte                            bytes
//	[N]byte                           fixed of size N, named after the type (or FixedN)
//	time.Time                         long, logicalType timestamp-micros
//	time.Duration                     long, logicalType time-micros
//	encoding.TextMarshaler and        string (MarshalText on the value,
//	  TextUnmarshaler, e.g. ulid.ULID   UnmarshalText on the pointer)
//	*T                                union ["null", T], default null
//	[]T                               array of T
//	map[string]T                      map of T
//	struct                            record; a type met again is referred to
//	                                  by name, so recursive types work
//
// Decoding gives back what was encoded, except that time.Time and
// time.Duration keep microseconds (the nanoseconds are cut off), a
// time.Time comes back in UTC without a monotonic clock reading, and nil
// slices, byte slices and maps come back empty but not nil.
//
// Unsigned integers, complex numbers, channels, functions, interfaces,
// arrays other than [N]byte, pointers to pointers and maps whose keys are
// not strings are rejected by Codec.For with an error that wraps
// [ErrUnsupported] and names the field.
//
// # Schema IDs
//
// The schema ID in the frame is, by default, the CRC-64-AVRO (Rabin)
// fingerprint of the schema's canonical form folded into 31 bits (never
// 0): the same schema gets the same ID in every process, with no storage
// (see [FingerprintID]). [AvroIDs] lets a function supply the IDs instead;
// [AvroRegistry] takes them from a schema registry. With no registry,
// Decode accepts only the ID of its own Serde's schema.
//
// # Schema registries and evolution
//
// A [Registry] numbers writer schemas and keeps them under subjects. The
// package httpregistry speaks to any Confluent-compatible registry over
// HTTP; kafkaregistry keeps the schemas in a compacted Kafka topic, for
// deployments without one (its IDs are the fingerprints when they are
// free, so they match the registry-less ones). Subjects follow
// [TopicRecordName]: "<topic>-<record full name>", so one topic carries
// many event types, each evolving on its own.
//
// With [AvroRegistry], [Register] is called for each message type and its
// topic when the application starts: it checks the type's schema against
// every version registered under its subject, registers it, and makes
// the Serde write the registry's ID. [Check] does the same without
// registering, for CI. The check is always local ([Compatible]), never
// the registry's; the level is set with [CompatibilityLevel]:
//
//	BACKWARD_TRANSITIVE (default)  new code reads every old event
//	BACKWARD                       new code reads the latest version's events
//	FORWARD(_TRANSITIVE)           old code reads new events (rolling deploys)
//	FULL(_TRANSITIVE)              both
//	NONE                           no check
//
// A change that breaks the level is an [*IncompatibleError] naming the
// type, the field path and the rule, e.g.
//
//	schema: bank.MoneyDeposited breaks BACKWARD_TRANSITIVE compatibility with
//	version 1 of subject "bank.account.events-bank.MoneyDeposited":
//	bank.MoneyDeposited.currency: field added without a default: old data has
//	no value for it (give it a default, e.g. make it a pointer)
//
// Decode reads records written with any schema the registry knows: it
// fetches the writer schema of an ID it has not met (once per ID and Go
// type, within [LookupTimeout]) and resolves it against the Go type, so
// fields added with defaults (pointers default to null), removed fields
// and promotions (int to long, float or double; long to float or double;
// float to double; string and bytes) work. Records of a type that
// contains itself (a recursive record) can be read only when written with
// the same schema: hamba/avro cannot resolve such schemas, so Compatible
// refuses to change them.
//
// # Upcasters
//
// What resolution cannot express — an event type renamed, a field split
// in two, a new meaning — an upcaster does: a typed function from the old
// Go type, kept as it was recorded, to the next one ([Upcast]), chained
// until a current type. [Upcasters.Decode] reads a record under its
// recorded type name with the current type when it can and with the old
// types otherwise, then upcasts; the processor, restores and projections
// share one [Upcasters], so they read old events alike. Package upcasttest
// checks upcasters against recorded old events.
//
// # Bad input
//
// Decode never panics and never allocates much more than its input: the
// frame and the body are checked before the body is decoded (every length,
// count and union branch, the nesting depth of recursive types, and no
// bytes left over). Its errors about the input wrap [ErrDecode]; an ID no
// registry knows also wraps [ErrUnknownSchema], a writer schema that
// cannot be read as the Go type [ErrIncompatible]. An error that does not
// wrap ErrDecode is a registry that could not be asked: retrying may help.
package schema
