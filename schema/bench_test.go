package schema

import (
	"reflect"
	"testing"
	"time"

	"github.com/oklog/ulid/v2"
)

// MoneyDeposited is a small, typical event.
type MoneyDeposited struct {
	Account  ulid.ULID
	Amount   int64
	Currency string
	At       time.Time
	Memo     *string
}

func benchEvent() MoneyDeposited {
	return MoneyDeposited{
		Account:  ulid.MustParse("01HQ3Z8W6T7M9X2Y4B5C6D7E8F"),
		Amount:   12_345,
		Currency: "EUR",
		At:       time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC),
		Memo:     ptr("rent"),
	}
}

func benchSerde(b *testing.B, c Codec) Serde {
	s, err := c.For(reflect.TypeFor[MoneyDeposited]())
	if err != nil {
		b.Fatal(err)
	}
	return s
}

func benchEncode(b *testing.B, c Codec) {
	s := benchSerde(b, c)
	var v any = benchEvent()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := s.Encode(v); err != nil {
			b.Fatal(err)
		}
	}
}

func benchDecode(b *testing.B, c Codec) {
	s := benchSerde(b, c)
	frame, err := s.Encode(benchEvent())
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(frame)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := s.Decode(frame); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkAvroEncode(b *testing.B) { benchEncode(b, Avro()) }
func BenchmarkAvroDecode(b *testing.B) { benchDecode(b, Avro()) }
func BenchmarkJSONEncode(b *testing.B) { benchEncode(b, JSON()) }
func BenchmarkJSONDecode(b *testing.B) { benchDecode(b, JSON()) }

// BenchmarkAvroValidate measures the check Decode makes before decoding.
func BenchmarkAvroValidate(b *testing.B) {
	s := benchSerde(b, Avro()).(*avroSerde)
	frame, _ := s.Encode(benchEvent())
	b.ReportAllocs()
	for b.Loop() {
		if err := s.check.validate(frame[headerLen:]); err != nil {
			b.Fatal(err)
		}
	}
}
