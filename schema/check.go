package schema

import (
	"errors"
	"fmt"
	"math"

	"github.com/hamba/avro/v2"
)

// The limits of what Decode accepts, beyond the size of the input.
const (
	// maxDepth bounds the nesting of records, so that a recursive type
	// cannot exhaust the stack.
	maxDepth = 1000
	// maxEmptyItems bounds the items of arrays whose items encode to no
	// bytes (their count is not bounded by the input's size).
	maxEmptyItems = 1 << 20
)

var errTruncated = errors.New("truncated body")

var stringNode = &vnode{kind: vBytes}

type vkind uint8

const (
	vNull vkind = iota
	vBool
	vInt
	vLong
	vFloat
	vDouble
	vBytes // and string
	vFixed
	vEnum
	vRecord
	vArray
	vMap
	vUnion
)

// vnode is a schema compiled for validate. Recursive schemas make cycles.
type vnode struct {
	kind  vkind
	n     int      // size of a fixed, symbols of an enum
	kids  []*vnode // record fields, union branches, array items, map values
	empty bool     // its values encode to no bytes
}

// compileCheck compiles s for validate, and reports whether Encode must
// validate too: when s is recursive or has arrays of empty items, a value
// can exceed the limits that Decode enforces.
func compileCheck(s avro.Schema) (*vnode, bool) {
	c := checkCompiler{named: map[string]*vnode{}, busy: map[*vnode]bool{}}
	n := c.compile(s)
	c.markEmpty(n, map[*vnode]bool{})
	limited := c.recursive
	c.walk(n, map[*vnode]bool{}, func(n *vnode) {
		if n.kind == vArray && n.kids[0].empty {
			limited = true
		}
	})
	return n, limited
}

// recursive reports whether s has a record that contains itself.
func recursive(s avro.Schema) bool {
	c := checkCompiler{named: map[string]*vnode{}, busy: map[*vnode]bool{}}
	c.compile(s)
	return c.recursive
}

type checkCompiler struct {
	named     map[string]*vnode
	busy      map[*vnode]bool // records being compiled
	recursive bool
}

func (c *checkCompiler) compile(s avro.Schema) *vnode {
	switch s := s.(type) {
	case *avro.RefSchema:
		return c.compile(s.Schema())
	case *avro.NullSchema:
		return &vnode{kind: vNull, empty: true}
	case *avro.PrimitiveSchema:
		switch s.Type() {
		case avro.Boolean:
			return &vnode{kind: vBool}
		case avro.Int:
			return &vnode{kind: vInt}
		case avro.Long:
			return &vnode{kind: vLong}
		case avro.Float:
			return &vnode{kind: vFloat}
		case avro.Double:
			return &vnode{kind: vDouble}
		default: // string, bytes
			return &vnode{kind: vBytes}
		}
	case *avro.FixedSchema:
		return c.named1(s.FullName(), func() *vnode { return &vnode{kind: vFixed, n: s.Size(), empty: s.Size() == 0} })
	case *avro.EnumSchema:
		return c.named1(s.FullName(), func() *vnode { return &vnode{kind: vEnum, n: len(s.Symbols())} })
	case *avro.RecordSchema:
		if n, ok := c.named[s.FullName()]; ok {
			if c.busy[n] {
				c.recursive = true
			}
			return n
		}
		n := &vnode{kind: vRecord}
		c.named[s.FullName()] = n
		c.busy[n] = true
		for _, f := range s.Fields() {
			n.kids = append(n.kids, c.compile(f.Type()))
		}
		delete(c.busy, n)
		return n
	case *avro.ArraySchema:
		return &vnode{kind: vArray, kids: []*vnode{c.compile(s.Items())}}
	case *avro.MapSchema:
		return &vnode{kind: vMap, kids: []*vnode{c.compile(s.Values())}}
	case *avro.UnionSchema:
		n := &vnode{kind: vUnion}
		for _, t := range s.Types() {
			n.kids = append(n.kids, c.compile(t))
		}
		return n
	}
	panic(fmt.Sprintf("schema: unexpected Avro schema %T", s)) // hamba/avro has no other kind
}

func (c *checkCompiler) named1(name string, f func() *vnode) *vnode {
	if n, ok := c.named[name]; ok {
		return n
	}
	n := f()
	c.named[name] = n
	return n
}

// markEmpty computes empty for the records: a record is empty when all its
// fields are. A record met again while its fields are being examined is
// not (a recursive record can only end through a union or an array).
func (c *checkCompiler) markEmpty(n *vnode, seen map[*vnode]bool) bool {
	if n.kind != vRecord {
		for _, k := range n.kids {
			c.markEmpty(k, seen)
		}
		return n.empty
	}
	if seen[n] {
		return n.empty
	}
	seen[n] = true
	n.empty = true
	for _, k := range n.kids {
		if !c.markEmpty(k, seen) {
			n.empty = false
		}
	}
	return n.empty
}

func (c *checkCompiler) walk(n *vnode, seen map[*vnode]bool, f func(*vnode)) {
	if seen[n] {
		return
	}
	seen[n] = true
	f(n)
	for _, k := range n.kids {
		c.walk(k, seen, f)
	}
}

