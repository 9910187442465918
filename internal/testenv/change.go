package testenv

import (
	"net/netip"
	"reflect"
)

// Change sets v, a settable value, to another value of its type, and
// reports whether it could: what a test that a comparison covers every
// field of a struct changes each field with, so that a field added later
// fails the test until the comparison has it. A string gets a letter
// more, a number one more, a bool flips, a slice gets an element more, a
// map a key more, a netip.AddrPort another address, another struct its
// first field.
func Change(v reflect.Value) bool {
	switch v.Kind() {
	case reflect.String:
		v.SetString(v.String() + "x")
	case reflect.Bool:
		v.SetBool(!v.Bool())
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		v.SetInt(v.Int() + 1)
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		v.SetUint(v.Uint() + 1)
	case reflect.Slice:
		v.Set(reflect.Append(v, reflect.Zero(v.Type().Elem())))
	case reflect.Map:
		if v.IsNil() {
			v.Set(reflect.MakeMap(v.Type()))
		}
		k := reflect.New(v.Type().Key()).Elem()
		Change(k)
		v.SetMapIndex(k, reflect.Zero(v.Type().Elem()))
	case reflect.Struct:
		if v.Type() == reflect.TypeFor[netip.AddrPort]() {
			v.Set(reflect.ValueOf(netip.MustParseAddrPort("192.0.2.1:81")))
			return true
		}
		return v.NumField() > 0 && Change(v.Field(0))
	default:
		return false
	}
	return true
}
