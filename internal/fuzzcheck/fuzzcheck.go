// Package fuzzcheck holds what the fuzz tests of every decoder assert about
// a successful decode: that it holds no more than its input could carry.
package fuzzcheck

import (
	"fmt"
	"reflect"
	"strings"
	"unicode/utf8"
)

// Held counts what a decoded value holds: the elements of its slices and
// arrays' backing slices, the entries of its maps and the bytes of its
// strings and byte slices, through pointers, interfaces and struct
// fields. Every element or entry of an encoded value takes at
// least one byte of input of its own, and every byte of a string one, so
// an honest decode of n bytes holds at most n: more means a declared
// length was taken on trust. One exception is allowed for: a JSON decoder
// replaces a byte that is not UTF-8 by U+FFFD, three bytes for one (a
// 4-byte JSON string "\x94\xa9" decodes to 6 bytes), so each U+FFFD of
// a string counts one.
func Held(v any) int {
	return held(reflect.ValueOf(v), 0)
}

func held(v reflect.Value, depth int) int {
	if !v.IsValid() || depth > 1000 {
		return 0
	}
	switch v.Kind() {
	case reflect.Pointer, reflect.Interface:
		if v.IsNil() {
			return 0
		}
		return held(v.Elem(), depth+1)
	case reflect.String:
		return v.Len() - (utf8.RuneLen(utf8.RuneError)-1)*strings.Count(v.String(), string(utf8.RuneError))
	case reflect.Slice:
		if v.Type().Elem().Kind() == reflect.Uint8 {
			return v.Len()
		}
		n := v.Len()
		for i := 0; i < v.Len(); i++ {
			n += held(v.Index(i), depth+1)
		}
		return n
	case reflect.Array:
		n := 0
		for i := 0; i < v.Len(); i++ {
			n += held(v.Index(i), depth+1)
		}
		return n
	case reflect.Map:
		n := v.Len()
		it := v.MapRange()
		for it.Next() {
			n += held(it.Key(), depth+1) + held(it.Value(), depth+1)
		}
		return n
	case reflect.Struct:
		n := 0
		for i := 0; i < v.NumField(); i++ {
			if v.Type().Field(i).IsExported() {
				n += held(v.Field(i), depth+1)
			}
		}
		return n
	}
	return 0
}

// Check returns an error when v, decoded from input, holds more than input.
func Check(input []byte, v any) error {
	if h := Held(v); h > len(input) {
		return fmt.Errorf("a decode of %d bytes holds %d elements and bytes: a declared length was trusted", len(input), h)
	}
	return nil
}

// OrderBomb is a 68-byte msgpack order.created body whose items array
// declares 0xFFFFFFFF elements: decoded into a slice of 24-byte items, it
// asked the decoder for 96 GB before one element was read, and killed the
// orchestrator ("fatal error: runtime: out of memory") before it could ack
// it, so every restart took it again and died again.
func OrderBomb() []byte {
	b := []byte{0x85}
	str := func(s string) { b = append(append(b, byte(0xa0|len(s))), s...) }
	str("items")
	b = append(b, 0xdd, 0xff, 0xff, 0xff, 0xff)
	str("order_id")
	str("o-bomb1")
	str("customer_id")
	str("c-1")
	str("amount_cents")
	b = append(b, 0x64)
	str("currency")
	return b
}
