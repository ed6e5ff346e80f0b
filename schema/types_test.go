package schema

import (
	"strings"
	"time"

	"github.com/oklog/ulid/v2"
)

// Test types, one or a few mappings each.

type (
	Bools struct{ V, W bool }
	Ints  struct {
		A int8
		B int16
		C int32
		D int64
		E int
	}
	Floats struct {
		F float32
		D float64
	}
	Strings struct {
		S string
		C Currency
	}
	Bytes struct {
		B []byte
		N []byte
	}
	Hash   [32]byte
	Fixeds struct {
		H  Hash
		A  [4]byte
		A2 [4]byte
	}
	Times struct {
		At  time.Time
		D   time.Duration
		Opt *time.Time
	}
	ULIDs struct {
		ID  ulid.ULID
		Opt *ulid.ULID
		Nil *ulid.ULID
	}
	Upper    string // encoded by its MarshalText
	Texts    struct{ U Upper }
	Currency string
	Point    struct{ X, Y int32 }
	Ptrs     struct {
		P   *Point
		N   *Point
		S   *string
		Ns  *string
		Sl  *[]int64
		Map *map[string]string
	}
	Slices struct {
		Pts   []Point
		Ptrs  []*Point
		Nil   []string
		Empty []string
		Deep  [][]int32
	}
	Maps struct {
		M     map[string]int64
		Pts   map[string]Point
		Nil   map[string]bool
		Named map[Currency]string
	}
	Nested struct {
		Name  string
		From  Point
		To    Point
		Inner struct {
			A string
			B *Point
		}
	}
	Node struct {
		Value    int64
		Next     *Node
		Children []Node
	}
	Meta struct {
		Actor string
		At    time.Time
	}
	Embeds struct {
		Meta
		Amount int64 `avro:"amount" json:"amount"`
		skip   int
		Hidden string `avro:"-" json:"-"`
	}
	Clock struct {
		L []time.Time
		M map[string]time.Duration
		P []*time.Duration
	}
	Solo           struct{ P *Point }
	SoloMap        struct{ M map[string]int64 }
	Pair[A, B any] struct {
		First  A
		Second B
	}
	Generic struct {
		P Pair[string, Point]
	}
)

func (u Upper) MarshalText() ([]byte, error) { return []byte(strings.ToUpper(string(u))), nil }

func (u *Upper) UnmarshalText(b []byte) error { *u = Upper(strings.ToLower(string(b))); return nil }