// validate checks that b is exactly one well-formed value of n, reading it
// as hamba/avro does (same varint rules), so that every length and count
// that hamba/avro will allocate for is backed by bytes of b.
func (n *vnode) validate(b []byte) error {
	v := validator{b: b}
	if err := v.node(n, 0); err != nil {
		return err
	}
	if v.i != len(b) {
		return fmt.Errorf("%d bytes after the end of the value", len(b)-v.i)
	}
	return nil
}

type validator struct {
	b     []byte
	i     int
	items int // items of arrays of empty items
}

func (v *validator) node(n *vnode, depth int) error {
	switch n.kind {
	case vNull:
	case vBool:
		if v.i >= len(v.b) {
			return errTruncated
		}
		if v.b[v.i] > 1 {
			return fmt.Errorf("invalid boolean byte 0x%02x", v.b[v.i])
		}
		v.i++
	case vInt:
		if _, err := v.int(); err != nil {
			return err
		}
	case vLong:
		if _, err := v.long(); err != nil {
			return err
		}
	case vFloat:
		return v.skip(4)
	case vDouble:
		return v.skip(8)
	case vBytes:
		l, err := v.long()
		if err != nil {
			return err
		}
		if l < 0 {
			return fmt.Errorf("negative length %d", l)
		}
		return v.skip(l)
	case vFixed:
		return v.skip(int64(n.n))
	case vEnum:
		i, err := v.int()
		if err != nil {
			return err
		}
		if i < 0 || int(i) >= n.n {
			return fmt.Errorf("enum index %d out of range", i)
		}
	case vRecord:
		if depth >= maxDepth {
			return fmt.Errorf("records nested more than %d deep", maxDepth)
		}
		for _, k := range n.kids {
			if err := v.node(k, depth+1); err != nil {
				return err
			}
		}
	case vArray, vMap:
		for {
			count, err := v.long()
			if err != nil {
				return err
			}
			if count == 0 {
				return nil
			}
			// A negative count is followed by the block's size in bytes,
			// which a reader that skips the field trusts: it must be the
			// size of the items, or the skip lands elsewhere than this
			// validation did.
			blockStart, blockEnd := 0, -1
			if count < 0 {
				if count == math.MinInt64 {
					return fmt.Errorf("invalid block count %d", count)
				}
				count = -count
				size, err := v.long()
				if err != nil {
					return err
				}
				if size < 0 || size > int64(len(v.b)-v.i) {
					return fmt.Errorf("block size %d does not fit the %d bytes left", size, len(v.b)-v.i)
				}
				blockStart, blockEnd = v.i, v.i+int(size)
			}
			// Every item but the empty ones takes at least one byte: a
			// count beyond the rest of the input is a lie.
			if n.kind == vArray && n.kids[0].empty {
				v.items += int(min(count, maxEmptyItems+1))
				if v.items > maxEmptyItems {
					return fmt.Errorf("more than %d items of no size", maxEmptyItems)
				}
			} else if count > int64(len(v.b)-v.i) {
				return errTruncated
			}
			for range count {
				if n.kind == vMap {
					if err := v.node(stringNode, depth); err != nil {
						return err
					}
				}
				if err := v.node(n.kids[0], depth); err != nil {
					return err
				}
			}
			if blockEnd >= 0 && v.i != blockEnd {
				return fmt.Errorf("block of %d items takes %d bytes, not the %d its size says", count, v.i-blockStart, blockEnd-blockStart)
			}
		}
	case vUnion:
		i, err := v.int()
		if err != nil {
			return err
		}
		if i < 0 || int(i) >= len(n.kids) {
			return fmt.Errorf("union branch %d out of range", i)
		}
		return v.node(n.kids[i], depth)
	}
	return nil
}

func (v *validator) skip(n int64) error {
	if n > int64(len(v.b)-v.i) {
		return errTruncated
	}
	v.i += int(n)
	return nil
}

// long reads a zig-zag varint of at most 10 bytes, as hamba/avro's ReadLong.
func (v *validator) long() (int64, error) {
	var u uint64
	var s uint
	for k := 0; k < 10; k++ {
		if v.i >= len(v.b) {
			return 0, errTruncated
		}
		c := v.b[v.i]
		v.i++
		u |= uint64(c&0x7f) << s
		if c < 0x80 {
			return int64(u>>1) ^ -int64(u&1), nil
		}
		s += 7
	}
	return 0, errors.New("malformed long")
}

// int reads a zig-zag varint of at most 5 bytes, as hamba/avro's ReadInt.
func (v *validator) int() (int32, error) {
	var u uint32
	var s uint
	for k := 0; k < 5; k++ {
		if v.i >= len(v.b) {
			return 0, errTruncated
		}
		c := v.b[v.i]
		v.i++
		u |= uint32(c&0x7f) << s
		if c < 0x80 {
			return int32(u>>1) ^ -int32(u&1), nil
		}
		s += 7
	}
	return 0, errors.New("malformed int")
}
