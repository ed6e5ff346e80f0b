package aggregate

import "reflect"

// cloner returns the fastest correct deep copy for S: a plain value copy
// when S holds no references (the common case for small aggregates), a
// reflective deep copy of its exported data otherwise.
func cloner[S any]() func(*S) *S {
	if flat(reflect.TypeFor[S](), map[reflect.Type]bool{}) {
		return func(s *S) *S { c := *s; return &c }
	}
	return func(s *S) *S {
		c := new(S)
		deepCopy(reflect.ValueOf(c).Elem(), reflect.ValueOf(s).Elem())
		return c
	}
}

// flat reports whether values of t can be copied by assignment without
// sharing anything mutable.
func flat(t reflect.Type, seen map[reflect.Type]bool) bool {
	switch t.Kind() {
	case reflect.Map, reflect.Slice, reflect.Pointer, reflect.Interface, reflect.Chan, reflect.Func, reflect.UnsafePointer:
		return false
	case reflect.Array:
		return flat(t.Elem(), seen)
	case reflect.Struct:
		if seen[t] {
			return true
		}
		seen[t] = true
		for i := range t.NumField() {
			if !flat(t.Field(i).Type, seen) {
				return false
			}
		}
	}
	return true
}

// deepCopy copies src into dst (both addressable and of one type), sharing
// no maps, slices or pointers. Unexported fields are copied shallowly: keep
// mutable aggregate state in exported fields (it is serialized for
// snapshots anyway).
func deepCopy(dst, src reflect.Value) {
	switch src.Kind() {
	case reflect.Pointer:
		if src.IsNil() {
			dst.SetZero()
			return
		}
		p := reflect.New(src.Type().Elem())
		deepCopy(p.Elem(), src.Elem())
		dst.Set(p)
	case reflect.Interface:
		if src.IsNil() {
			dst.SetZero()
			return
		}
		v := reflect.New(src.Elem().Type()).Elem()
		deepCopy(v, src.Elem())
		dst.Set(v)
	case reflect.Map:
		if src.IsNil() {
			dst.SetZero()
			return
		}
		m := reflect.MakeMapWithSize(src.Type(), src.Len())
		it := src.MapRange()
		for it.Next() {
			v := reflect.New(src.Type().Elem()).Elem()
			deepCopy(v, it.Value())
			m.SetMapIndex(it.Key(), v)
		}
		dst.Set(m)
	case reflect.Slice:
		if src.IsNil() {
			dst.SetZero()
			return
		}
		s := reflect.MakeSlice(src.Type(), src.Len(), src.Len())
		for i := range src.Len() {
			deepCopy(s.Index(i), src.Index(i))
		}
		dst.Set(s)
	case reflect.Array:
		for i := range src.Len() {
			deepCopy(dst.Index(i), src.Index(i))
		}
	case reflect.Struct:
		dst.Set(src) // unexported fields included, shallowly
		for i := range src.NumField() {
			if dst.Field(i).CanSet() {
				deepCopy(dst.Field(i), src.Field(i))
			}
		}
	default:
		dst.Set(src)
	}
}
