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
// 0): the same schema gets the same ID in every process, with no storage.
// A schema registry can supply the IDs instead, through [AvroIDs]. Decode
// accepts only the ID of its own Serde's schema.
//
// # Bad input
//
// Decode never panics and never allocates much more than its input: the
// frame and the body are checked before the body is decoded (every length,
// count and union branch, the nesting depth of recursive types, and no
// bytes left over). Its errors wrap [ErrDecode].
package schema
