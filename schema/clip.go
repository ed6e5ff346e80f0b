package schema

import "reflect"

// clipper returns a function that clips the capacity of every []byte in a
// decoded value of t to its length, or nil when t holds no []byte.
//
// hamba/avro decodes short bytes into a slab that it shares with the
// strings and bytes it decodes next; the slice's capacity runs into the
// slab, so an append to it would overwrite those strings. Clipped, an
// append copies.
func clipper(t reflect.Type) func(reflect.Value) {
	return (&clipBuilder{memo: map[reflect.Type]*func(reflect.Value){}}).of(t)
}

type clipBuilder struct {
	memo map[reflect.Type]*func(reflect.Value)
}

func (c *clipBuilder) of(t reflect.Type) func(reflect.Value) {
	if !holdsBytes(t, map[reflect.Type]bool{}) {
		return nil
	}
	if f, ok := c.memo[t]; ok { // a recursive type: *f is set when of(t) returns
		return func(v reflect.Value) { (*f)(v) }
	}
	f := new(func(reflect.Value))
	c.memo[t] = f
	switch t.Kind() {
	case reflect.Slice:
		if t.Elem().Kind() == reflect.Uint8 {
			*f = func(v reflect.Value) {
				if n := v.Len(); v.Cap() > n {
					v.Set(v.Slice3(0, n, n))
				}
			}
			break
		}
		e := c.of(t.Elem())
		*f = func(v reflect.Value) {
			for i := range v.Len() {
				e(v.Index(i))
			}
		}
	case reflect.Array:
		e := c.of(t.Elem())
		*f = func(v reflect.Value) {
			for i := range v.Len() {
				e(v.Index(i))
			}
		}
	case reflect.Pointer:
		e := c.of(t.Elem())
		*f = func(v reflect.Value) {
			if !v.IsNil() {
				e(v.Elem())
			}
		}
	case reflect.Map:
		e := c.of(t.Elem())
		*f = func(v reflect.Value) {
			it := v.MapRange()
			for it.Next() {
				x := reflect.New(t.Elem()).Elem()
				x.Set(it.Value())
				e(x)
				v.SetMapIndex(it.Key(), x)
			}
		}
	case reflect.Struct:
		type fieldClip struct {
			i int
			f func(reflect.Value)
		}
		var fs []fieldClip
		for i := range t.NumField() {
			sf := t.Field(i)
			if !sf.IsExported() && !sf.Anonymous { // never decoded
				continue
			}
			if e := c.of(sf.Type); e != nil {
				fs = append(fs, fieldClip{i, e})
			}
		}
		*f = func(v reflect.Value) {
			for _, fc := range fs {
				if x := v.Field(fc.i); x.CanSet() || x.Kind() == reflect.Struct || x.Kind() == reflect.Pointer {
					fc.f(x)
				}
			}
		}
	}
	return *f
}

func holdsBytes(t reflect.Type, seen map[reflect.Type]bool) bool {
	if seen[t] {
		return false
	}
	seen[t] = true
	switch t.Kind() {
	case reflect.Slice:
		return t.Elem().Kind() == reflect.Uint8 || holdsBytes(t.Elem(), seen)
	case reflect.Pointer, reflect.Map, reflect.Array:
		return holdsBytes(t.Elem(), seen)
	case reflect.Struct:
		for i := range t.NumField() {
			if holdsBytes(t.Field(i).Type, seen) {
				return true
			}
		}
	}
	return false
}
